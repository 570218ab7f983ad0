"""SQLite ledger store: batched inserts with rollups kept in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tokenomy.database import (
    ROLLUP_DIMENSION_COLUMNS,
    ROLLUP_SUM_COLUMNS,
    Connection,
    transaction,
)
from tokenomy.ledger.event import UsageEvent

EVENT_COLUMNS = (
    "id, ts_ms, tenant, key_id, user, team, department, project, environment, workflow, tags, "
    "endpoint, requested_model, model, tier, upstream, route_reason, input_tokens, "
    "cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_pico, "
    "latency_ms, ttft_ms, status, error, stream, cache_hit, estimated, prompt, completion, "
    "strategy, baseline_model, saved_pico"
)
_INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events ({EVENT_COLUMNS}) "
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS.split(',')))})"
)
_SUM_COLUMNS = ROLLUP_SUM_COLUMNS.split(", ")
_DIMENSIONS = ROLLUP_DIMENSION_COLUMNS
# Rollup tables: name, time column, bucket length in seconds.
ROLLUPS = (
    ("rollup_minute", "minute", 60),
    ("rollup_hour", "hour", 3600),
    ("rollup_day", "day", 86400),
)


def _upsert_sql(table: str, time_column: str) -> str:
    columns = f"{time_column}, {_DIMENSIONS}, {', '.join(_SUM_COLUMNS)}"
    placeholders = ", ".join("?" * (12 + len(_SUM_COLUMNS)))  # time, 11 dimensions, sums
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _SUM_COLUMNS)
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({time_column}, {_DIMENSIONS}) DO UPDATE SET {updates}"
    )


_UPSERTS = [(_upsert_sql(table, column), seconds) for table, column, seconds in ROLLUPS]


def _event_row(event: UsageEvent) -> tuple[Any, ...]:
    usage = event.usage
    return (
        event.id,
        event.ts_ms,
        event.tenant,
        event.key_id,
        event.user,
        event.team,
        event.department,
        event.project,
        event.environment,
        event.workflow,
        orjson.dumps(event.tags).decode(),
        event.endpoint,
        event.requested_model,
        event.model,
        event.tier,
        event.upstream,
        event.route_reason,
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
        event.cost_pico,
        event.latency_ms,
        event.ttft_ms,
        event.status,
        event.error,
        int(event.stream),
        int(event.cache_hit),
        int(event.estimated),
        event.prompt,
        event.completion,
        event.strategy,
        event.baseline_model,
        event.saved_pico,
    )


def _rollup_rows(events: Sequence[UsageEvent], bucket_seconds: int) -> list[tuple[Any, ...]]:
    """Pre-aggregate a batch in Python so each (minute, dimensions) row is upserted once."""
    sums: dict[tuple[object, ...], list[float]] = {}
    for event in events:
        usage = event.usage
        increments = (
            1,
            int(event.status >= 400),
            int(event.estimated),
            int(event.cache_hit),
            usage.input_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            event.cost_pico,
            event.latency_ms,
            event.saved_pico,
        )
        key = event.rollup_key(bucket_seconds)
        row = sums.get(key)
        if row is None:
            sums[key] = list(increments)
        else:
            for index, value in enumerate(increments):
                row[index] += value
    # In key order: concurrent writers (replicas on PostgreSQL) lock rollup rows in the
    # same order, so two group commits never deadlock on each other's rows.
    return [(*key, *values) for key, values in sorted(sums.items())]


class SqliteLedgerStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def write_batch(self, events: Sequence[UsageEvent]) -> None:
        """One transaction: events (idempotent by id) and their rollups, all or nothing."""
        with transaction(self._conn) as conn:
            fresh = [e for e in events if self._insert(e)]
            for upsert, bucket_seconds in _UPSERTS:
                conn.executemany(upsert, _rollup_rows(fresh, bucket_seconds))

    def _insert(self, event: UsageEvent) -> bool:
        # An event id written twice (a retried batch) must not be counted twice.
        return self._conn.execute(_INSERT_EVENT, _event_row(event)).rowcount == 1
