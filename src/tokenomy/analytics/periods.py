"""Time ranges for reports: ``--period 2026-11``, ``--from``/``--to`` in ISO 8601."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tokenomy.errors import InvalidRequest


def parse_instant(value: str, param: str) -> datetime:
    """ISO 8601 date or datetime; naive values are UTC."""
    text = value.strip()
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{param}: {value!r} is not an ISO 8601 date or time (e.g. 2026-11-01 or "
            "2026-11-01T12:00:00Z)",
            param=param,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_period(value: str) -> tuple[datetime, datetime]:
    """``2026``, ``2026-11``, ``2026-11-22``, ``today``, ``yesterday``, ``this-month``,
    ``last-month`` → [start, end) in UTC."""
    text = value.strip().lower()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if text == "today":
        return today, today + timedelta(days=1)
    if text == "yesterday":
        return today - timedelta(days=1), today
    if text in ("this-month", "month"):
        start = today.replace(day=1)
        return start, _next_month(start)
    if text == "last-month":
        end = today.replace(day=1)
        return (end - timedelta(days=1)).replace(day=1), end
    parts = text.split("-")
    try:
        numbers = [int(part) for part in parts]
        if len(numbers) == 1:
            start = datetime(numbers[0], 1, 1, tzinfo=UTC)
            return start, start.replace(year=numbers[0] + 1)
        if len(numbers) == 2:
            start = datetime(numbers[0], numbers[1], 1, tzinfo=UTC)
            return start, _next_month(start)
        if len(numbers) == 3:
            start = datetime(numbers[0], numbers[1], numbers[2], tzinfo=UTC)
            return start, start + timedelta(days=1)
    except ValueError:
        pass
    raise InvalidRequest(
        f"period {value!r} is not YYYY, YYYY-MM, YYYY-MM-DD, today, yesterday, this-month "
        "or last-month",
        param="period",
    )


def _next_month(start: datetime) -> datetime:
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
