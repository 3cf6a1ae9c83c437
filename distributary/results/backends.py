"""The few storage operations the result store needs, for local disks and for fsspec object stores.

Each backend offers: read a small file, read data, write atomically, write a serializer's output (returning
its size, its XXH3-64 checksum and, when it is small enough to be kept in its record, the bytes themselves),
create a file only if it does not exist (for leases), delete. Backend exceptions are raised as they are;
`store.py` translates them into `ResultStoreError`.

Atomicity: records and leases are written to a temporary file in the same directory, then `os.replace` (a
reader sees the old file or the new one, never a partial one; a killed writer leaves only a hidden
`.<name>.<id>.tmp` file). Data objects are written once under a fresh name that no record points to yet, so
they need no rename. Object stores get one `pipe_file` per object (a single PUT, or a multipart/resumable/block
upload that becomes visible only when completed). Nothing is fsync'ed: results survive a killed process, not
necessarily a power loss.
"""
from __future__ import annotations

import errno
import io
import os
import threading
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Callable

import xxhash
from fsspec import AbstractFileSystem

from ..errors import DistributaryError
from ..serializers.base import Serializer

SAMPLE_BLOCK = 64 * 2**10
SAMPLE_BLOCKS = 16
OVERLAP_MIN = 2**20  # a write of at least this many bytes is hashed in a helper thread while it is written
_memory_lock = threading.Lock()  # memory:// lives in this process: a process lock makes create-if-absent atomic
_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_SMALL_READ = 96 * 2**10  # a record holding an inline result of up to INLINE_MAX bytes, base64, fits in one read
new_hasher: Callable[[], Any] = xxhash.xxh3_64  # hashes data written to a file or object (the benchmark swaps it)


def checksum(data: Any) -> str:
    """The checksum format 2 records carry: XXH3-64 of every byte (about 10 GB/s; see the README)."""
    return "xxh3:" + xxhash.xxh3_64_hexdigest(data)


def _hashing_pool() -> ThreadPoolExecutor:
    """This process's threads that hash a large write while the writing thread copies the same bytes out (both
    release the GIL, so on a second core the hash costs the write next to nothing). Made again after a fork."""
    global _pool
    pool = _pool
    if pool is None or pool[0] != os.getpid():
        with _pool_lock:
            pool = _pool
            if pool is None or pool[0] != os.getpid():
                pool = _pool = (os.getpid(), ThreadPoolExecutor(max_workers=os.cpu_count() or 2,
                                                                thread_name_prefix="distributary-hash"))
    return pool[1]


def hashed_while(hash_update: Callable[[Any], Any], data: Any, write: Callable[[Any], Any]) -> None:
    """`write(data)` and `hash_update(data)`, at the same time when `data` is large. Both are done when this
    returns (the caller may then reuse `data`), also when `write` raises."""
    try:
        hashed = _hashing_pool().submit(hash_update, data) if memoryview(data).nbytes >= OVERLAP_MIN else None
    except RuntimeError:  # the interpreter is shutting down: no new threads, hash here
        hashed = None
    if hashed is None:
        hash_update(data)
        write(data)
        return
    try:
        write(data)
    finally:
        hashed.result()


def checksum_matches(expected: str, data: Any) -> bool:
    """Whether `data` has the checksum `expected` (either format: full XXH3-64, or format 1's sampled CRC32)."""
    if expected.startswith("xxh3:"):
        return checksum(data) == expected
    return crc32_hex(_crc_of(data)) == expected


def sampled_crc32(size: int, read_at: Callable[[int, int], Any]) -> int:
    """Format 1 records' checksum (read only): CRC32 of the whole data when it is at most 1 MiB, else of 16
    blocks of 64 KiB spread evenly from its first to its last byte."""
    if size <= SAMPLE_BLOCK * SAMPLE_BLOCKS:
        return zlib.crc32(read_at(0, size))
    crc = 0
    last = size - SAMPLE_BLOCK
    for i in range(SAMPLE_BLOCKS):
        crc = zlib.crc32(read_at(last * i // (SAMPLE_BLOCKS - 1), SAMPLE_BLOCK), crc)
    return crc


def _crc_of(data: Any) -> int:
    if type(data) is bytes and len(data) <= SAMPLE_BLOCK * SAMPLE_BLOCKS:
        return zlib.crc32(data)
    view = memoryview(data).cast("B")
    return sampled_crc32(view.nbytes, lambda offset, n: view[offset:offset + n])


def crc32_hex(crc: int) -> str:
    return f"crc32s:{crc & 0xFFFFFFFF:08x}"


class _SpillWriter(io.RawIOBase):
    """A write-only file for serializers: keeps the first `limit` bytes in memory and hashes everything; only
    when the output grows past `limit` does it open the data file at `path` and stream the rest into it."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__()
        self.path = path
        self.limit = limit
        self.buffer: bytearray | None = bytearray()
        self.file: BinaryIO | None = None
        self.hasher = new_hasher()
        self.pos = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def write(self, b: Any) -> int:
        n = memoryview(b).nbytes
        if self.file is None:
            assert self.buffer is not None
            if self.pos + n <= self.limit:
                self.hasher.update(b)
                self.buffer += b
                self.pos += n
                return n
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.file = open(self.path, "xb")
            self.file.write(self.buffer)  # hashed already
            self.buffer = None
        hashed_while(self.hasher.update, b, self.file.write)  # one pass over the bytes each, side by side
        self.pos += n
        return n

    def finish(self) -> tuple[int, str, bytes | None]:
        if self.file is not None:
            self.file.close()
        inline = bytes(self.buffer) if self.buffer is not None else None
        return self.pos, "xxh3:" + self.hasher.hexdigest(), inline

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class LocalBackend:
    """A local directory tree (paths are absolute OS paths)."""

    def read(self, path: str) -> bytes:
        # A record or lease is small: os.open + os.read (+ one read that finds the end) costs half of open() and
        # its buffered file object, and a cache hit is mostly this read.
        fd = os.open(path, _READ_FLAGS)
        try:
            data = os.read(fd, _SMALL_READ)
            if not data:
                return data
            more = os.read(fd, _SMALL_READ)
            if not more:
                return data
            parts = [data, more]
            while more:
                more = os.read(fd, 2**20)
                parts.append(more)
            return b"".join(parts)
        finally:
            os.close(fd)

    def read_data(self, path: str) -> bytes:
        with open(path, "rb", buffering=0) as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        self._atomic(path, lambda f: f.write(data))

    def write_data(self, path: str, serializer: Serializer, value: Any, inline_max: int
                   ) -> tuple[int, str, bytes | None]:
        """Serialize `value`; (size, checksum, the bytes) when they fit in `inline_max`, else (size, checksum,
        None) with the data written to `path` (a fresh name). The serializer streams into the file, hashed on
        the way, without an in-memory copy of a large payload."""
        sink = _SpillWriter(path, inline_max)
        try:
            _dump(serializer, value, sink)  # type: ignore[arg-type]
            return sink.finish()
        except BaseException:
            sink.discard()
            raise

    def create_exclusive(self, path: str, data: bytes) -> bool:
        # Write the whole body to a temporary file, then hard-link it into place: link() fails if the target
        # exists, and the lock file appears with its full content at once.
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = _temp_name(path)
        with open(tmp, "xb") as f:
            f.write(data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # A file system without hard links: O_EXCL create, then write (a reader may briefly see it empty,
            # which lease readers treat as "held, expiry unknown" until it is filled in).
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        finally:
            os.unlink(tmp)

    def delete(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _atomic(self, path: str, write: Any) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = _temp_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


class FsspecBackend:
    """Any fsspec file system whose `pipe_file` writes an object in one step (s3, gs, abfs, memory, ...)."""

    def __init__(self, fs: AbstractFileSystem) -> None:
        self.fs = fs
        self.is_memory = "memory" in _protocols(fs)

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def read_data(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)

    def write_data(self, path: str, serializer: Serializer, value: Any, inline_max: int
                   ) -> tuple[int, str, bytes | None]:
        data = _dumps(serializer, value)
        if len(data) <= inline_max:
            return len(data), checksum(data), data
        hasher = new_hasher()
        hashed_while(hasher.update, data, lambda d: self.fs.pipe_file(path, d))  # hashed during the upload
        return len(data), "xxh3:" + hasher.hexdigest(), None

    def create_exclusive(self, path: str, data: bytes) -> bool:
        if self.is_memory:
            with _memory_lock:
                if self.fs.exists(path):
                    return False
                self.fs.pipe_file(path, data)
                return True
        try:
            # s3: If-None-Match: *; gcs: ifGenerationMatch=0; azure: overwrite=False (If-None-Match: *).
            self.fs.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if _is_precondition_failed(exc):
                return False
            raise

    def delete(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass


def _dump(serializer: Serializer, value: Any, file: BinaryIO) -> None:
    try:
        serializer.dump(value, file)
    except (DistributaryError, OSError):
        raise  # OSError: the file could not be written (disk full, ...), not a serializer problem
    except Exception as exc:
        raise serializer.cannot_serialize(value, exc) from exc


def _dumps(serializer: Serializer, value: Any) -> bytes:
    try:
        return serializer.dumps(value)
    except DistributaryError:
        raise
    except Exception as exc:
        raise serializer.cannot_serialize(value, exc) from exc


def _is_precondition_failed(exc: BaseException) -> bool:
    # s3fs maps PreconditionFailed to FileExistsError only when the server says which condition failed; SeaweedFS
    # does not, so look at the botocore error behind the OSError.
    for cause in (exc, exc.__cause__, exc.__context__):
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "PreconditionFailed" or status == 412:
                return True
    return "pre-condition" in str(exc).lower() or "precondition" in str(exc).lower()


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _temp_name(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
