"""`ResultRecord`: the small JSON metadata stored next to a result's data (what a cache check reads)."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class ResultRecord:
    """Metadata of one persisted result.

    `checksum` is "crc32s:<8 hex digits>": the CRC32 of the data bytes, sampled above 1 MiB (see
    `backends.sampled_crc32`); `size` is their length. `task_identity` says which task
    (and run) wrote it, for people inspecting a store. `expiration` None means it never expires.
    """

    key: str
    data_url: str
    serializer: dict[str, Any]
    size: int
    checksum: str
    created: dt.datetime = field(default_factory=utcnow)
    expiration: dt.datetime | None = None
    task_identity: Any = None

    @property
    def expired(self) -> bool:
        return self.expiration is not None and utcnow() >= self.expiration

    def to_json(self) -> bytes:
        return json.dumps({
            "version": FORMAT_VERSION,
            "key": self.key,
            "data_url": self.data_url,
            "serializer": self.serializer,
            "size": self.size,
            "checksum": self.checksum,
            "created": self.created.isoformat(),
            "expiration": self.expiration.isoformat() if self.expiration is not None else None,
            "task_identity": self.task_identity,
        }, separators=(",", ":"), default=str).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> "ResultRecord":
        """Parse a record; raises ValueError (with what is wrong) for anything that is not a valid record."""
        try:
            raw = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        if raw.get("version", FORMAT_VERSION) > FORMAT_VERSION:
            raise ValueError(f"format version {raw['version']} is newer than this distributary understands "
                             f"({FORMAT_VERSION}); upgrade distributary")
        try:
            serializer = raw["serializer"]
            if not isinstance(serializer, dict) or "type" not in serializer:
                raise ValueError(f"bad serializer spec {serializer!r}")
            return cls(
                key=str(raw["key"]),
                data_url=str(raw["data_url"]),
                serializer=serializer,
                size=int(raw["size"]),
                checksum=str(raw["checksum"]),
                created=_parse_time(raw["created"]),
                expiration=_parse_time(raw["expiration"]) if raw.get("expiration") is not None else None,
                task_identity=raw.get("task_identity"),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad field value ({exc})") from exc


def _parse_time(text: Any) -> dt.datetime:
    value = dt.datetime.fromisoformat(str(text))
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
