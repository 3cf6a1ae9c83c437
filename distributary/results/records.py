"""`ResultRecord`: the small JSON metadata of one result (what a cache check reads), and where records live.

Format 2 (written now): the record is `{base}/{shard}/{key}.meta.json` with `shard(key)` two levels of hash prefix
(`ab/cd`); a result of at most `INLINE_MAX` serialized bytes is kept inside the record (`inline`, base64), a larger
one in its own object `{base}/{shard}/{key}.{unique}.data` (`data_path`, relative to the store). Format 1 (read
only): the record `{base}/{key}.meta.json` beside its data `{base}/{key}`.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 2
META_SUFFIX = ".meta.json"
DATA_SUFFIX = ".data"
INLINE_MAX = 64 * 2**10
"""Results whose serialized bytes are at most this long (64 KiB) are kept inside their record."""
_DECODER = json.JSONDecoder()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def shard(key: str) -> str:
    """The two-level folder (`ab/cd`, from a hash of the key) that holds the record and data of `key`."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=2).hexdigest()
    return f"{digest[:2]}/{digest[2:]}"


@dataclass(frozen=True)
class ResultRecord:
    """Metadata of one persisted result.

    `checksum` is "xxh3:<16 hex digits>", the XXH3-64 hash of all the data bytes (format 2), or, in format 1
    records, "crc32s:<8 hex digits>", a CRC32 sampled above 1 MiB (`backends.sampled_crc32`); `size` is the
    number of data bytes. The data is either `inline` (the bytes themselves) or in the object `data_path`
    (relative to the store; None in format 1, where the data is `{base}/{key}`). `task_identity` says which task
    (and run) wrote it, for people inspecting a store. `expiration` None means it never expires.
    """

    key: str
    data_url: str | None
    serializer: dict[str, Any]
    size: int
    checksum: str
    created: dt.datetime = field(default_factory=utcnow)
    expiration: dt.datetime | None = None
    task_identity: Any = None
    inline: bytes | None = field(default=None, repr=False)
    data_path: str | None = None
    version: int = FORMAT_VERSION

    @property
    def expired(self) -> bool:
        return self.expiration is not None and utcnow() >= self.expiration

    def to_json(self) -> bytes:
        return json.dumps({
            "version": self.version,
            "key": self.key,
            "data_url": self.data_url,
            "data_path": self.data_path,
            "serializer": self.serializer,
            "size": self.size,
            "checksum": self.checksum,
            "created": self.created.isoformat(),
            "expiration": self.expiration.isoformat() if self.expiration is not None else None,
            "task_identity": self.task_identity,
            "inline": base64.b64encode(self.inline).decode("ascii") if self.inline is not None else None,
        }, separators=(",", ":"), default=str).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> "ResultRecord":
        """Parse a record; raises ValueError (with what is wrong) for anything that is not a valid record."""
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            try:  # json.loads less its wrapper (a cache hit parses one record)
                raw, end = _DECODER.raw_decode(text)
                if end != len(text) and not text[end:].isspace():
                    raise ValueError("extra data")
            except ValueError:
                raw = json.loads(text)  # leading white space is fine; anything else raises what is wrong
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        version = raw.get("version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"format version {version} is newer than this distributary understands "
                             f"({FORMAT_VERSION}); upgrade distributary")
        try:
            serializer = raw["serializer"]
            if not isinstance(serializer, dict) or "type" not in serializer:
                raise ValueError(f"bad serializer spec {serializer!r}")
            inline = raw.get("inline")
            data_path = raw.get("data_path")
            if version >= 2 and (inline is None) == (data_path is None):
                raise ValueError("a format 2 record has exactly one of 'inline' and 'data_path'")
            fields = {
                "key": str(raw["key"]),
                "data_url": str(raw["data_url"]) if raw.get("data_url") is not None else None,
                "serializer": serializer,
                "size": int(raw["size"]),
                "checksum": str(raw["checksum"]),
                "created": _parse_time(raw["created"]),
                "expiration": _parse_time(raw["expiration"]) if raw.get("expiration") is not None else None,
                "task_identity": raw.get("task_identity"),
                "inline": base64.b64decode(inline, validate=True) if inline is not None else None,
                "data_path": str(data_path) if data_path is not None and version >= 2 else None,
                "version": version,
            }
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad field value ({exc})") from exc
        # Every field at once, as the frozen dataclass's __init__ would set them one by one (a quarter of the cost)
        record = object.__new__(cls)
        record.__dict__.update(fields)
        return record


def _parse_time(text: Any) -> dt.datetime:
    value = dt.datetime.fromisoformat(str(text))
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
