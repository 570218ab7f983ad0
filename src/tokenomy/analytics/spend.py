"""Spend grouped by any principal dimension, model, tier, workflow, tag or time bucket.

Reads the coarsest rollup that answers the question exactly (daily for day-aligned UTC
ranges, hourly for hour-aligned ones, per minute for minute-aligned ones; rollup
dimensions only) and the raw events otherwise; all give the same exact figures.
Costs are summed as two integer parts (whole micro-dollars and the pico remainder) so
SQLite's 64-bit SUM never overflows and the total stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tokenomy.analytics.periods import parse_instant, parse_period, to_ms
from tokenomy.database import Connection, json_field, tag_path, time_bucket
from tokenomy.errors import InvalidRequest
from tokenomy.ledger.event import ROLLUP_DIMENSIONS
from tokenomy.ledger.sqlite import ROLLUPS
from tokenomy.money import ZERO, from_pico, usd_str

EVENT_DIMENSIONS = (
    "endpoint",
    "requested_model",
    "route_reason",
    "status",
    "strategy",
    "baseline_model",
)
TIME_BUCKETS = {
    "minute": "%Y-%m-%dT%H:%M",
    "hour": "%Y-%m-%dT%H:00",
    "day": "%Y-%m-%d",
    "month": "%Y-%m",
}
GROUPABLE = (*ROLLUP_DIMENSIONS, *EVENT_DIMENSIONS, *TIME_BUCKETS)
# The longest rollup bucket that can still answer each time grouping (UTC months are days).
_BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "month": 86400}
_SPLIT = 1_000_000  # pico-dollars per micro-dollar
_SUMS = (
    "requests",
    "errors",
    "estimated",
    "cache_hits",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


@dataclass
class SpendQuery:
    group_by: list[str] = field(default_factory=list)
    start_ms: int | None = None
    end_ms: int | None = None
    filters: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.group_by, *self.filters]:
            if name not in GROUPABLE and not name.startswith("tag:"):
                raise InvalidRequest(
                    f"cannot group or filter by {name!r}; choose from {', '.join(GROUPABLE)} "
                    "or tag:NAME",
                    param="group_by",
                )
        if len(set(self.group_by)) != len(self.group_by):
            raise InvalidRequest("group_by names a field twice", param="group_by")

    def source(self) -> tuple[str, str | None]:
        """The coarsest table that answers exactly: (table, its time column in seconds).
        ``(events, None)`` when the question needs a field only events have."""
        fields = [*self.group_by, *self.filters]
        if all(name in ROLLUP_DIMENSIONS or name in TIME_BUCKETS for name in fields):
            finest = min(
                (_BUCKET_SECONDS[name] for name in fields if name in TIME_BUCKETS),
                default=_BUCKET_SECONDS["month"],
            )
            for table, column, seconds in reversed(ROLLUPS):
                if seconds > finest:
                    continue
                bounds = (self.start_ms, self.end_ms)
                if all(ms is None or ms % (seconds * 1000) == 0 for ms in bounds):
                    return table, column
        return "events", None


def _column(conn: Connection, name: str, time_column: str | None) -> str:
    if name in TIME_BUCKETS:
        return time_bucket(conn, TIME_BUCKETS[name], time_column or "ts_ms / 1000")
    if name.startswith("tag:"):
        return json_field(conn, "tags", tag_path(conn, name[4:], literal=True))
    return name


def query_spend(conn: Connection, query: SpendQuery) -> dict[str, Any]:
    table, time_column = query.source()
    rollups = time_column is not None
    where: list[str] = []
    params: list[Any] = []
    for bound, operator in ((query.start_ms, ">="), (query.end_ms, "<")):
        if bound is not None:
            where.append(f"{time_column or 'ts_ms'} {operator} ?")
            params.append(bound // 1000 if rollups else bound)
    for name, value in query.filters.items():
        where.append(f"{_column(conn, name, time_column)} = ?")
        params.append(value)
    if rollups:
        sums = ", ".join(f"SUM({name})" for name in _SUMS)
        latency = "SUM(latency_ms_sum)"
    else:
        sums = (
            "COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(estimated), "
            "SUM(cache_hit), SUM(input_tokens), "
            "SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), "
            "SUM(reasoning_tokens)"
        )
        latency = "SUM(latency_ms)"
    groups = [_column(conn, name, time_column) for name in query.group_by]
    select = ", ".join(
        [
            *groups,
            sums,
            f"SUM(cost_pico / {_SPLIT})",
            f"SUM(cost_pico % {_SPLIT})",
            latency,
            f"SUM(saved_pico / {_SPLIT})",
            f"SUM(saved_pico % {_SPLIT})",
        ]
    )
    sql = f"SELECT {select} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if groups:
        sql += " GROUP BY " + ", ".join(groups)
    rows = [_row(query.group_by, row) for row in conn.execute(sql, params) if row[len(groups)]]
    rows.sort(key=lambda r: (-Decimal(r["cost_usd"]), *(str(r[g]) for g in query.group_by)))
    total = sum((Decimal(r["cost_usd"]) for r in rows), ZERO)
    saved = sum((Decimal(r["saved_usd"]) for r in rows), ZERO)
    return {
        "group_by": query.group_by,
        "rows": rows,
        "total_cost_usd": usd_str(total),
        "total_saved_usd": usd_str(saved),
        "total_saved_share": _share(saved, total + saved),
        "total_counterfactual_cost_usd": usd_str(total + saved),
        "total_requests": sum(r["requests"] for r in rows),
        "source": table,
    }


def _row(group_by: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {
        name: row[i] if row[i] is not None else "" for i, name in enumerate(group_by)
    }
    offset = len(group_by)
    values = {name: int(row[offset + i] or 0) for i, name in enumerate(_SUMS)}
    micro, pico = int(row[offset + len(_SUMS)] or 0), int(row[offset + len(_SUMS) + 1] or 0)
    latency_sum = float(row[offset + len(_SUMS) + 2] or 0.0)
    saved_micro, saved_pico = int(row[offset + len(_SUMS) + 3] or 0), int(row[-1] or 0)
    cost = from_pico(micro * _SPLIT + pico)
    saved = from_pico(saved_micro * _SPLIT + saved_pico)
    requests = values["requests"]
    tokens = values["input_tokens"] + values["output_tokens"]
    out.update(
        requests=requests,
        errors=values["errors"],
        estimated=values["estimated"],
        cache_hits=values["cache_hits"],
        input_tokens=values["input_tokens"],
        cached_input_tokens=values["cache_read_tokens"],
        cache_write_tokens=values["cache_write_tokens"],
        output_tokens=values["output_tokens"],
        reasoning_tokens=values["reasoning_tokens"],
        cost_usd=usd_str(cost),
        cost_per_request_usd=usd_str(_per(cost, requests)),
        cost_per_1k_tokens_usd=usd_str(_per(cost * 1000, tokens)),
        avg_latency_ms=round(latency_sum / requests, 3) if requests else 0.0,
        saved_usd=usd_str(saved),
        counterfactual_cost_usd=usd_str(cost + saved),
        saved_share=_share(saved, cost + saved),
    )
    return out


def _share(part: Decimal, whole: Decimal) -> float:
    return round(float(part / whole), 4) if whole > 0 else 0.0


def _per(amount: Decimal, count: int) -> Decimal:
    if not count:
        return ZERO
    return (amount / count).quantize(Decimal("1e-12"))


def spend_query(
    group_by: str, period: str | None, start: str | None, end: str | None, filters: dict[str, str]
) -> SpendQuery:
    start_ms = end_ms = None
    if period:
        period_start, period_end = parse_period(period)
        start_ms, end_ms = to_ms(period_start), to_ms(period_end)
    if start:
        start_ms = to_ms(parse_instant(start, "from"))
    if end:
        end_ms = to_ms(parse_instant(end, "to"))
    groups = [name.strip() for name in group_by.split(",") if name.strip()]
    return SpendQuery(groups, start_ms, end_ms, filters)
