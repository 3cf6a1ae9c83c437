"""`ResultStore`: persisted results under one fsspec URL, and `resolve_store` to get one (cached per process).

Layout under the store's base URL (format 2; `shard(key)` is two levels of hash prefix, e.g. `3f/a9`):

    {base}/{shard}/{key}.meta.json          the record: small JSON (`ResultRecord`); a result of at most
                                            `INLINE_MAX` (64 KiB) serialized bytes is inside it
    {base}/{shard}/{key}.{unique}.data      the data of a larger result, under a name used once
    {base}/.locks/{key}.lock                a lease on the key (`ResultStore.lease`)

Format 1 stores (`{base}/{key}.meta.json` beside the data `{base}/{key}`) stay readable: a lookup that finds no
format 2 record reads the flat one.

Writing: the data object first (fresh name, nobody reads it yet), then the record, atomically: the record write
is the commit. An interrupted write or overwrite leaves the previous record and its data intact (and at most an
unreferenced data object). After the commit the superseded data object is deleted; a reader that still held
the old record finds its data gone, re-reads the record and loads the new result.

Reading verifies the size and the XXH3-64 checksum of every data byte (format 1: its sampled CRC32) before the
serializer sees them; a mismatch is `CorruptResult` (a cache lookup turns it into a miss with a warning).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Mapping

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from .. import settings
from ..errors import (ConfigurationError, CorruptResult, DistributaryError, MissingDependencyError, MissingResult,
                      ResultStoreError)
from ..integrations import storage as storage_glue
from ..serializers import Serializer, get_serializer
from .backends import FsspecBackend, LocalBackend, checksum_matches
from .records import DATA_SUFFIX, INLINE_MAX, META_SUFFIX, ResultRecord, shard, utcnow
from .refs import ResultRef

if TYPE_CHECKING:
    from .locks import Lease

LOCKS_DIR = ".locks"
_READ_RETRIES = 3
log = logging.getLogger("distributary.results")


class ResultStore:
    """Results under one base URL. Picklable: it travels as (url, storage_options) and reopens its file system
    in the receiving process (with that process's environment for credentials).

    >>> store = resolve_store("memory://docs")
    >>> ref = store.write("answer", 42, "json")
    >>> store.read_value(store.read_record("answer"))
    42
    """

    def __init__(self, fs: AbstractFileSystem, base_path: str, storage_options: Mapping[str, Any] | None = None
                 ) -> None:
        self.fs = fs
        self.storage_options = dict(storage_options or {})
        self.is_local = isinstance(fs, LocalFileSystem)
        if self.is_local:
            self.base_path = os.path.abspath(os.path.expanduser(base_path))
            self.url = "file://" + self.base_path
        else:
            self.base_path = fs._strip_protocol(base_path).rstrip("/")
            self.url = fs.unstrip_protocol(self.base_path).rstrip("/")
        self._backend = LocalBackend() if self.is_local else FsspecBackend(fs)
        self._public_options = storage_glue.public_storage_options(self.storage_options)  # what refs carry
        self._leases: dict[tuple[str, int], Lease] = {}  # leases held here, by (key, thread): see write()

    # -- pickling: by URL and options, never by file system instance ---------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        return (resolve_store, (self.url, self.storage_options or None))

    def __repr__(self) -> str:
        return f"ResultStore({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ResultStore) and (self.url, self.storage_options)
                == (other.url, other.storage_options))

    def __hash__(self) -> int:
        return hash(self.url)

    # -- locations ------------------------------------------------------------------------------------------------
    def record_path(self, key: str) -> str:
        """The path of `key`'s (format 2) record inside the file system."""
        _check_key(key)
        return f"{self.base_path}/{shard(key)}/{key}{META_SUFFIX}"

    def data_path(self, record: ResultRecord) -> str | None:
        """The path of the data object a record points to (None: the data is inside the record)."""
        if record.inline is not None:
            return None
        if record.version < 2:
            return f"{self.base_path}/{record.key}"
        return f"{self.base_path}/{record.data_path}"

    def data_url(self, key: str) -> str:
        """The logical URL of `key`'s result (`ResultRef.url`): `load()` resolves it in either layout."""
        _check_key(key)
        return f"{self.url}/{key}"

    def record_url(self, key: str) -> str:
        _check_key(key)
        return f"{self.url}/{shard(key)}/{key}{META_SUFFIX}"

    def _path_url(self, path: str) -> str:
        return self.url + path[len(self.base_path):]

    def _legacy_record_path(self, key: str) -> str:
        return f"{self.base_path}/{key}{META_SUFFIX}"

    def lock_path(self, key: str) -> str:
        _check_key(key)
        return f"{self.base_path}/{LOCKS_DIR}/{key}.lock"

    def ref(self, record_or_key: ResultRecord | str) -> ResultRef:
        """A portable reference to the result under a key (or a record's key)."""
        key = record_or_key.key if isinstance(record_or_key, ResultRecord) else record_or_key
        _check_key(key)
        options = self._public_options
        return ResultRef(self.url, key, dict(options) if options else {})

    # -- results --------------------------------------------------------------------------------------------------
    def write(self, key: str, value: Any, serializer: str | Mapping[str, Any] | Serializer | None = None, *,
              expiration: dt.datetime | dt.timedelta | float | None = None, task_identity: Any = None) -> ResultRef:
        """Persist `value` under `key` and return a `ResultRef`: the data (inside the record when it is at most
        `INLINE_MAX` bytes, else in a fresh object), then the record, atomically (the commit), then the
        superseded data object is deleted.

        `serializer` is a name, spec or instance (default: the DISTRIBUTARY_RESULTS_DEFAULT_SERIALIZER setting).
        `expiration` is an absolute datetime, or a timedelta / seconds from now. Raises `SerializationError` for
        a value the serializer cannot handle and `ResultStoreError` when the store cannot be written.
        """
        serializer = get_serializer(serializer or settings.get("RESULTS_DEFAULT_SERIALIZER"))
        record_path = self.record_path(key)
        lease = self._leases.get((key, threading.get_ident())) if self._leases else None
        if lease is not None and not lease.still_held():
            current = self._read_record_at(key, record_path, quiet=True)
            if isinstance(current, ResultRecord) and current.created.timestamp() >= lease.acquired_at:
                log.warning("Not writing the result of %r to %s: this run's lease on the key was lost and another "
                            "run has written it since (at %s); keeping that newer result.", key, self.url,
                            current.created.isoformat())
                return self.ref(key)
        data_name = f"{shard(key)}/{key}.{uuid.uuid4().hex[:16]}{DATA_SUFFIX}"
        data_path = f"{self.base_path}/{data_name}"
        size, digest, inline = self._io("write", self._path_url(data_path), self._backend.write_data, data_path,
                                        serializer, value, INLINE_MAX)
        record = ResultRecord(key=key, data_url=None if inline is not None else self._path_url(data_path),
                              serializer=serializer.to_spec(), size=size, checksum=digest, created=utcnow(),
                              expiration=_expiration(expiration), task_identity=task_identity, inline=inline,
                              data_path=None if inline is not None else data_name)
        previous = self._read_record_at(key, record_path, quiet=True)
        self._io("write", self._path_url(record_path), self._backend.write, record_path, record.to_json())
        if isinstance(previous, ResultRecord):
            old = self.data_path(previous)
            if old is not None and old != data_path:
                self._delete_quietly(old)
        return self.ref(key)

    def read_record(self, key: str) -> ResultRecord | None:
        """The record of `key` (one small read; a second one for stores written in the flat format 1 layout), or
        None when there is none. A record that cannot be parsed is reported with a warning and treated as absent
        (a cache miss)."""
        record = self._read_record_at(key, self.record_path(key))
        if record is None:  # not there (an unreadable one is _UNREADABLE): perhaps a format 1 store
            record = self._read_record_at(key, self._legacy_record_path(key), legacy=True)
        return record if isinstance(record, ResultRecord) else None

    def _read_record_at(self, key: str, path: str, legacy: bool = False, quiet: bool = False) -> Any:
        url = self._path_url(path)
        try:
            raw = self._io("read", url, self._backend.read, path)
        except FileNotFoundError:
            return None
        try:
            record = ResultRecord.from_json(raw)
        except ValueError as exc:
            if not quiet:
                warnings.warn(f"Ignoring the unreadable result record {url}: {exc}. Treating it as a cache miss; "
                              "the next write of this key replaces it.", RuntimeWarning, stacklevel=3)
            return _UNREADABLE
        if record.key != key:
            if not (legacy or quiet):  # a flat key such as "ab/cd/x" can meet the sharded record of key "x"
                warnings.warn(f"Ignoring the result record {url}: it is for key {record.key!r}, not {key!r} "
                              "(copied from elsewhere?). Treating it as a cache miss.", RuntimeWarning,
                              stacklevel=3)
            return None
        return record

    def read_value(self, record: ResultRecord) -> Any:
        """Load the value a record describes, after checking the size and checksum of its bytes. Raises
        `MissingResult` when the data is gone, `CorruptResult` when it does not match its record, and
        `ResultStoreError` when the serializer the record names cannot load it."""
        data: Any = record.inline
        if data is not None:  # inside its record (the URL for messages is made only when one is needed)
            if len(data) == record.size and checksum_matches(record.checksum, data):
                return self._loads(record, data, None)
            url = self.record_url(record.key)
        for attempt in range(_READ_RETRIES + 1 if data is None else 0):
            path = self.data_path(record)
            if path is None:  # a re-read record now holds its data inline
                return self.read_value(record)
            url = self._path_url(path)
            try:
                data = self._io("read", url, self._backend.read_data, path)
            except FileNotFoundError:
                # Superseded by an overwrite since we read the record? Then the new record says where to look.
                newer = self.read_record(record.key)
                if newer is None or newer == record or attempt == _READ_RETRIES:
                    raise MissingResult(
                        f"The result {url} is gone: its record exists but its data does not (deleted, or "
                        "expired by a bucket lifecycle rule?). Recompute it, e.g. with refresh_cache=True."
                    ) from None
                record = newer
                continue
            if len(data) == record.size and checksum_matches(record.checksum, data):
                return self._loads(record, data, url)
            if record.version >= 2 or attempt == _READ_RETRIES:
                break  # format 2 data is never rewritten in place: a mismatch is damage, not a race
            # Format 1: probably an overwrite between its data and its record: wait for the new record.
            time.sleep(0.05 * 2**attempt)
            newer = self.read_record(record.key)
            if newer is None:
                raise MissingResult(f"The result {url} was deleted while it was being read.")
            record = newer
        raise CorruptResult(
            f"The data at {url} (key {record.key!r}) does not match its record ({len(data)} bytes; the record "
            f"says {record.size} bytes, checksum {record.checksum}): it is corrupt or truncated. Delete it "
            "(store.delete(key)) or recompute it with refresh_cache=True.")

    def _loads(self, record: ResultRecord, data: Any, url: str | None) -> Any:
        """`url`: where the data was read (None: inside its record)."""
        serializer = get_serializer(record.serializer)
        try:
            return serializer.loads(data)
        except DistributaryError:
            raise
        except Exception as exc:
            if url is None:
                url = self.record_url(record.key)
            raise ResultStoreError(
                f"The result {url} (key {record.key!r}) could not be loaded with the serializer its record names "
                f"({record.serializer.get('type')!r}): {type(exc).__name__}: {exc}. The data matches its "
                "checksum, so it was written by another serializer than the record says (a record edited or "
                "copied from elsewhere?), or that serializer's version cannot read it. Delete the key "
                "(store.delete(key)) or recompute it with refresh_cache=True.") from exc

    def load(self, key: str) -> Any:
        """The value stored under `key`; `MissingResult` if there is none."""
        record = self.read_record(key)
        if record is None:
            raise MissingResult(f"There is no result {self.data_url(key)} (no record {self.record_url(key)}).")
        return self.read_value(record)

    def exists(self, key: str) -> bool:
        """Whether `key` has a record that has not expired (one small read; the data is not checked)."""
        record = self.read_record(key)
        return record is not None and not record.expired

    def delete(self, key: str) -> None:
        """Remove the record, then the data, of `key`, in both layouts (missing ones are fine)."""
        for path, legacy in ((self.record_path(key), False), (self._legacy_record_path(key), True)):
            record = self._read_record_at(key, path, legacy=legacy, quiet=True)
            self._io("delete", self._path_url(path), self._backend.delete, path)
            data = (self.data_path(record) if isinstance(record, ResultRecord)
                    else f"{self.base_path}/{key}" if legacy else None)
            if data is not None:
                self._io("delete", self._path_url(data), self._backend.delete, data)

    def _delete_quietly(self, path: str) -> None:
        try:
            self._io("delete", self._path_url(path), self._backend.delete, path)
        except ResultStoreError as exc:
            warnings.warn(f"Could not delete the superseded result data {self._path_url(path)}: {exc}",
                          RuntimeWarning, stacklevel=3)

    def check(self) -> None:
        """Raise `ResultStoreError` (naming the bucket and what to do) unless the store's endpoint answers and
        its bucket or container exists. One small request; nothing to check for a local folder or memory://
        (folders are made on the first write). Access denied to the bucket itself passes: object permissions
        without bucket permissions are common, and the reads and writes say if they are denied."""
        protocol = self.fs.protocol
        if self.is_local or "memory" in ((protocol,) if isinstance(protocol, str) else tuple(protocol)):
            return
        bucket = self.base_path.split("/", 1)[0]
        url = self.fs.unstrip_protocol(bucket)
        try:
            self._io("reach the bucket", url, self.fs.info, bucket)
        except ResultStoreError as exc:
            if exc.__cause__ is not None and _is_denied(exc.__cause__):
                return  # credentials may read and write objects without the right to look at the bucket
            raise

    def lease(self, key: str, ttl: float | None = None, timeout: float | None = None) -> "Lease":
        """A lease on `key`: a context manager that waits (polling with backoff) until no one else holds it, then
        holds it, renewing it in the background, until the block ends. `ttl` (default: the
        DISTRIBUTARY_RESULTS_LOCK_LEASE_SECONDS setting) is how long the lease outlives a holder that died;
        `timeout` None waits for ever, else raises `LockTimeoutError` after that many seconds.

            with store.lease(key, ttl=60, timeout=300):
                if store.read_record(key) is None:
                    store.write(key, compute(), "cloudpickle")
        """
        from .locks import Lease

        ttl = float(settings.get("RESULTS_LOCK_LEASE_SECONDS")) if ttl is None else float(ttl)
        return Lease(self, key, ttl=ttl, timeout=timeout)

    # -- used by leases -------------------------------------------------------------------------------------------
    def _lock_read(self, key: str) -> bytes | None:
        try:
            return self._io("read", self.lock_url(key), self._backend.read, self.lock_path(key))
        except FileNotFoundError:
            return None

    def _lock_create(self, key: str, body: bytes) -> bool:
        return self._io("create", self.lock_url(key), self._backend.create_exclusive, self.lock_path(key), body)

    def _lock_overwrite(self, key: str, body: bytes) -> None:
        self._io("write", self.lock_url(key), self._backend.write, self.lock_path(key), body)

    def _lock_delete(self, key: str) -> None:
        self._io("delete", self.lock_url(key), self._backend.delete, self.lock_path(key))

    def lock_url(self, key: str) -> str:
        _check_key(key)
        return f"{self.url}/{LOCKS_DIR}/{key}.lock"

    # -- error translation ----------------------------------------------------------------------------------------
    def _io(self, action: str, url: str, fn: Any, *args: Any) -> Any:
        """Run one backend operation. "Not found" is FileNotFoundError on a read (the caller decides what missing
        means) and success on a delete; every other backend error becomes a `ResultStoreError` naming `url` and
        saying what to do, with the backend's exception as its cause."""
        try:
            return fn(*args)
        except DistributaryError:
            raise
        except Exception as exc:
            if _is_denied(exc):
                raise ResultStoreError(
                    f"Cannot {action} {url}: access denied ({exc}). Check the credentials (environment variables "
                    "such as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, "
                    "AZURE_STORAGE_CONNECTION_STRING, or storage_options) and the permissions on it.") from exc
            if not _is_not_found(exc):
                raise ResultStoreError(
                    f"Cannot {action} {url}: {type(exc).__name__}: {exc}. Check that the storage endpoint is "
                    "reachable and the credentials are valid (see the cause below).") from exc
            if action == "delete":
                return None  # already gone (GCS and Azure raise for a missing object, S3 does not)
            if action == "read":
                raise FileNotFoundError(url) from exc
            raise ResultStoreError(
                f"Cannot {action} {url}: the bucket, container or folder does not exist ({exc}). Create it "
                "(distributary does not create buckets or containers), or fix the result storage URL.") from exc


def _status(exc: BaseException) -> Any:
    return getattr(exc, "status_code", None) or getattr(exc, "code", None)


def _is_denied(exc: BaseException) -> bool:
    # s3fs raises PermissionError; azure and gcsfs errors carry the HTTP status.
    return isinstance(exc, PermissionError) or _status(exc) in (401, 403)


def _is_not_found(exc: BaseException) -> bool:
    # FileNotFoundError from most backends; adlfs lets azure's ResourceNotFoundError (status 404) through on writes.
    return isinstance(exc, FileNotFoundError) or _status(exc) == 404


_CHECKED_KEYS: set[str] = set()  # recently validated keys: one result's key is checked several times per read


_UNREADABLE = object()  # a record file that exists but does not parse (not the same as no record)


def _check_key(key: Any) -> None:
    if type(key) is str and key in _CHECKED_KEYS:
        return
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"A result key must be a non-empty string, not {key!r}.")
    parts = key.split("/")
    if (key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts) or parts[0] == LOCKS_DIR
            or key.endswith(META_SUFFIX)):
        raise ConfigurationError(
            f"Result key {key!r} is not allowed: use relative names without '.', '..' or empty parts, not starting "
            f"with {LOCKS_DIR!r} and not ending with {META_SUFFIX!r}.")
    if type(key) is str:
        if len(_CHECKED_KEYS) >= 4096:
            _CHECKED_KEYS.clear()
        _CHECKED_KEYS.add(key)


def _expiration(value: dt.datetime | dt.timedelta | float | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.astimezone(dt.timezone.utc)
    if isinstance(value, dt.timedelta):
        return utcnow() + value
    if isinstance(value, (int, float)):
        return utcnow() + dt.timedelta(seconds=float(value))
    raise ConfigurationError(f"expiration must be a datetime, timedelta or seconds, not {value!r}.")


# -- resolving specs to stores (cached per process) -------------------------------------------------------------------
_STORES: dict[tuple[Any, ...], ResultStore] = {}
_BY_URL: dict[tuple[int, str], list[ResultStore]] = {}
_FILESYSTEMS: dict[tuple[Any, ...], AbstractFileSystem] = {}
_CACHE_LOCK = threading.RLock()


def resolve_store(spec: Any, storage_options: Mapping[str, Any] | None = None, *, base_path: str | None = None
                  ) -> ResultStore:
    """The `ResultStore` for `spec`, cached per process by URL and storage options.

    `spec` is a path (`/abs/path`, `relative/path`, `~/path`), a URL (`file:///path`, `memory://name`,
    `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or `abfs://...`), an fsspec file system
    (with `base_path` inside it), or a `ResultStore` (returned as is). `storage_options` are passed to the fsspec
    backend on top of what the environment provides (see `distributary.integrations.storage`).
    """
    if isinstance(spec, ResultStore):
        return spec
    if isinstance(spec, AbstractFileSystem):
        options = dict(storage_options if storage_options is not None else getattr(spec, "storage_options", {}))
        url = spec.unstrip_protocol(spec._strip_protocol(base_path or ""))
        cache_key: tuple[Any, ...] = (os.getpid(), "fs", id(spec), url, _freeze(options))
        with _CACHE_LOCK:
            store = _STORES.get(cache_key)
            if store is None:
                store = _STORES[cache_key] = ResultStore(spec, base_path or "", options)
                _BY_URL.setdefault((os.getpid(), store.url), []).append(store)
        return store
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise ConfigurationError(f"A result store is a path, a URL, an fsspec file system or a ResultStore, not "
                                 f"{spec!r}.")
    protocol, path = _split(spec)
    if base_path:
        path = f"{path.rstrip('/')}/{base_path.strip('/')}"
    options = dict(storage_options or {})
    cache_key = (os.getpid(), protocol, path, _freeze(options))
    with _CACHE_LOCK:
        store = _STORES.get(cache_key)
        if store is None:
            store = ResultStore(_filesystem(spec, protocol, options), path, options)
            # Spellings of one place ("memory://x", "memory:///x") share one store.
            canonical = (os.getpid(), store.url, _freeze(options))
            if canonical not in _STORES:
                _STORES[canonical] = store
                _BY_URL.setdefault((os.getpid(), store.url), []).append(store)
            store = _STORES[canonical]
            _STORES[cache_key] = store
    return store


def store_for_ref(store_url: str, public_options: Mapping[str, Any] | None) -> ResultStore:
    """The store a `ResultRef` points into: one this process already opened for that URL with the same
    non-secret options (so explicit credentials given to it apply), else a new one from the URL, the ref's
    options and this process's environment."""
    with _CACHE_LOCK:
        for store in _BY_URL.get((os.getpid(), store_url), ()):
            if storage_glue.public_storage_options(store.storage_options) == dict(public_options or {}):
                return store
    return resolve_store(store_url, public_options or None)


def _split(spec: str) -> tuple[str, str]:
    protocol, sep, rest = spec.partition("://")
    if not sep:
        return "file", os.path.abspath(os.path.expanduser(spec))
    protocol = storage_glue.canonical_protocol(protocol.lower())
    if protocol == "file":
        return "file", os.path.abspath(os.path.expanduser(rest))
    return protocol, rest


def _filesystem(url: str, protocol: str, options: dict[str, Any]) -> AbstractFileSystem:
    cache_key = (os.getpid(), protocol, _freeze(options))
    fs = _FILESYSTEMS.get(cache_key)
    if fs is not None:
        return fs
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise ConfigurationError(
            f"Cannot open the result store {url!r}: no fsspec implementation is known for the protocol "
            f"{protocol!r}. Use a local path, memory://, s3://, gs:// or az://, or install the package that "
            f"registers {protocol!r} with fsspec.") from exc
    except ImportError as exc:
        extra, package = storage_glue.install_hint(protocol)
        if extra is not None:
            raise MissingDependencyError(f"The result store {url!r} (protocol {protocol}://, package {package})",
                                         extra, exc) from exc
        raise ConfigurationError(f"Cannot open the result store {url!r}: {exc}") from exc
    try:
        fs = cls(**storage_glue.effective_storage_options(protocol, options))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"Cannot open the result store {url!r} with storage options {sorted(options)}: {exc}. Fix the "
            "storage_options, or set the backend's environment variables.") from exc
    _FILESYSTEMS[cache_key] = fs
    return fs


def _freeze(options: Mapping[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=repr)
