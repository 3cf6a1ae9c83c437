"""Concurrency limits over a distributary server's API: the methods of `ConcurrencyStorage` on
`/v2/concurrency_limits/...` and `/concurrency_limits/...`, so `concurrency()`, `rate_limit()`, tag limits and
the CLI work unchanged with DISTRIBUTARY_API_URL set (the server's run store takes the slots atomically).

`ApiConcurrencyStorage` is mixed into `ApiRunStorage` (which provides `request`)."""
from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..schemas.concurrency import TAG_PREFIX, Acquisition, ConcurrencyLimit, GlobalConcurrencyLimit
from .api_errors import MISSING, ApiError

V2 = "v2/concurrency_limits"


def _q(name: Any) -> str:
    return urllib.parse.quote(str(name), safe="")


class ApiConcurrencyStorage:
    """Global and tag-based concurrency limits through the API (mixed into `ApiRunStorage`)."""

    if TYPE_CHECKING:
        def request(self, method: str, path: str, *, body: Any = None, content: bytes | None = None,
                    params: dict[str, Any] | None = None, missing_ok: bool = False) -> Any: ...

    def create_concurrency_limit(self, name: str, limit: int, active: bool = True, slot_decay_per_second: float = 0.0,
                                 active_slots: int = 0, denied_slots: int = 0) -> GlobalConcurrencyLimit:

        try:
            got = self.request("POST", V2 + "/", body={
                "name": name, "limit": limit, "active": active, "slot_decay_per_second": slot_decay_per_second,
                "active_slots": active_slots, "denied_slots": denied_slots})
        except ApiError as exc:
            if exc.status in (409, 422):
                raise ConfigurationError(str(exc)) from exc
            raise
        return GlobalConcurrencyLimit.model_validate(got)

    def read_concurrency_limit(self, name_or_id: Any) -> GlobalConcurrencyLimit:
        return GlobalConcurrencyLimit.model_validate(self.request("GET", f"{V2}/{_q(name_or_id)}"))

    def read_concurrency_limits(self, limit: int | None = None, offset: int = 0,
                                prefix: str | None = None) -> list[GlobalConcurrencyLimit]:
        got = [GlobalConcurrencyLimit.model_validate(g) for g in self.request(
            "POST", V2 + "/filter", body={"limit": 10_000, "offset": 0})]
        if prefix is not None:
            got = [g for g in got if g.name.startswith(prefix)]
        return got[offset:None if limit is None else offset + limit]

    def update_concurrency_limit(self, name_or_id: Any, **values: Any) -> GlobalConcurrencyLimit:

        try:
            self.request("PATCH", f"{V2}/{_q(name_or_id)}", body={k: v for k, v in values.items() if v is not None})
        except ApiError as exc:
            if exc.status == 422:
                raise ConfigurationError(str(exc)) from exc
            raise
        return self.read_concurrency_limit(values.get("name") or name_or_id)

    def delete_concurrency_limit(self, name_or_id: Any) -> None:
        self.request("DELETE", f"{V2}/{_q(name_or_id)}")

    def acquire_concurrency_slots(self, names: Sequence[str], slots: int = 1, mode: str = "concurrency",
                                  lease_seconds: float | None = 300.0,
                                  holder: dict[str, Any] | None = None) -> Acquisition:

        names = list(dict.fromkeys(names))
        try:
            if mode == "concurrency" and lease_seconds is not None:
                got = self.request("POST", V2 + "/increment-with-lease", body={
                    "names": names, "slots": slots, "mode": mode, "lease_duration": lease_seconds, "holder": holder})
                lease, limits = got["lease_id"], got["limits"]
            else:
                lease, limits = None, self.request("POST", V2 + "/increment", body={
                    "names": names, "slots": slots, "mode": mode})
        except ApiError as exc:
            if exc.status == 423:
                return Acquisition(acquired=False)
            if exc.status == 422:
                raise ConfigurationError(str(exc)) from exc
            raise
        found = {x["name"] for x in limits}
        return Acquisition(acquired=True, lease_id=lease if limits else None, limits=limits,
                           missing=[n for n in names if n not in found])

    def release_concurrency_slots(self, lease_id: Any) -> bool:
        self.request("POST", V2 + "/decrement-with-lease", body={"lease_id": str(lease_id)})
        return True

    def renew_concurrency_lease(self, lease_id: Any, lease_seconds: float = 300.0) -> bool:

        got = self.request("POST", f"{V2}/leases/{_q(lease_id)}/renew", body={"lease_duration": lease_seconds},
                           missing_ok=True)
        return got is not MISSING

    # -- tag-based task-run limits ---------------------------------------------------------------------------
    def create_tag_concurrency_limit(self, tag: str, limit: int) -> tuple[ConcurrencyLimit, bool]:
        got = self.request("POST", "concurrency_limits/", body={"tag": tag, "concurrency_limit": limit})
        return ConcurrencyLimit.model_validate(got), True

    def read_tag_concurrency_limit(self, tag_or_id: str) -> ConcurrencyLimit:
        return ConcurrencyLimit.model_validate(self.request("GET", f"concurrency_limits/tag/{_q(tag_or_id)}"))

    def read_tag_concurrency_limits(self, limit: int | None = None, offset: int = 0) -> list[ConcurrencyLimit]:
        got = self.request("POST", "concurrency_limits/filter", body={"limit": limit or 10_000, "offset": offset})
        return [ConcurrencyLimit.model_validate(c) for c in got]

    def reset_tag_concurrency_limit(self, tag: str) -> ConcurrencyLimit:
        self.request("POST", f"concurrency_limits/tag/{_q(tag)}/reset", body={})
        return self.read_tag_concurrency_limit(tag)

    def delete_tag_concurrency_limit(self, tag_or_id: str) -> None:
        self.request("DELETE", f"concurrency_limits/tag/{_q(tag_or_id)}")

    def read_active_tag_limits(self) -> set[str]:
        return {g.name[len(TAG_PREFIX):] for g in self.read_concurrency_limits(prefix=TAG_PREFIX) if g.active}
