"""SQLite ledger store: batched inserts with rollups kept in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from tokenomy.ledger.event import UsageEvent

_EVENT_COLUMNS = (
    "id, ts_ms, tenant, key_id, user, team, department, project, environment, workflow, tags, "
    "endpoint, requested_model, model, tier, upstream, route_reason, input_tokens, "
    "cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_pico, "
    "latency_ms, ttft_ms, status, error, stream, cache_hit, estimated, prompt, completion"
)
_INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 32)})"
)
_UPSERT_ROLLUP = """
INSERT INTO rollup_minute (minute, tenant, key_id, user, team, department, project,
    environment, workflow, model, tier, upstream, requests, errors, estimated, cache_hits,
    input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
    cost_pico, latency_ms_sum)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (minute, tenant, key_id, user, team, department, project, environment,
    workflow, model, tier, upstream) DO UPDATE SET
    requests = requests + excluded.requests,
    errors = errors + excluded.errors,
    estimated = estimated + excluded.estimated,
    cache_hits = cache_hits + excluded.cache_hits,
    input_tokens = input_tokens + excluded.input_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
    cost_pico = cost_pico + excluded.cost_pico,
    latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum
"""
_ROLLUP_SUMS = 11  # requests .. latency_ms_sum


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
    )


def _rollup_rows(events: Sequence[UsageEvent]) -> list[tuple[Any, ...]]:
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
        )
        row = sums.get(event.rollup_key())
        if row is None:
            sums[event.rollup_key()] = list(increments)
        else:
            for index, value in enumerate(increments):
                row[index] += value
    return [(*key, *values) for key, values in sums.items()]


class SqliteLedgerStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def write_batch(self, events: Sequence[UsageEvent]) -> None:
        """One transaction: events (idempotent by id) and their rollups, all or nothing."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            fresh = [e for e in events if self._insert(e)]
            conn.executemany(_UPSERT_ROLLUP, _rollup_rows(fresh))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _insert(self, event: UsageEvent) -> bool:
        # An event id written twice (a retried batch) must not be counted twice.
        return self._conn.execute(_INSERT_EVENT, _event_row(event)).rowcount == 1
