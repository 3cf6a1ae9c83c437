"""Schedules: cron, interval and rrule in IANA time zones, across both daylight-saving changes."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from distributary.errors import ConfigurationError
from distributary.schedules import Cron, Interval, RRule, construct_schedule, parse_interval, schedule_from_dict

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")


def local(dates, tz=NY):
    return [d.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for d in dates]


def test_cron_2am_new_york_runs_once_on_the_spring_forward_day_at_3am_edt():
    dates = Cron("0 2 * * *", timezone="America/New_York").get_dates(
        start=dt.datetime(2026, 3, 7, 12, tzinfo=UTC), end=dt.datetime(2026, 3, 10, 12, tzinfo=UTC))
    assert local(dates) == ["2026-03-08 03:00 EDT", "2026-03-09 02:00 EDT", "2026-03-10 02:00 EDT"]


def test_cron_2am_new_york_runs_once_on_the_fall_back_day_at_2am_est():
    dates = Cron("0 2 * * *", timezone="America/New_York").get_dates(
        start=dt.datetime(2026, 10, 31, 0, tzinfo=UTC), end=dt.datetime(2026, 11, 3, 0, tzinfo=UTC))
    assert local(dates) == ["2026-10-31 02:00 EDT", "2026-11-01 02:00 EST", "2026-11-02 02:00 EST"]


def test_a_repeated_wall_time_fires_once_at_its_first_occurrence():
    dates = Cron("30 1 * * *", timezone="America/New_York").get_dates(
        start=dt.datetime(2026, 11, 1, 0, tzinfo=UTC), end=dt.datetime(2026, 11, 2, 12, tzinfo=UTC))
    assert local(dates) == ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]


def test_hourly_cron_never_fires_twice_at_one_instant_across_the_gap():
    dates = Cron("0 * * * *", timezone="America/New_York").get_dates(5, start=dt.datetime(2026, 3, 8, 5, tzinfo=UTC))
    assert local(dates) == ["2026-03-08 00:00 EST", "2026-03-08 01:00 EST", "2026-03-08 03:00 EDT",
                            "2026-03-08 04:00 EDT", "2026-03-08 05:00 EDT"]
    assert len(set(dates)) == len(dates)


def test_cron_weekdays_and_day_or():
    start = dt.datetime(2026, 6, 5, 14, tzinfo=UTC)  # a Friday, 10:00 in New York
    assert local(Cron("0 9 * * MON-FRI", timezone="America/New_York").get_dates(2, start=start)) == [
        "2026-06-08 09:00 EDT", "2026-06-09 09:00 EDT"]
    # the 1st of the month OR a Monday (cron's rule) vs. a Monday that is the 1st
    either = Cron("0 0 1 * MON").get_dates(3, start=dt.datetime(2026, 6, 1, 1, tzinfo=UTC))
    both = Cron("0 0 1 * MON", day_or=False).get_dates(1, start=dt.datetime(2026, 6, 1, 1, tzinfo=UTC))
    assert [d.day for d in either] == [8, 15, 22]
    assert both == [dt.datetime(2027, 2, 1, tzinfo=UTC)]


@pytest.mark.parametrize("value", [1800, 1800.0, dt.timedelta(minutes=30), "PT30M", "00:30:00"])
def test_interval_accepts_the_seed_forms(value):
    assert parse_interval(value) == dt.timedelta(minutes=30)
    dates = Interval(value).get_dates(3, start=dt.datetime(2026, 1, 1, 0, 10, tzinfo=UTC))
    assert dates == [dt.datetime(2026, 1, 1, 0, 30, tzinfo=UTC) + i * dt.timedelta(minutes=30) for i in range(3)]


def test_interval_anchor_and_daily_interval_keeps_wall_time_across_dst():
    anchor = dt.datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert Interval(600, anchor_date=anchor).get_dates(2, start=dt.datetime(2026, 1, 2, 0, 0, tzinfo=UTC)) == [
        dt.datetime(2026, 1, 2, 0, 5, tzinfo=UTC), dt.datetime(2026, 1, 2, 0, 15, tzinfo=UTC)]
    daily = Interval(dt.timedelta(days=1), anchor_date=dt.datetime(2026, 3, 1, 9, 0), timezone="America/New_York")
    assert local(daily.get_dates(3, start=dt.datetime(2026, 3, 7, tzinfo=UTC))) == [
        "2026-03-07 09:00 EST", "2026-03-08 09:00 EDT", "2026-03-09 09:00 EDT"]
    hourly = Interval(3600, timezone="America/New_York")  # elapsed time: every hour exactly, even at the gap
    got = hourly.get_dates(3, start=dt.datetime(2026, 3, 8, 6, tzinfo=UTC))
    assert [b - a for a, b in zip(got, got[1:])] == [dt.timedelta(hours=1)] * 2


def test_rrule_last_weekday_of_the_month_bysetpos():
    rule = RRule("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1")
    assert [d.date().isoformat() for d in rule.get_dates(5, start=dt.datetime(2026, 1, 1, tzinfo=UTC))] == [
        "2026-01-30", "2026-02-27", "2026-03-31", "2026-04-30", "2026-05-29"]


def test_rrule_with_a_zoned_dtstart_keeps_its_wall_time():
    rule = RRule("DTSTART;TZID=America/New_York:20260101T090000\nRRULE:FREQ=DAILY")
    assert local(rule.get_dates(2, start=dt.datetime(2026, 3, 7, tzinfo=UTC))) == [
        "2026-03-07 09:00 EST", "2026-03-08 09:00 EDT"]


def test_rrule_count_ends():
    assert len(RRule("DTSTART:20260101T000000\nRRULE:FREQ=DAILY;COUNT=3").get_dates(10, start=dt.datetime(
        2025, 1, 1, tzinfo=UTC))) == 3


def test_next_after_is_strictly_after():
    c = Cron("0 * * * *")
    at = dt.datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert c.next_after(at, 2) == [dt.datetime(2026, 1, 1, 6, tzinfo=UTC), dt.datetime(2026, 1, 1, 7, tzinfo=UTC)]
    assert c.get_dates(1, start=at) == [at]


@pytest.mark.parametrize("sched", [Cron("*/5 * * * *", timezone="Europe/Berlin", day_or=False),
                                   Interval("PT1H", anchor_date=dt.datetime(2026, 1, 1, tzinfo=UTC)),
                                   RRule("FREQ=WEEKLY;BYDAY=MO", timezone="Asia/Tokyo")])
def test_round_trip_through_storage(sched):
    again = schedule_from_dict(sched.to_dict(), parameters={"a": 1})
    start = dt.datetime(2026, 5, 1, tzinfo=UTC)
    assert again.get_dates(5, start=start) == sched.get_dates(5, start=start)
    assert again.parameters == {"a": 1}


@pytest.mark.parametrize("make, words", [
    (lambda: Cron("61 * * * *"), "invalid cron"), (lambda: Cron("0 2 * * *", timezone="Mars/Olympus"), "time zone"),
    (lambda: Interval("half an hour"), "invalid interval"), (lambda: Interval(0), "positive"),
    (lambda: RRule("FREQ=SOMETIMES"), "invalid rrule"),
    (lambda: construct_schedule(cron="* * * * *", interval=5), "exactly one")])
def test_bad_input_says_what_to_do(make, words):
    with pytest.raises(ConfigurationError, match=words):
        make()
