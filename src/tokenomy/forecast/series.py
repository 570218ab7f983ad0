"""Regular time series (one sum per fixed bucket) from a request trace or from the ledger.

Forecasting models want one value per bucket with no gaps: a bucket in which nothing
happened is a zero, not a missing row. Both readers fill those zeros.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tokenomy.database import Connection, json_field, tag_path
from tokenomy.ledger.event import ROLLUP_DIMENSIONS
from tokenomy.ledger.sqlite import ROLLUPS

Measure = Literal["cost_pico", "tokens"]
_MEASURES = {"cost_pico": "cost_pico", "tokens": "input_tokens + output_tokens"}
TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass(frozen=True, slots=True)
class Series:
    start_s: int  # epoch seconds at which the first bucket starts
    bucket_s: int
    values: list[float]

    @property
    def end_s(self) -> int:
        return self.start_s + len(self.values) * self.bucket_s

    def trimmed(self) -> Series:
        """Without the leading zeros: history starts at the first activity."""
        first = next((i for i, v in enumerate(self.values) if v), len(self.values))
        return Series(self.start_s + first * self.bucket_s, self.bucket_s, self.values[first:])


def _parse_time(text: str) -> int:
    """Epoch seconds of ``2023-11-16 18:17:03.9799600`` (Azure's 7 fraction digits; naive
    times are UTC). Only whole seconds matter for minute buckets."""
    text = text.strip().replace("T", " ")
    moment = datetime.fromisoformat(text[:19])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def read_trace(path: str | Path, bucket_s: int = 60) -> Series:
    """Tokens (context + generated) per bucket from an Azure LLM inference trace CSV."""
    sums: dict[int, float] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        try:
            at, context, generated = (header.index(n.lower()) for n in TRACE_COLUMNS)
        except ValueError:
            raise ValueError(
                f"{path}: expected columns {', '.join(TRACE_COLUMNS)}, got {', '.join(header)}"
            ) from None
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                bucket = _parse_time(row[at]) // bucket_s
                sums[bucket] = sums.get(bucket, 0.0) + float(row[context]) + float(row[generated])
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from None
    if not sums:
        raise ValueError(f"{path}: no requests")
    first, last = min(sums), max(sums)
    values = [sums.get(b, 0.0) for b in range(first, last + 1)]
    return Series(first * bucket_s, bucket_s, values)


def ledger_series(
    conn: Connection,
    filters: dict[str, str],
    start_s: int,
    end_s: int,
    bucket_s: int,
    measure: Measure = "cost_pico",
) -> Series:
    """Sums per bucket over [start_s, end_s) (aligned down to the bucket) for the rows
    matching ``filters`` (ledger columns or ``tag:NAME``), from the coarsest rollup whose
    buckets divide ``bucket_s``; tag filters need the raw events."""
    start_s -= start_s % bucket_s
    end_s -= end_s % bucket_s
    where: list[str] = []
    params: list[Any] = []
    tagged = any(name.startswith("tag:") for name in filters)
    if tagged:
        table, time_expr = "events", "ts_ms / 1000"
    else:
        table, column = next((t, c) for t, c, s in reversed(ROLLUPS) if bucket_s % s == 0)
        time_expr = column
    for name, value in filters.items():
        if name.startswith("tag:"):
            where.append(f"{json_field(conn, 'tags', '?')} = ?")
            params += [tag_path(conn, name[4:]), value]
        elif name in ROLLUP_DIMENSIONS:
            where.append(f"{name} = ?")
            params.append(value)
        else:
            raise ValueError(f"cannot filter the ledger by {name!r}")
    lower, upper = (start_s * 1000, end_s * 1000) if tagged else (start_s, end_s)
    time_column = "ts_ms" if tagged else time_expr
    where += [f"{time_column} >= ?", f"{time_column} < ?"]
    params += [lower, upper]
    sql = (
        f"SELECT ({time_expr} - ?) / ?, SUM({_MEASURES[measure]}) FROM {table} "
        f"WHERE {' AND '.join(where)} GROUP BY 1"
    )
    count = max((end_s - start_s) // bucket_s, 0)
    values = [0.0] * count
    for index, total in conn.execute(sql, [start_s, bucket_s, *params]):
        if 0 <= index < count:
            values[int(index)] = float(total or 0)
    return Series(start_s, bucket_s, values)
