"""How fast reports stay at millions of events: rollups versus raw events.

    python benchmarks/report_speed.py [--events 1000000]

Writes synthetic events (30 days, 40 users in 8 teams of 4 departments, 6 models,
5 workflows) through the ledger's own batch writer into a fresh SQLite file, then times
the same spend question answered from the per-minute rollups and from the raw events,
and checks that both give the same exact total.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from tokenomy import database
from tokenomy.analytics.spend import SpendQuery, query_spend
from tokenomy.ledger.event import UsageEvent
from tokenomy.ledger.sqlite import SqliteLedgerStore
from tokenomy.usage import Usage

DAY_MS = 86_400_000
START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
MODELS = [
    ("premium-model", "premium"),
    ("gpt-4o-mini", "mid"),
    ("llama-3.1-70b", "mid"),
    ("commodity-model", "commodity"),
    ("claude-sonnet", "premium"),
    ("embed-small", "commodity"),
]


def synthetic_events(first: int, count: int, rng: random.Random) -> list[UsageEvent]:
    events = []
    for index in range(first, first + count):
        user = rng.randrange(40)
        team = user % 8
        model, tier = MODELS[rng.randrange(len(MODELS))]
        usage = Usage(input_tokens=rng.randint(10, 6000), output_tokens=rng.randint(1, 800))
        events.append(
            UsageEvent(
                id=f"req_{index:012d}",
                ts_ms=START_MS + rng.randrange(30 * DAY_MS),
                tenant="default",
                key_id=f"key_{user}",
                user=f"user-{user}",
                team=f"team-{team}",
                department=f"dept-{team % 4}",
                project="bench",
                environment="prod",
                workflow=f"wf-{rng.randrange(5)}",
                tags={},
                endpoint="chat.completions",
                requested_model=model,
                model=model,
                tier=tier,
                upstream="mock",
                route_reason="requested",
                usage=usage,
                cost_pico=rng.randint(1, 10**9),
                latency_ms=rng.random() * 100,
                status=200,
            )
        )
    return events


def timed(conn: sqlite3.Connection, query: SpendQuery, repeat: int = 3) -> tuple[float, dict]:
    best = float("inf")
    result: dict = {}
    for _ in range(repeat):
        started = time.perf_counter()
        result = query_spend(conn, query)
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        store = SqliteLedgerStore(database.connect(url))
        written = 0
        started = time.perf_counter()
        while written < args.events:
            chunk = synthetic_events(written, min(50_000, args.events - written), rng)
            for offset in range(0, len(chunk), args.batch):
                store.write_batch(chunk[offset : offset + args.batch])
            written += len(chunk)
        write_s = time.perf_counter() - started
        conn = database.connect(url)
        stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        assert stored == written, f"{stored} events stored of {written} written"
        minute_rows = conn.execute("SELECT COUNT(*) FROM rollup_minute").fetchone()[0]
        hour_rows = conn.execute("SELECT COUNT(*) FROM rollup_hour").fetchone()[0]
        print(
            f"events: {written:,}  rollup rows: {minute_rows:,} per minute, "
            f"{hour_rows:,} per hour  "
            f"write: {written / write_s:,.0f} events/s (batches of {args.batch}, incl. rollups)"
        )
        month = (START_MS, START_MS + 30 * DAY_MS)
        print(f"{'question':<44} {'rollups':>10} {'events':>10} {'speed-up':>9}")
        for label, group_by in [
            ("month by team,model", ["team", "model"]),
            ("month by department", ["department"]),
            ("month by day,tier", ["day", "tier"]),
        ]:
            fast_s, fast = timed(conn, SpendQuery(group_by, *month))
            # The same question forced onto the raw events (an events-only field in the filter).
            slow_s, slow = timed(conn, SpendQuery(group_by, *month, {"status": "200"}), repeat=1)
            assert fast["source"] == "rollup_day" and slow["source"] == "events"
            assert fast["total_cost_usd"] == slow["total_cost_usd"], "rollups disagree with events"
            print(
                f"{label:<44} {fast_s * 1000:>8.1f}ms {slow_s * 1000:>8.1f}ms "
                f"{slow_s / fast_s:>8.1f}x"
            )


if __name__ == "__main__":
    main()
