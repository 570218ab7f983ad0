"""Time windows of the dashboard, in UTC like the reports, aligned to rollup buckets.

A window aligned to whole days reads the daily rollup, one aligned to hours the hourly one:
that alignment is what keeps page data fast on a ledger of millions of events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tokenomy.errors import InvalidRequest

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_LABELS = {
    "minute": "%Y-%m-%dT%H:%M",
    "hour": "%Y-%m-%dT%H:00",
    "day": "%Y-%m-%d",
    "month": "%Y-%m",
}
_STEP_MS = {"minute": MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS}


@dataclass(frozen=True)
class Window:
    name: str
    start_ms: int
    end_ms: int
    bucket: str  # minute, hour, day or month

    def labels(self) -> list[str]:
        """Every bucket's label in the window, in order (the x axis, gaps included)."""
        out: list[str] = []
        moment = _dt(self.start_ms)
        end = _dt(self.end_ms)
        while moment < end:
            out.append(moment.strftime(_LABELS[self.bucket]))
            moment = (
                _next_month(moment)
                if self.bucket == "month"
                else moment + timedelta(milliseconds=_STEP_MS[self.bucket])
            )
        return out

    def public(self) -> dict[str, str]:
        return {
            "name": self.name,
            "from": _dt(self.start_ms).isoformat().replace("+00:00", "Z"),
            "to": _dt(self.end_ms).isoformat().replace("+00:00", "Z"),
            "bucket": self.bucket,
        }


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return moment.replace(year=moment.year + 1, month=1)
    return moment.replace(month=moment.month + 1)


def floor(ms: int, step_ms: int) -> int:
    return ms // step_ms * step_ms


def today(now_ms: int) -> Window:
    start = floor(now_ms, DAY_MS)
    return Window("today", start, start + DAY_MS, "hour")


def month(now_ms: int) -> Window:
    start = _dt(floor(now_ms, DAY_MS)).replace(day=1)
    return Window("month", _ms(start), _ms(_next_month(start)), "day")


RANGES = ("1h", "24h", "7d", "30d", "90d", "month", "last-month", "12m")
_DEFAULT_BUCKET = {
    "1h": "minute",
    "24h": "hour",
    "7d": "day",
    "30d": "day",
    "90d": "day",
    "month": "day",
    "last-month": "day",
    "12m": "month",
}
# The finest bucket each range may be drawn in (keeps a chart under ~2,200 points).
_FINEST = {"1h": "minute", "24h": "minute", "7d": "hour"}
_ORDER = ("minute", "hour", "day", "month")


def window(name: str, now_ms: int, bucket: str | None = None) -> Window:
    """A named range ending with the current bucket, e.g. ``24h`` = the last 24 whole hours
    up to and including the current one."""
    if name not in RANGES:
        raise InvalidRequest(f"range must be one of {', '.join(RANGES)}", param="range")
    chosen = bucket or _DEFAULT_BUCKET[name]
    if chosen not in _ORDER:
        raise InvalidRequest(f"bucket must be one of {', '.join(_ORDER)}", param="bucket")
    finest = _FINEST.get(name, "day")
    if _ORDER.index(chosen) < _ORDER.index(finest):
        raise InvalidRequest(f"range {name} is drawn at most per {finest}", param="bucket")
    if name == "1h":
        end = floor(now_ms, MINUTE_MS) + MINUTE_MS
        return Window(name, end - HOUR_MS, end, chosen)
    if name == "24h":
        end = floor(now_ms, HOUR_MS) + HOUR_MS
        return Window(name, end - DAY_MS, end, chosen)
    if name in ("7d", "30d", "90d"):
        end = floor(now_ms, DAY_MS) + DAY_MS
        return Window(name, end - int(name[:-1]) * DAY_MS, end, chosen)
    this_month = month(now_ms)
    if name == "month":
        return Window(name, this_month.start_ms, this_month.end_ms, chosen)
    if name == "last-month":
        start = _dt(this_month.start_ms - DAY_MS).replace(day=1)
        return Window(name, _ms(start), this_month.start_ms, chosen)
    start = _dt(this_month.start_ms)
    for _ in range(11):
        start = (start - timedelta(days=1)).replace(day=1)
    return Window(name, _ms(start), this_month.end_ms, chosen)
