"""Global concurrency limits, rate limits and their leases in the run store (mixed into `SqlRunStorage`).

Taking slots is one transaction of conditional UPDATEs, one per limit in id order (so two acquirers never
deadlock): `SET active_slots = occupied + n WHERE id = :id AND occupied + n <= limit`, where `occupied` is the row's
own count after its decay. The database re-checks the condition against the latest committed row (SQLite: one
writer at a time; PostgreSQL: the second writer waits for the row and re-evaluates), so no two processes ever
take the last slot. If one limit refuses, the transaction rolls back and nothing is taken. Slots of
`concurrency()` are held by a lease with an expiry; a holder that dies stops renewing it, and the next
acquisition of that limit deletes the expired lease and gives its slots back in the same transaction.
"""
from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from ..errors import ConfigurationError, ObjectNotFound
from ..schemas.concurrency import TAG_PREFIX, Acquisition, ConcurrencyLimit, GlobalConcurrencyLimit
from .models import TABLES

limit_t, lease_t = TABLES["concurrency_limit"], TABLES["concurrency_lease"]
MODES = ("concurrency", "rate_limit")
DEFAULT_LEASE_SECONDS = 300.0  # Prefect's default lease duration
T = TypeVar("T")


def _ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)


def _as_id(value: Any) -> str | None:
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        return None


def _check_values(limit: Any = None, decay: Any = None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigurationError(f"a concurrency limit must be a whole number >= 0, not {limit!r}")
    if decay is not None and decay < 0:
        raise ConfigurationError(f"slot_decay_per_second must be >= 0, not {decay!r}")


class _Refused(Exception):
    """A limit had no room: the acquisition's transaction rolls back."""


class ConcurrencyStorage:
    """Global concurrency limits (by name; tag limits are named `tag:TAG`) and the leases of their slots."""

    engine: Any
    dialect: str

    # -- SQL pieces --------------------------------------------------------------------------------------------
    def _greatest(self, a: Any, b: Any) -> Any:
        return sa.func.greatest(a, b) if self.dialect == "postgresql" else sa.func.max(a, b)

    def _occupied(self, now: float) -> Any:
        """The row's occupied slots at `now`: its count less what decayed since `slots_ts`."""
        c = limit_t.c
        decayed = self._greatest(sa.literal(0.0), c.active_slots - c.slot_decay_per_second * (now - c.slots_ts))
        return sa.case((c.slot_decay_per_second > 0, decayed), else_=c.active_slots)

    def _write(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(conn)` in one transaction, again (up to 3 times) if PostgreSQL aborted it for a deadlock."""
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    return fn(conn)
            except sa.exc.OperationalError as exc:
                code = getattr(getattr(exc, "orig", None), "sqlstate", None)
                if code not in ("40P01", "40001") or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _find(self, conn: sa.Connection, name_or_id: Any) -> Any:
        lid = _as_id(name_or_id)
        cond = limit_t.c.id == lid if lid is not None else limit_t.c.name == str(name_or_id)
        row = conn.execute(sa.select(limit_t).where(cond)).first()
        if row is None and lid is not None:  # a name that looks like a UUID
            row = conn.execute(sa.select(limit_t).where(limit_t.c.name == str(name_or_id))).first()
        if row is None:
            raise ObjectNotFound(f"no concurrency limit named {name_or_id!r} (`distributary gcl ls` lists them; "
                                 f"`distributary gcl create {name_or_id} --limit N` creates one)")
        return row

    def _limit(self, r: Any, now: float, expired: float = 0.0) -> GlobalConcurrencyLimit:
        occupied = r.active_slots
        if r.slot_decay_per_second > 0:
            occupied = max(0.0, occupied - r.slot_decay_per_second * (now - r.slots_ts))
        return GlobalConcurrencyLimit(
            id=r.id, name=r.name, limit=r.limit, active=bool(r.active),
            active_slots=max(0, math.ceil(occupied - expired - 1e-9)), denied_slots=r.denied_slots,
            slot_decay_per_second=r.slot_decay_per_second, avg_slot_occupancy_seconds=r.avg_slot_occupancy_seconds,
            created=_ts(r.created), updated=_ts(r.updated))

    def _expired_slots(self, conn: sa.Connection, ids: list[str], now: float) -> dict[str, float]:
        if not ids:
            return {}
        q = (sa.select(lease_t.c.limit_id, sa.func.sum(lease_t.c.slots)).where(
            lease_t.c.limit_id.in_(ids), lease_t.c.expires < now).group_by(lease_t.c.limit_id))
        return {lid: float(n or 0) for lid, n in conn.execute(q)}

    # -- limits ------------------------------------------------------------------------------------------------
    def create_concurrency_limit(self, name: str, limit: int, active: bool = True, slot_decay_per_second: float = 0.0,
                                 active_slots: int = 0, denied_slots: int = 0) -> GlobalConcurrencyLimit:
        """Create the limit `name` (an error if it exists)."""
        if not name or not str(name).strip():
            raise ConfigurationError("a concurrency limit needs a name")
        _check_values(limit, slot_decay_per_second)
        now = time.time()
        from .deployments import _insert

        with self.engine.begin() as conn:
            got = conn.execute(_insert(self.dialect, limit_t).values(
                id=str(uuid.uuid4()), name=name, limit=limit, active=bool(active), active_slots=float(active_slots),
                slots_ts=now, denied_slots=denied_slots, slot_decay_per_second=float(slot_decay_per_second or 0.0),
                avg_slot_occupancy_seconds=2.0, created=now, updated=now)
                .on_conflict_do_nothing(index_elements=["name"]).returning(limit_t.c.id)).first()
        if got is None:
            raise ConfigurationError(f"concurrency limit {name!r} already exists (`distributary gcl inspect {name}`; "
                                     f"change it with `distributary gcl update {name} --limit N`)")
        return self.read_concurrency_limit(got.id)

    def read_concurrency_limit(self, name_or_id: Any) -> GlobalConcurrencyLimit:
        """The limit by name or id, its `active_slots` as of now (decay applied, expired leases given back)."""
        now = time.time()
        with self.engine.connect().execution_options(distributary_read=True) as conn:
            r = self._find(conn, name_or_id)
            return self._limit(r, now, self._expired_slots(conn, [r.id], now).get(r.id, 0.0))

    def read_concurrency_limits(self, limit: int | None = None, offset: int = 0,
                                prefix: str | None = None) -> list[GlobalConcurrencyLimit]:
        """Limits by name (those whose name starts with `prefix`, if given)."""
        now = time.time()
        q = sa.select(limit_t).order_by(limit_t.c.name).offset(offset or 0).limit(limit)
        if prefix is not None:
            q = q.where(limit_t.c.name.startswith(prefix, autoescape=True))
        with self.engine.connect().execution_options(distributary_read=True) as conn:
            rows = list(conn.execute(q))
            expired = self._expired_slots(conn, [r.id for r in rows], now)
        return [self._limit(r, now, expired.get(r.id, 0.0)) for r in rows]

    def update_concurrency_limit(self, name_or_id: Any, **values: Any) -> GlobalConcurrencyLimit:
        """Change `limit`, `active`, `name`, `slot_decay_per_second`, `active_slots` or `denied_slots`."""
        allowed = {"limit", "active", "name", "slot_decay_per_second", "active_slots", "denied_slots"}
        unknown = set(values) - allowed
        if unknown:
            raise ConfigurationError(f"cannot update concurrency-limit field(s) {sorted(unknown)}: valid are "
                                     f"{sorted(allowed)}")
        values = {k: v for k, v in values.items() if v is not None}
        _check_values(values.get("limit"), values.get("slot_decay_per_second"))
        now = time.time()

        def go(conn: sa.Connection) -> str:
            r = self._find(conn, name_or_id)
            sets = dict(values, updated=now)
            if "active_slots" in values:
                sets.update(active_slots=float(values["active_slots"]), slots_ts=now)
                conn.execute(sa.delete(lease_t).where(lease_t.c.limit_id == r.id))  # the count is set by hand
            elif "slot_decay_per_second" in values:  # keep the occupancy reached under the old rate
                sets.update(active_slots=self._occupied(now), slots_ts=now)
            conn.execute(sa.update(limit_t).where(limit_t.c.id == r.id).values(**sets))
            return str(r.id)

        try:
            lid = self._write(go)
        except sa.exc.IntegrityError as exc:
            raise ConfigurationError(f"cannot rename to {values.get('name')!r}: a limit of that name exists") from exc
        return self.read_concurrency_limit(lid)

    def delete_concurrency_limit(self, name_or_id: Any) -> None:
        def go(conn: sa.Connection) -> None:
            r = self._find(conn, name_or_id)
            conn.execute(sa.delete(limit_t).where(limit_t.c.id == r.id))
            conn.execute(sa.delete(lease_t).where(lease_t.c.limit_id == r.id))

        self._write(go)

    # -- slots -------------------------------------------------------------------------------------------------
    def acquire_concurrency_slots(self, names: Sequence[str], slots: int = 1, mode: str = "concurrency",
                                  lease_seconds: float | None = DEFAULT_LEASE_SECONDS,
                                  holder: dict[str, Any] | None = None) -> Acquisition:
        """Take `slots` slots of every active limit in `names`, all or none, now (never waits). In
        "concurrency" mode the slots are held by a lease of `lease_seconds` (renew it with
        `renew_concurrency_lease`, give them back with `release_concurrency_slots`; None: no lease, give them back
        with `release_concurrency_slots_by_name`); in "rate_limit" mode they are not given back but decay. Names that are not limits are listed in `missing`; inactive limits do not
        limit."""
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {MODES}, not {mode!r}")
        if not isinstance(slots, int) or slots < 1:
            raise ConfigurationError(f"occupy must be a whole number >= 1, not {slots!r}")
        wanted = list(dict.fromkeys(str(n) for n in names))
        with self.engine.connect().execution_options(distributary_read=True) as conn:
            rows = list(conn.execute(sa.select(limit_t).where(limit_t.c.name.in_(wanted))))
        found = {r.name for r in rows}
        missing = [n for n in wanted if n not in found]
        active = sorted((r for r in rows if r.active), key=lambda r: r.id)
        minimal = [{"id": r.id, "name": r.name, "limit": r.limit} for r in rows]
        too_small = [r.name for r in active if r.limit < slots]
        if too_small:
            raise ConfigurationError(f"cannot take {slots} slot(s) of {too_small}: more than the limit "
                                     "(`distributary gcl update NAME --limit N` raises it)")
        if mode == "rate_limit":
            flat = [r.name for r in active if r.slot_decay_per_second <= 0]
            if flat:
                raise ConfigurationError(
                    f"rate_limit needs limits with slot decay; {flat} have none: set it with `distributary gcl "
                    f"update {flat[0]} --slot-decay-per-second RATE`")
        if not active:
            return Acquisition(acquired=True, limits=minimal, missing=missing)
        lease_id = str(uuid.uuid4()) if mode == "concurrency" and lease_seconds is not None else None
        refused: list[Any] = []

        def go(conn: sa.Connection) -> None:
            now = time.time()
            for r in active:
                self._reclaim(conn, r.id, now)
                occupied = self._occupied(now)
                c = limit_t.c
                n = conn.execute(sa.update(limit_t).where(c.id == r.id, c.active.is_(True),
                                                          occupied + slots <= c.limit)
                                 .values(active_slots=occupied + slots, slots_ts=now)).rowcount
                if not n:
                    refused.append(r)
                    raise _Refused  # rolls back what the other limits took
            if lease_id is not None:
                conn.execute(lease_t.insert(), [
                    {"id": lease_id, "limit_id": r.id, "slots": slots, "holder": holder,
                     "expires": now + float(lease_seconds or 0), "created": now}
                    for r in active])

        try:
            self._write(go)
            return Acquisition(acquired=True, lease_id=uuid.UUID(lease_id) if lease_id else None, limits=minimal,
                               missing=missing)
        except _Refused:
            pass
        return Acquisition(acquired=False, limits=minimal, missing=missing, retry_after=self._denied(refused, slots))

    def _reclaim(self, conn: sa.Connection, limit_id: str, now: float) -> float:
        """Delete the limit's expired leases and give their slots back (the deleting transaction alone sees the
        rows it deleted, so slots are never given back twice)."""
        gone = conn.execute(sa.delete(lease_t).where(lease_t.c.limit_id == limit_id, lease_t.c.expires < now)
                            .returning(lease_t.c.slots)).all()
        freed = float(sum(g.slots for g in gone))
        if freed:
            conn.execute(sa.update(limit_t).where(limit_t.c.id == limit_id).values(
                active_slots=self._greatest(sa.literal(0.0), self._occupied(now) - freed), slots_ts=now))
        return freed

    def _denied(self, refused: list[Any], slots: int) -> float | None:
        """Count the refusal (`denied_slots`); for a decaying limit, a hint of the wait until enough decayed."""
        if not refused:
            return None
        r = refused[0]
        with self.engine.begin() as conn:
            conn.execute(sa.update(limit_t).where(limit_t.c.id == r.id).values(
                denied_slots=limit_t.c.denied_slots + slots))
        return float(slots) / r.slot_decay_per_second if r.slot_decay_per_second > 0 else None

    def release_concurrency_slots(self, lease_id: Any) -> bool:
        """Give back the slots of a lease; False if it is gone (it expired and its slots were given back)."""
        lid = _as_id(lease_id)
        if lid is None:
            return False
        with self.engine.connect().execution_options(distributary_read=True) as conn:
            limits = sorted(r.limit_id for r in conn.execute(sa.select(lease_t.c.limit_id).where(lease_t.c.id == lid)))
        if not limits:
            return False

        def go(conn: sa.Connection) -> bool:
            now = time.time()
            any_ = False
            for limit_id in limits:  # in id order, as acquisitions lock them
                gone = conn.execute(sa.delete(lease_t).where(lease_t.c.id == lid, lease_t.c.limit_id == limit_id)
                                    .returning(lease_t.c.slots, lease_t.c.created)).first()
                if gone is None:
                    continue
                any_ = True
                c = limit_t.c
                held = max(0.0, now - gone.created)
                conn.execute(sa.update(limit_t).where(c.id == limit_id).values(
                    active_slots=self._greatest(sa.literal(0.0), self._occupied(now) - gone.slots), slots_ts=now,
                    avg_slot_occupancy_seconds=c.avg_slot_occupancy_seconds * 0.9 + held * 0.1))
            return any_

        return self._write(go)

    def release_concurrency_slots_by_name(self, names: Sequence[str], slots: int,
                                          occupancy_seconds: float | None = None) -> list[dict[str, Any]]:
        """Give back `slots` of each named limit without a lease (Prefect's `/decrement`)."""
        def go(conn: sa.Connection) -> list[dict[str, Any]]:
            now = time.time()
            rows = sorted(conn.execute(sa.select(limit_t).where(limit_t.c.name.in_(list(names)))), key=lambda r: r.id)
            for r in rows:
                if r.active:
                    conn.execute(sa.update(limit_t).where(limit_t.c.id == r.id).values(
                        active_slots=self._greatest(sa.literal(0.0), self._occupied(now) - slots), slots_ts=now))
            return [{"id": r.id, "name": r.name, "limit": r.limit} for r in rows]

        return self._write(go)

    def release_holder_slots(self, names: Sequence[str], holder: dict[str, Any]) -> int:
        """Give back the slots `holder` holds of the named limits (Prefect's v1 `/concurrency_limits/decrement`);
        how many leases were released."""
        with self.engine.connect().execution_options(distributary_read=True) as conn:
            ids = {r.id for r in conn.execute(sa.select(limit_t.c.id).where(limit_t.c.name.in_(list(names))))}
            leases = {r.id for r in conn.execute(sa.select(lease_t.c.id, lease_t.c.holder).where(
                lease_t.c.limit_id.in_(ids))) if r.holder == holder}
        return sum(bool(self.release_concurrency_slots(lid)) for lid in sorted(leases))

    def renew_concurrency_lease(self, lease_id: Any, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        """Push a lease's expiry `lease_seconds` from now; False if it is gone."""
        lid = _as_id(lease_id)
        if lid is None:
            return False
        with self.engine.begin() as conn:
            return bool(conn.execute(sa.update(lease_t).where(lease_t.c.id == lid).values(
                expires=time.time() + float(lease_seconds))).rowcount)

    def read_concurrency_holders(self, limit_ids: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
        """The holders of the live leases of these limits, by limit id."""
        ids = [str(i) for i in limit_ids]
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return out
        q = sa.select(lease_t.c.limit_id, lease_t.c.holder).where(lease_t.c.limit_id.in_(ids),
                                                                   lease_t.c.expires >= time.time())
        with self.engine.connect().execution_options(distributary_read=True) as conn:
            for r in conn.execute(q.order_by(lease_t.c.created)):
                if r.holder:
                    out[r.limit_id].append(r.holder)
        return out

    # -- tag-based task-run limits (Prefect's v1 API over the limits named "tag:TAG") --------------------------
    def _tag_limit(self, g: GlobalConcurrencyLimit, holders: list[dict[str, Any]]) -> ConcurrencyLimit:
        runs = [h["id"] for h in holders if isinstance(h, dict) and h.get("type") == "task_run" and h.get("id")]
        return ConcurrencyLimit(id=g.id, tag=g.name[len(TAG_PREFIX):], concurrency_limit=g.limit, active_slots=runs,
                                created=g.created, updated=g.updated)

    def create_tag_concurrency_limit(self, tag: str, limit: int) -> tuple[ConcurrencyLimit, bool]:
        """Create or update the task-run limit of `tag`; (the limit, created?)."""
        try:
            self.create_concurrency_limit(TAG_PREFIX + tag, limit)
            created = True
        except ConfigurationError:
            self.update_concurrency_limit(TAG_PREFIX + tag, limit=limit)
            created = False
        return self.read_tag_concurrency_limit(tag), created

    def read_tag_concurrency_limit(self, tag_or_id: str) -> ConcurrencyLimit:
        lid = _as_id(tag_or_id)
        try:
            g = self.read_concurrency_limit(lid if lid is not None else TAG_PREFIX + tag_or_id)
        except ObjectNotFound:
            g = None
        if g is None or not g.name.startswith(TAG_PREFIX):
            raise ObjectNotFound(f"no concurrency limit for tag {tag_or_id!r} (`distributary concurrency-limit ls` "
                                 f"lists them; `distributary concurrency-limit create {tag_or_id} N` creates one)")
        return self._tag_limit(g, self.read_concurrency_holders([g.id])[str(g.id)])

    def read_tag_concurrency_limits(self, limit: int | None = None, offset: int = 0) -> list[ConcurrencyLimit]:
        got = self.read_concurrency_limits(limit=limit, offset=offset, prefix=TAG_PREFIX)
        holders = self.read_concurrency_holders([g.id for g in got])
        return [self._tag_limit(g, holders[str(g.id)]) for g in got]

    def reset_tag_concurrency_limit(self, tag: str) -> ConcurrencyLimit:
        """Free every slot of the tag's limit (its leases are dropped; their holders run on unlimited)."""
        self.update_concurrency_limit(TAG_PREFIX + tag, active_slots=0)
        return self.read_tag_concurrency_limit(tag)

    def delete_tag_concurrency_limit(self, tag_or_id: str) -> None:
        self.delete_concurrency_limit(self.read_tag_concurrency_limit(tag_or_id).id)

    def read_active_tag_limits(self) -> set[str]:
        """The tags that have an active task-run limit (what the engine checks a tagged task against)."""
        q = sa.select(limit_t.c.name).where(limit_t.c.name.startswith(TAG_PREFIX), limit_t.c.active.is_(True))
        with self.engine.connect().execution_options(distributary_read=True) as conn:
            return {n[len(TAG_PREFIX):] for (n,) in conn.execute(q)}
