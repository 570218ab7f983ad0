"""Budget periods are calendar-aligned in the configured time zone (DST included)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tokenomy.budgets.periods import FOREVER_MS, window

PARIS = ZoneInfo("Europe/Paris")
UTC = ZoneInfo("UTC")


def ms(text: str, zone: ZoneInfo) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=zone).timestamp() * 1000)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", "2026-11-22T13:45:00", "2026-11-22T00:00:00", "2026-11-23T00:00:00"),
        ("week", "2026-11-22T13:45:00", "2026-11-16T00:00:00", "2026-11-23T00:00:00"),  # Sunday
        ("week", "2026-11-23T00:00:00", "2026-11-23T00:00:00", "2026-11-30T00:00:00"),  # Monday
        ("month", "2026-11-30T23:59:59", "2026-11-01T00:00:00", "2026-12-01T00:00:00"),
        ("month", "2026-12-31T12:00:00", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_calendar_periods(period: str, now: str, start: str, end: str) -> None:
    for zone in (UTC, PARIS):
        assert window(period, zone, ms(now, zone)) == (ms(start, zone), ms(end, zone))  # type: ignore[arg-type]


def test_a_daylight_saving_day_is_23_hours_long_in_local_time() -> None:
    start, end = window("day", PARIS, ms("2026-03-29T12:00:00", PARIS))
    assert (end - start) == 23 * 3_600_000
    assert start == ms("2026-03-29T00:00:00", PARIS)


def test_total_counts_from_its_start_and_never_resets() -> None:
    assert window("total", UTC, ms("2026-11-22T00:00:00", UTC)) == (0, FOREVER_MS)
    assert window("total", UTC, 5, starts_at_ms=3) == (3, FOREVER_MS)
