"""Schedules of deployments (Prefect 3's `prefect.schedules`): `Cron`, `Interval` and `RRule`, each in an IANA
time zone, each able to say when it next fires.

    Cron("0 9 * * MON-FRI", timezone="America/New_York").get_dates(3, start=now)
    Interval("PT30M").get_dates(5)
    RRule("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1").get_dates(12)

Cron and rrule arithmetic is croniter's and dateutil's, run on local wall-clock times; each wall time is then
placed in the zone with `zoneinfo`. Daylight-saving rules that follow (the README documents them):

- A wall time the clocks skip (02:30 on the spring-forward day in New York) fires at the same offset from the
  last valid time before the gap, i.e. one hour later by the clock (03:30 EDT): the run happens once, late.
- A wall time the clocks repeat (01:30 on the fall-back day) fires once, at its first occurrence (EDT).
- Two wall times that land on the same instant fire once.

So "0 2 * * *" in America/New_York fires exactly once on both change days: 03:00 EDT on the spring-forward day
(02:00 does not exist), 02:00 EST on the fall-back day.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigurationError

UTC = dt.timezone.utc
DEFAULT_ANCHOR = dt.datetime(2020, 1, 1)  # wall time in the schedule's zone (Prefect's default anchor date)
MAX_DATES = 10_000                         # the most dates one call returns


def _zone(name: str | None) -> ZoneInfo | dt.timezone:
    if name in (None, "UTC", "utc", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"unknown time zone {name!r}: use an IANA name such as 'America/New_York' or "
                                 f"'Europe/Berlin' (or 'UTC')") from None


def _aware(value: dt.datetime | None, default_tz: Any = UTC) -> dt.datetime:
    if value is None:
        return dt.datetime.now(UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=default_tz)


def _place(wall: dt.datetime, tz: Any) -> dt.datetime:
    """A naive wall time in `tz` as an aware instant (fold=0: the first of a repeated time; a skipped time
    keeps the offset before the gap, so it lands after it)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


class Schedule:
    """What every schedule has: a time zone, whether it is active, and parameters of its own that override the
    deployment's for the runs it creates."""

    kind = "schedule"

    def __init__(self, timezone: str | None = None, active: bool = True, parameters: dict[str, Any] | None = None,
                 slug: str | None = None):
        self.timezone = timezone
        self.tz = _zone(timezone)
        self.active = active
        self.parameters = dict(parameters or {})
        self.slug = slug

    def _walls(self, after_wall: dt.datetime) -> Iterator[dt.datetime]:  # pragma: no cover - interface
        raise NotImplementedError

    def _instants(self, start: dt.datetime) -> Iterator[dt.datetime]:
        """The schedule's instants on or after `start` (aware, UTC), ascending, each once."""
        local_start = start.astimezone(self.tz).replace(tzinfo=None)
        # wall times from an hour before the start: a skipped wall time maps to an instant after it
        last: dt.datetime | None = None
        for wall in self._walls(local_start - dt.timedelta(hours=1, microseconds=1)):
            at = _place(wall, self.tz)
            if at < start or (last is not None and at <= last):
                continue
            last = at
            yield at

    def get_dates(self, n: int | None = None, start: dt.datetime | None = None,
                  end: dt.datetime | None = None) -> list[dt.datetime]:
        """The next `n` times (aware, UTC) on or after `start` (default: now), before `end` if given. At least
        one of `n` and `end` bounds the list (with neither: one date)."""
        start = _aware(start)
        end = None if end is None else _aware(end)
        limit = min(n if n is not None else (MAX_DATES if end is not None else 1), MAX_DATES)
        out: list[dt.datetime] = []
        for at in self._instants(start):
            if len(out) >= limit or (end is not None and at >= end):
                break
            out.append(at)
        return out

    def next_after(self, moment: dt.datetime, n: int = 1) -> list[dt.datetime]:
        """The next `n` times strictly after `moment`."""
        return [d for d in self.get_dates(n + 1, start=_aware(moment)) if d > _aware(moment)][:n]

    # -- storage -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form stored with the deployment (`schedule_from_dict` reads it back)."""
        raise NotImplementedError  # pragma: no cover - interface

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.to_dict() == other.to_dict() and (
            self.active, self.parameters, self.slug) == (other.active, other.parameters, other.slug)

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({fields})"


class Cron(Schedule):
    """A cron expression (5 fields, or 6 with seconds; `@daily` and friends), in `timezone` (default UTC).
    `day_or=True` (cron's rule): a day matching day-of-month OR day-of-week fires; False: both must match."""

    kind = "cron"

    def __init__(self, cron: str, timezone: str | None = None, day_or: bool = True, active: bool = True,
                 parameters: dict[str, Any] | None = None, slug: str | None = None):
        from croniter import croniter

        super().__init__(timezone, active, parameters, slug)
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ConfigurationError(f"invalid cron expression {cron!r}: expected five fields such as "
                                     f"'0 9 * * MON-FRI' (minute hour day-of-month month day-of-week)")
        self.cron = cron
        self.day_or = day_or

    def _walls(self, after_wall: dt.datetime) -> Iterator[dt.datetime]:
        from croniter import croniter

        it = croniter(self.cron, after_wall, day_or=self.day_or)
        while True:
            yield it.get_next(dt.datetime)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "cron": self.cron, "timezone": self.timezone, "day_or": self.day_or}


_ISO_DURATION = re.compile(r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
                           r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)
_CLOCK = re.compile(r"^(?:(?P<d>\d+) days?, )?(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$")


def parse_interval(value: Any) -> dt.timedelta:
    """Seconds (int or float), a `timedelta`, ISO 8601 (`"PT30M"`, `"P1D"`) or a clock (`"00:30:00"`)."""
    if isinstance(value, dt.timedelta):
        td = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        td = dt.timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        m = _ISO_DURATION.match(text) if text.upper().startswith("P") else _CLOCK.match(text)
        if m is None or not any(m.groupdict().values()):
            raise ConfigurationError(f"invalid interval {value!r}: give seconds (1800), a timedelta, ISO 8601 "
                                     f"('PT30M', 'P1D') or a clock ('00:30:00')")
        parts = {k: float(v) for k, v in m.groupdict().items() if v}
        td = dt.timedelta(days=parts.get("d", 0), hours=parts.get("h", 0), minutes=parts.get("m", 0),
                          seconds=parts.get("s", 0))
    else:
        raise ConfigurationError(f"invalid interval {value!r} ({type(value).__name__}): give seconds, a "
                                 f"timedelta, ISO 8601 ('PT30M') or a clock ('00:30:00')")
    if td <= dt.timedelta(0):
        raise ConfigurationError(f"an interval must be positive, got {value!r}")
    return td


class Interval(Schedule):
    """Every `interval` from `anchor_date` (default 2020-01-01 00:00 in `timezone`). Intervals of whole days
    keep the anchor's wall time across daylight-saving changes; shorter ones are exact elapsed time."""

    kind = "interval"

    def __init__(self, interval: Any, anchor_date: dt.datetime | str | None = None, timezone: str | None = None,
                 active: bool = True, parameters: dict[str, Any] | None = None, slug: str | None = None):
        super().__init__(timezone, active, parameters, slug)
        self.interval = parse_interval(interval)
        if isinstance(anchor_date, str):
            anchor_date = dt.datetime.fromisoformat(anchor_date)
        self.anchor_date = anchor_date

    @property
    def _whole_days(self) -> bool:
        return self.interval % dt.timedelta(days=1) == dt.timedelta(0)

    def _anchor_wall(self) -> dt.datetime:
        a = self.anchor_date or DEFAULT_ANCHOR
        return a.astimezone(self.tz).replace(tzinfo=None) if a.tzinfo is not None else a

    def _walls(self, after_wall: dt.datetime) -> Iterator[dt.datetime]:
        anchor = self._anchor_wall()
        k = max(0, (after_wall - anchor) // self.interval)
        while True:
            yield anchor + k * self.interval
            k += 1

    def _instants(self, start: dt.datetime) -> Iterator[dt.datetime]:
        if self._whole_days:  # wall-clock steps: a day is 23 or 25 hours at a change
            yield from super()._instants(start)
            return
        anchor = _place(self._anchor_wall(), self.tz)
        k = max(0, -(-(start - anchor) // self.interval))  # the first step on or after start
        while True:
            yield anchor + k * self.interval
            k += 1

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "interval": self.interval.total_seconds(), "timezone": self.timezone,
                "anchor_date": None if self.anchor_date is None else self.anchor_date.isoformat()}


class RRule(Schedule):
    """An iCalendar recurrence rule (RFC 5545, dateutil's parser), e.g. the last weekday of each month:
    `"FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"`. Without a DTSTART the rule starts 2020-01-01 00:00 in
    `timezone`, so the time of day is midnight unless BYHOUR/BYMINUTE say otherwise."""

    kind = "rrule"

    def __init__(self, rrule: str, timezone: str | None = None, active: bool = True,
                 parameters: dict[str, Any] | None = None, slug: str | None = None):
        super().__init__(timezone, active, parameters, slug)
        self.rrule = rrule
        self._rule = self._parse()

    def _parse(self) -> Any:
        from dateutil.rrule import rrulestr

        try:
            rule = rrulestr(self.rrule, dtstart=DEFAULT_ANCHOR, forceset=True, cache=False)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid rrule {self.rrule!r} ({exc}): expected RFC 5545 text such as "
                                     f"'FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1'") from None
        # A DTSTART with a zone in the text: its wall times are in that zone; iterate naive wall times.
        dtstart = getattr(rule, "_rrule", [None])[0]
        if dtstart is not None and dtstart._dtstart.tzinfo is not None:
            if self.timezone is None:
                self.tz = dtstart._dtstart.tzinfo
            text = re.sub(r"DTSTART[^\n]*\n?", "", self.rrule, flags=re.IGNORECASE)
            start = dtstart._dtstart.astimezone(self.tz).replace(tzinfo=None)
            rule = rrulestr(text.strip(), dtstart=start, forceset=True, cache=False)
        return rule

    def _walls(self, after_wall: dt.datetime) -> Iterator[dt.datetime]:
        at = after_wall
        while True:
            nxt = self._rule.after(at, inc=False)
            if nxt is None:
                return
            yield nxt
            at = nxt

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "rrule": self.rrule, "timezone": self.timezone}


SCHEDULE_KINDS: dict[str, type[Schedule]] = {"cron": Cron, "interval": Interval, "rrule": RRule}

CronSchedule, IntervalSchedule, RRuleSchedule = Cron, Interval, RRule  # Prefect's older names


def schedule_from_dict(data: dict[str, Any], active: bool = True, parameters: dict[str, Any] | None = None,
                       slug: str | None = None) -> Schedule:
    """The schedule stored as `data` (`Schedule.to_dict()`)."""
    data = dict(data)
    kind = data.pop("type", None)
    cls = SCHEDULE_KINDS.get(str(kind))
    if cls is None:
        raise ConfigurationError(f"unknown schedule type {kind!r}: expected one of {', '.join(SCHEDULE_KINDS)}")
    if cls is Interval and data.get("anchor_date"):
        data["anchor_date"] = dt.datetime.fromisoformat(data["anchor_date"])
    return cls(**data, active=active, parameters=parameters, slug=slug)


def construct_schedule(cron: str | None = None, interval: Any = None, rrule: str | None = None,
                       timezone: str | None = None, anchor_date: Any = None) -> Schedule:
    """One schedule from `serve()`'s keywords (exactly one of cron, interval, rrule)."""
    given = [k for k, v in (("cron", cron), ("interval", interval), ("rrule", rrule)) if v is not None]
    if len(given) != 1:
        raise ConfigurationError(f"give exactly one of cron=, interval=, rrule= (got {', '.join(given) or 'none'});"
                                 f" for several schedules use schedules=[Cron(...), Interval(...)]")
    if cron is not None:
        return Cron(cron, timezone=timezone)
    if interval is not None:
        return Interval(interval, anchor_date=anchor_date, timezone=timezone)
    assert rrule is not None
    return RRule(rrule, timezone=timezone)


__all__ = ["Schedule", "Cron", "Interval", "RRule", "CronSchedule", "IntervalSchedule", "RRuleSchedule",
           "parse_interval", "schedule_from_dict", "construct_schedule"]
