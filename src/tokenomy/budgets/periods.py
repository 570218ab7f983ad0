"""Budget periods, calendar-aligned in the configured time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tokenomy.budgets.definition import Period

FOREVER_MS = 2**62


def window(
    period: Period, zone: ZoneInfo, now_ms: int, starts_at_ms: int | None = None
) -> tuple[int, int]:
    """[start, end) in epoch milliseconds of the period that contains ``now_ms``."""
    if period == "total":
        return (starts_at_ms or 0), FOREVER_MS
    now = datetime.fromtimestamp(now_ms / 1000, zone)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = midnight, _add_days(midnight, 1, zone)
    elif period == "week":  # ISO weeks start on Monday
        start = _add_days(midnight, -midnight.weekday(), zone)
        end = _add_days(start, 7, zone)
    else:
        start = midnight.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return _ms(start), _ms(end)


def _add_days(moment: datetime, days: int, zone: ZoneInfo) -> datetime:
    """Calendar days in local time (a DST day is 23 or 25 hours long)."""
    naive = moment.replace(tzinfo=None) + timedelta(days=days)
    return naive.replace(tzinfo=zone)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_utc(ms: int | None, timespec: str = "seconds") -> str | None:
    """ISO 8601 in UTC ending in ``Z``; None for no moment (None, or the endless end of a
    ``total`` budget). ``timespec`` as in :meth:`datetime.isoformat`."""
    if ms is None or ms >= FOREVER_MS:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
