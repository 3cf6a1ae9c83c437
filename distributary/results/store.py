"""`ResultStore`: persisted results under one fsspec URL, and `resolve_store` to get one (cached per process).

Layout under the store's base URL:

    {base}/{key}                 the data: the bytes a serializer produced
    {base}/{key}.meta.json       the record: small JSON metadata (`ResultRecord`), written after the data
    {base}/.locks/{key}.lock     a lease on the key (`ResultStore.lease`)

Data goes first, then the record, each atomically, so a record never describes half-written data; a cache
check reads only the record. A data file without a record is invisible (a writer died between the two).
When a result is overwritten, a reader may see the old record with the new data for a moment: the size and
CRC32 checks catch it and the read is retried with the new record.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Mapping

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from .. import settings
from ..errors import ConfigurationError, DistributaryError, MissingDependencyError, MissingResult, ResultStoreError
from ..integrations import storage as storage_glue
from ..serializers import Serializer, get_serializer
from .backends import FsspecBackend, LocalBackend, crc32_hex
from .records import ResultRecord, utcnow
from .refs import ResultRef

if TYPE_CHECKING:
    from .locks import Lease

META_SUFFIX = ".meta.json"
LOCKS_DIR = ".locks"
_READ_RETRIES = 3


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
    def path(self, key: str) -> str:
        """The data path of `key` inside the file system."""
        _check_key(key)
        return f"{self.base_path}/{key}"

    def data_url(self, key: str) -> str:
        _check_key(key)
        return f"{self.url}/{key}"

    def record_url(self, key: str) -> str:
        return self.data_url(key) + META_SUFFIX

    def lock_path(self, key: str) -> str:
        _check_key(key)
        return f"{self.base_path}/{LOCKS_DIR}/{key}.lock"

    def ref(self, record_or_key: ResultRecord | str) -> ResultRef:
        """A portable reference to the result under a key (or a record's key)."""
        key = record_or_key.key if isinstance(record_or_key, ResultRecord) else record_or_key
        _check_key(key)
        return ResultRef(self.url, key, storage_glue.public_storage_options(self.storage_options))

    # -- results --------------------------------------------------------------------------------------------------
    def write(self, key: str, value: Any, serializer: str | Mapping[str, Any] | Serializer | None = None, *,
              expiration: dt.datetime | dt.timedelta | float | None = None, task_identity: Any = None) -> ResultRef:
        """Persist `value` under `key` (data first, then its record; each atomic) and return a `ResultRef`.

        `serializer` is a name, spec or instance (default: the DISTRIBUTARY_RESULTS_DEFAULT_SERIALIZER setting).
        `expiration` is an absolute datetime, or a timedelta / seconds from now. Raises `SerializationError` for
        a value the serializer cannot handle and `ResultStoreError` when the store cannot be written.
        """
        serializer = get_serializer(serializer or settings.get("RESULTS_DEFAULT_SERIALIZER"))
        path = self.path(key)
        size, crc = self._io("write", self.data_url(key), self._backend.write_data, path, serializer, value)
        record = ResultRecord(key=key, data_url=self.data_url(key), serializer=serializer.to_spec(), size=size,
                              checksum=crc32_hex(crc), created=utcnow(), expiration=_expiration(expiration),
                              task_identity=task_identity)
        self._io("write", self.record_url(key), self._backend.write, path + META_SUFFIX, record.to_json())
        return self.ref(key)

    def read_record(self, key: str) -> ResultRecord | None:
        """The record of `key` (one small read), or None when there is none. A record that cannot be parsed
        is reported with a warning and treated as absent (a cache miss)."""
        url = self.record_url(key)
        try:
            raw = self._io("read", url, self._backend.read, self.path(key) + META_SUFFIX)
        except FileNotFoundError:
            return None
        try:
            record = ResultRecord.from_json(raw)
        except ValueError as exc:
            warnings.warn(f"Ignoring the unreadable result record {url}: {exc}. Treating it as a cache miss; the "
                          "next write of this key replaces it.", RuntimeWarning, stacklevel=2)
            return None
        if record.key != key:
            warnings.warn(f"Ignoring the result record {url}: it is for key {record.key!r}, not {key!r} (copied "
                          "from elsewhere?). Treating it as a cache miss.", RuntimeWarning, stacklevel=2)
            return None
        return record

    def read_value(self, record: ResultRecord) -> Any:
        """Load the value a record describes. Raises `MissingResult` when the data is gone and `ResultStoreError`
        when it does not match its record (size or checksum) even after re-reading the record."""
        for attempt in range(_READ_RETRIES + 1):
            url = self.data_url(record.key)
            try:
                data, crc = self._io("read", url, self._backend.read_data, self.path(record.key))
            except FileNotFoundError:
                raise MissingResult(f"The result {url} is gone: its record exists but its data does not (deleted, "
                                    "or expired by a bucket lifecycle rule?). Recompute it, e.g. with "
                                    "refresh_cache=True.") from None
            if len(data) == record.size and crc32_hex(crc) == record.checksum:
                return get_serializer(record.serializer).loads(data)
            if attempt == _READ_RETRIES:
                break
            # Probably an overwrite between its data and its record: wait for the new record.
            time.sleep(0.05 * 2**attempt)
            newer = self.read_record(record.key)
            if newer is None:
                raise MissingResult(f"The result {url} was deleted while it was being read.")
            record = newer
        raise ResultStoreError(
            f"The data at {url} does not match its record ({len(data)} bytes, {crc32_hex(crc)}; the record says "
            f"{record.size} bytes, {record.checksum}): it is corrupt or truncated. Delete it (store.delete(key)) "
            "or recompute it with refresh_cache=True.")

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
        """Remove the record, then the data, of `key` (missing ones are fine)."""
        path = self.path(key)
        self._io("delete", self.record_url(key), self._backend.delete, path + META_SUFFIX)
        self._io("delete", self.data_url(key), self._backend.delete, path)

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
        cache_key = (os.getpid(), "fs", id(spec), url, _freeze(options))
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
