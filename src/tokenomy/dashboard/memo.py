"""Rollup sums per time bucket and group, remembered for buckets that are over.

A month of the daily rollup holds one row per day and dimension set (thousands a day on a
busy gateway), and a page asks several questions of it; scanning it for every page view
costs hundreds of milliseconds at millions of events. A bucket that is over no longer
changes, so its sums per group are computed once and kept, and only the open buckets (the
current day, hour, minute) are read on each view.

A bucket can still change after it is over: a long request is recorded when it ends with
the time it started. Every committed event passes :meth:`RollupMemo.observe` (a gateway
listener), which forgets the bucket the event falls in if it was remembered (a set lookup
per bucket size in the usual case). Writers outside this process are not seen, so what is
remembered is also forgotten after ``max_age_s``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from tokenomy.database import Connection
from tokenomy.ledger import UsageEvent
from tokenomy.ledger.event import ROLLUP_DIMENSIONS

BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
GRACE_MS = 5_000  # a bucket counts as over this long after its end (commits in flight)
MAX_VALUES = 2_000_000  # remembered (bucket, group) sums before everything is forgotten
_SPLIT = 1_000_000


@dataclass(slots=True)
class Sums:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_pico: int = 0
    latency_ms_sum: float = 0.0
    saved_pico: int = 0  # routing savings against the baseline model

    def add(self, other: Sums) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.cached_tokens += other.cached_tokens
        self.output_tokens += other.output_tokens
        self.cost_pico += other.cost_pico
        self.latency_ms_sum += other.latency_ms_sum
        self.saved_pico += other.saved_pico

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


Grouped = dict[int, dict[str, Sums]]  # bucket start (epoch s) → group value → sums
_Key = tuple[str, str | None, tuple[tuple[str, str], ...]]


def _query(
    conn: Connection,
    bucket: str,
    start_s: int,
    end_s: int,
    group_by: str | None,
    filters: dict[str, str],
) -> Grouped:
    """One pass over the bucket's rollup table for [start_s, end_s)."""
    where = [f"{bucket} >= ?", f"{bucket} < ?"]
    params: list[Any] = [start_s, end_s]
    for name, value in filters.items():
        where.append(f"{name} = ?")
        params.append(value)
    if bucket not in BUCKET_SECONDS or group_by not in (None, *ROLLUP_DIMENSIONS):
        raise ValueError(f"not a rollup bucket or dimension: {bucket}, {group_by}")
    if any(name not in ROLLUP_DIMENSIONS for name in filters):
        raise ValueError(f"not rollup dimensions: {sorted(filters)}")
    group = group_by or "''"
    sql = (
        f"SELECT {bucket}, {group}, SUM(requests), SUM(errors), SUM(input_tokens), "
        f"SUM(cache_read_tokens), SUM(output_tokens), SUM(cost_pico / {_SPLIT}), "
        f"SUM(cost_pico % {_SPLIT}), SUM(latency_ms_sum), SUM(saved_pico / {_SPLIT}), "
        f"SUM(saved_pico % {_SPLIT}) FROM rollup_{bucket} "
        f"WHERE {' AND '.join(where)} GROUP BY 1, 2"
    )
    out: Grouped = {}
    for row in conn.execute(sql, params):
        t, value, req, err, inp, cached, outp, micro, pico, latency, saved_micro, saved = row
        out.setdefault(int(t), {})[str(value)] = Sums(
            int(req),
            int(err),
            int(inp),
            int(cached),
            int(outp),
            int(micro) * _SPLIT + int(pico),
            float(latency),
            int(saved_micro) * _SPLIT + int(saved),
        )
    return out


class RollupMemo:
    def __init__(self, max_age_s: float = 900.0) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._entries: dict[_Key, dict[int, dict[str, Sums]]] = {}
        self._filled_at: dict[_Key, float] = {}
        self._remembered: dict[str, set[int]] = {name: set() for name in BUCKET_SECONDS}
        self._values = 0
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def observe(self, event: UsageEvent) -> None:
        """A gateway listener: forget the bucket a late event falls in."""
        seconds = event.ts_ms // 1000
        for name, size in BUCKET_SECONDS.items():
            start = seconds // size * size
            if start in self._remembered[name]:
                self._forget(name, start)

    def _forget(self, bucket: str, start: int) -> None:
        with self._lock:
            self._generation += 1
            self._remembered[bucket].discard(start)
            for key, entry in self._entries.items():
                if key[0] == bucket:
                    entry.pop(start, None)

    def grouped(
        self,
        conn: Connection,
        bucket: str,
        start_ms: int,
        end_ms: int,
        group_by: str | None = None,
        filters: dict[str, str] | None = None,
        now_ms: int | None = None,
    ) -> Grouped:
        """Sums per (bucket start, group value) over an aligned [start_ms, end_ms)."""
        size = BUCKET_SECONDS[bucket]
        filters = filters or {}
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        start_s, end_s = start_ms // 1000, end_ms // 1000
        # Buckets that are over: [start_s, closed_s); the rest is read every time.
        closed_s = min(max((now - GRACE_MS) // 1000 // size * size, start_s), end_s)
        key: _Key = (bucket, group_by, tuple(sorted(filters.items())))
        out: Grouped = {}
        if closed_s > start_s:
            out.update(self._closed(conn, key, start_s, closed_s, size))
        if end_s > closed_s:
            out.update(_query(conn, bucket, closed_s, end_s, group_by, filters))
        return out

    def _closed(self, conn: Connection, key: _Key, start_s: int, end_s: int, size: int) -> Grouped:
        bucket, group_by, filters = key
        starts = range(start_s, end_s, size)
        with self._lock:
            if time.monotonic() - self._filled_at.get(key, 0.0) > self.max_age_s:
                self._values -= sum(len(v) for v in self._entries.pop(key, {}).values())
                self._filled_at[key] = time.monotonic()
            entry = self._entries.setdefault(key, {})
            known = {s: entry[s] for s in starts if s in entry}
            generation = self._generation
        missing = [s for s in starts if s not in known]
        if not missing:
            self.hits += 1
            return {s: groups for s, groups in known.items() if groups}
        self.misses += 1
        fresh = _query(conn, bucket, missing[0], missing[-1] + size, group_by, dict(filters))
        for s in missing:
            known[s] = fresh.get(s, {})
        with self._lock:
            if generation == self._generation:  # no late event landed while we read
                if self._values > MAX_VALUES:
                    self._entries = {key: entry}
                    self._values = 0
                for s in missing:
                    entry[s] = known[s]
                    self._values += len(known[s])
                    self._remembered[bucket].add(s)
        return {s: groups for s, groups in known.items() if groups}
