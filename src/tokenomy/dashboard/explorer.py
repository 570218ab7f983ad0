"""The explorer page: spend, tokens and requests over time, grouped and filtered by any
rollup dimension, with unit economics per group and a CSV download.

Page data comes from the remembered rollup sums (see ``memo``): one pass per question over
the open buckets, none over the buckets that are over. The chart draws the biggest groups
by name and sums the rest as "other"; the table lists every group.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tokenomy.analytics.spend import SpendQuery, query_spend
from tokenomy.dashboard import figures
from tokenomy.dashboard.memo import RollupMemo
from tokenomy.dashboard.ranges import Window
from tokenomy.database import Connection
from tokenomy.errors import InvalidRequest
from tokenomy.ledger.event import ROLLUP_DIMENSIONS

SERIES = 8
MAX_ROWS = 500  # groups listed in the table (all of them are in the CSV)
OTHER = "other"
_LABELS = {
    "minute": "%Y-%m-%dT%H:%M",
    "hour": "%Y-%m-%dT%H:00",
    "day": "%Y-%m-%d",
    "month": "%Y-%m",
}


def check_dimensions(group_by: str | None, filters: dict[str, str]) -> None:
    for name in [*([group_by] if group_by else []), *filters]:
        if name not in ROLLUP_DIMENSIONS:
            raise InvalidRequest(
                f"cannot group or filter the explorer by {name!r}; choose from "
                f"{', '.join(ROLLUP_DIMENSIONS)}",
                param=name,
            )


def explore(
    conn: Connection,
    memo: RollupMemo,
    window: Window,
    group_by: str | None,
    filters: dict[str, str],
    now_ms: int | None = None,
) -> dict[str, Any]:
    check_dimensions(group_by, filters)
    table = "day" if window.bucket == "month" else window.bucket
    grouped = memo.grouped(
        conn, table, window.start_ms, window.end_ms, group_by, filters, now_ms=now_ms
    )
    whole = figures.total(grouped)
    ranked = figures.ranked(figures.by_group(grouped))
    rows = [
        {**({group_by: name} if group_by else {}), **figures.row(sums, whole.cost_pico)}
        for name, sums in ranked[:MAX_ROWS]
    ]
    named = [name for name, _ in ranked[:SERIES]] if group_by else [""]
    labels = window.labels()
    index = {label: i for i, label in enumerate(labels)}
    series = {
        name: {metric: [0.0] * len(labels) for metric in ("cost", "tokens", "requests")}
        for name in [*named, OTHER]
    }
    fmt = _LABELS[window.bucket]
    for start_s, groups in grouped.items():
        position = index.get(datetime.fromtimestamp(start_s, UTC).strftime(fmt))
        if position is None:
            continue
        for name, sums in groups.items():
            target = series[name if name in named else OTHER]
            target["cost"][position] += sums.cost_pico / 1e12
            target["tokens"][position] += sums.tokens
            target["requests"][position] += sums.requests
    shown = [*named, *([OTHER] if len(ranked) > len(named) else [])]
    return {
        "window": window.public(),
        "group_by": group_by,
        "filters": filters,
        "labels": labels,
        "series": [
            {"name": (name or "(none)") if group_by else "all", **series[name]} for name in shown
        ],
        "rows": rows,
        "groups": len(ranked),
        "totals": figures.row(whole, whole.cost_pico),
        "dimensions": list(ROLLUP_DIMENSIONS),
    }


CSV_COLUMNS = (
    "requests",
    "errors",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_per_request_usd",
    "cost_per_1k_tokens_usd",
    "avg_latency_ms",
)


def explore_csv(
    conn: Connection, window: Window, group_by: str | None, filters: dict[str, str]
) -> str:
    """Every bucket and group of the window as CSV rows, in time order (the reports'
    own figures, so a download matches GET /admin/spend)."""
    check_dimensions(group_by, filters)
    groups = [window.bucket, *([group_by] if group_by else [])]
    rows = query_spend(conn, SpendQuery(groups, window.start_ms, window.end_ms, filters))["rows"]
    rows.sort(key=lambda r: (r[window.bucket], -Decimal(r["cost_usd"])))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*groups, *CSV_COLUMNS])
    for row in rows:
        writer.writerow([*(row[g] for g in groups), *(row[c] for c in CSV_COLUMNS)])
    return buffer.getvalue()


def distinct_values(conn: Connection, dimension: str, limit: int = 500) -> list[str]:
    """Values a dimension takes in the ledger (for filter suggestions)."""
    if dimension not in ROLLUP_DIMENSIONS:  # also "", which check_dimensions lets pass
        raise InvalidRequest(
            f"no dimension {dimension!r}; choose from {', '.join(ROLLUP_DIMENSIONS)}",
            param="dimension",
        )
    sql = f"SELECT DISTINCT {dimension} FROM rollup_day ORDER BY 1 LIMIT ?"
    return [str(value) for (value,) in conn.execute(sql, (limit,))]
