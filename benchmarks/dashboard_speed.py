"""How fast the dashboard's page data stays on a ledger of millions of events.

    python benchmarks/dashboard_speed.py [--events 5000000] [--db PATH] [--repeat 20]

1. Builds a synthetic ledger (default 5 million events over the last 40 days up to now;
   120 users in teams of 8 in departments of 3 teams, two environments, 6 models,
   6 workflows; daily volume growing through the range). Events and their per-minute,
   per-hour and per-day rollups are computed in Python and written with ``executemany``
   in large transactions: the same rows the ledger writer writes, about ten times faster.
   ``--db PATH`` keeps the file and reuses it when it already holds the events.
2. Starts ``tokenomy serve`` on it with eight budgets (a global one, departments, teams).
3. Requests every page-data endpoint over HTTP ``--repeat`` times after a first, cold
   request, and prints the cold time and p50/p95 of the rest per page. Goal: p95 < 200 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from gateway_overhead import machine
from tokenomy import database

DAY_MS = 86_400_000
MODELS = [
    ("premium-model", "premium", 5_000_000, 15_000_000),
    ("gpt-4o-mini", "mid", 150_000, 600_000),
    ("llama-70b", "mid", 700_000, 900_000),
    ("claude-sonnet", "premium", 3_000_000, 15_000_000),
    ("reasoner", "mid", 1_100_000, 4_400_000),
    ("embed-small", "commodity", 20_000, 0),
]
WORKFLOWS = ["search", "support-reply", "summarize", "classify", "codegen", "agent"]
CHUNK = 200_000
_ROLLUPS = (("rollup_minute", "minute", 60), ("rollup_hour", "hour", 3600))
_ROLLUPS_DAY = ("rollup_day", "day", 86400)


def _principals(users: int) -> list[tuple[str, ...]]:
    """(key_id, user, team, department, environment) per user."""
    out = []
    for index in range(users):
        team = index // 8
        out.append(
            (
                f"key_{index:04d}",
                f"user-{index:04d}",
                f"team-{team:02d}",
                f"dept-{team // 3}",
                "prod" if index % 5 else "staging",
            )
        )
    return out


def _timestamps(count: int, days: int, now_ms: int, rng: random.Random) -> list[int]:
    """Sorted event times over [now - days, now), volume growing linearly (x3 over the range)."""
    span = days * DAY_MS
    start = now_ms - span
    # Inverse CDF of a density rising linearly from 1 to 3 over [0, 1).
    stamps = [start + int(span * ((1 + 8 * rng.random()) ** 0.5 - 1) / 2) for _ in range(count)]
    stamps.sort()
    return stamps


def _events(
    count: int, days: int, users: int, now_ms: int, seed: int
) -> Iterator[list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    people = _principals(users)
    empty_tags = orjson.dumps({}).decode()
    stamps = _timestamps(count, days, now_ms, rng)
    for first in range(0, count, CHUNK):
        rows = []
        for index in range(first, min(first + CHUNK, count)):
            key_id, user, team, department, environment = people[rng.randrange(users)]
            model, tier, input_price, output_price = MODELS[rng.randrange(len(MODELS))]
            input_tokens = rng.randint(20, 4000)
            output_tokens = rng.randint(1, 700) if output_price else 0
            cached = input_tokens // 2 if rng.random() < 0.2 else 0
            cost = input_tokens * input_price + output_tokens * output_price
            status = 200 if rng.random() > 0.01 else 502
            rows.append(
                (
                    f"req_{index:010d}",
                    stamps[index],
                    "default",
                    key_id,
                    user,
                    team,
                    department,
                    "bench",
                    environment,
                    WORKFLOWS[rng.randrange(len(WORKFLOWS))],
                    empty_tags,
                    "chat.completions",
                    model,
                    model,
                    tier,
                    "mock",
                    "requested",
                    input_tokens,
                    cached,
                    0,
                    output_tokens,
                    0,
                    cost,
                    20 + rng.random() * 400,
                    None,
                    status,
                    None,
                    0,
                    0,
                    0,
                    None,
                    None,
                )
            )
        yield rows


_EVENT_COLUMNS = (
    "id, ts_ms, tenant, key_id, user, team, department, project, environment, workflow, tags, "
    "endpoint, requested_model, model, tier, upstream, route_reason, input_tokens, "
    "cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_pico, "
    "latency_ms, ttft_ms, status, error, stream, cache_hit, estimated, prompt, completion"
)
# Event tuple positions of the rollup dimensions (tenant, key_id, user, team, department,
# project, environment, workflow, model, tier, upstream).
_DIMENSIONS = (2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15)


def _add(sums: dict[tuple[Any, ...], list[float]], key: tuple[Any, ...], row: tuple[Any, ...]):
    increments = (1, int(row[25] >= 400), 0, 0, row[17], row[18], 0, row[20], 0, row[22], row[23])
    found = sums.get(key)
    if found is None:
        sums[key] = list(increments)
    else:
        for index, value in enumerate(increments):
            found[index] += value


def _flush(conn: sqlite3.Connection, table: str, sums: dict[tuple[Any, ...], list[float]]):
    conn.executemany(
        f"INSERT INTO {table} VALUES ({', '.join('?' * 23)})",
        [(*key, *values) for key, values in sums.items()],
    )


def build(
    url: str, events: int, days: int = 40, users: int = 120, seed: int = 1
) -> dict[str, float]:
    """Write ``events`` synthetic events and their rollups into the database at ``url``."""
    now_ms = int(time.time() * 1000)
    conn = database.connect(url)
    conn.execute("PRAGMA synchronous=OFF")
    started = time.perf_counter()
    insert = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 32)})"
    day_sums: dict[tuple[Any, ...], list[float]] = {}
    # Per-minute and per-hour rows are flushed when their bucket is over (events are sorted).
    open_sums: dict[str, dict[tuple[Any, ...], list[float]]] = {t: {} for t, _, _ in _ROLLUPS}
    open_bucket = dict.fromkeys(open_sums, -1)
    for rows in _events(events, days, users, now_ms, seed):
        conn.execute("BEGIN")
        conn.executemany(insert, rows)
        for table, _, seconds in _ROLLUPS:
            sums = open_sums[table]
            for row in rows:
                bucket = row[1] // (seconds * 1000) * seconds
                if bucket != open_bucket[table]:
                    _flush(conn, table, sums)
                    sums.clear()
                    open_bucket[table] = bucket
                _add(sums, (bucket, *(row[i] for i in _DIMENSIONS)), row)
        for row in rows:
            bucket = row[1] // DAY_MS * 86400
            _add(day_sums, (bucket, *(row[i] for i in _DIMENSIONS)), row)
        conn.execute("COMMIT")
    conn.execute("BEGIN")
    for table, sums in open_sums.items():
        _flush(conn, table, sums)
    _flush(conn, _ROLLUPS_DAY[0], day_sums)
    for key_id, user, team, department, environment in _principals(users):
        conn.execute(
            "INSERT OR IGNORE INTO keys (id, key_hash, prefix, user, team, department, "
            "project, environment, created_at) VALUES (?, ?, 'tk-bench', ?, ?, ?, 'bench', ?, ?)",
            (key_id, f"hash-{key_id}", user, team, department, environment, now_ms),
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("ANALYZE")
    conn.close()
    return {"seconds": time.perf_counter() - started, "now_ms": now_ms}


ADMIN_KEY = "bench-admin"
PAGES = [
    ("overview", "/ui/api/overview"),
    ("budgets", "/ui/api/budgets"),
    ("explorer 30d by team, per day", "/ui/api/explorer?range=30d&group_by=team"),
    ("explorer 24h by model, per hour", "/ui/api/explorer?range=24h&group_by=model"),
    ("explorer 7d by user, per hour", "/ui/api/explorer?range=7d&bucket=hour&group_by=user"),
    (
        "explorer 90d by workflow, team=team-03",
        "/ui/api/explorer?range=90d&group_by=workflow&team=team-03",
    ),
    ("explorer 12m by department, per month", "/ui/api/explorer?range=12m&group_by=department"),
    ("explorer 1h by key, per minute", "/ui/api/explorer?range=1h&group_by=key_id"),
    ("models", "/ui/api/models"),
    ("requests (latest 100)", "/ui/api/requests"),
    ("requests, team=team-07", "/ui/api/requests?team=team-07"),
    ("filter values (user)", "/ui/api/values?dimension=user"),
]


def _config(db: Path) -> dict[str, Any]:
    price = {"input_per_mtok": "1.00", "output_per_mtok": "2.00"}
    models = [
        {"name": name, "upstream": "mock", "tier": tier, "price": price}
        for name, tier, _, _ in MODELS
    ]
    budgets: dict[str, Any] = {"company": {"scope": {}, "limit_usd": "100000000"}}
    for dept in range(3):
        budgets[f"dept-{dept}"] = {"scope": {"department": f"dept-{dept}"}, "limit_usd": "9e6"}
    for team in range(0, 12, 3):
        budgets[f"team-{team:02d}-day"] = {
            "scope": {"team": f"team-{team:02d}"},
            "period": "day",
            "limit_usd": "500000",
            "thresholds": [{"at": 0.8, "action": "alert"}, {"at": 1.0, "action": "block"}],
        }
    return {
        "database": f"sqlite:///{db}",
        "admin_key": ADMIN_KEY,
        "upstreams": {"mock": {"base_url": "http://127.0.0.1:9/v1", "api_key": "none"}},
        "models": models,
        "budgets": budgets,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(workdir: Path, db: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = workdir / "tokenomy.yaml"
    config.write_text(yaml.safe_dump(_config(db)))
    port = _free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tokenomy"),
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "gateway.log").open("ab"),
        env={**os.environ, "TOKENOMY_CONFIG": "", "TOKENOMY_ADMIN_KEY": ""},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the gateway did not start; see gateway.log")


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _events_in(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--db", type=Path, help="keep the ledger here (reused if complete)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    host = machine()
    print(f"machine: {host['nproc']} CPUs, {host['cpu']}, Python {host['python']}")
    with tempfile.TemporaryDirectory(prefix="tokenomy-dashboard-bench-") as tmp:
        workdir = Path(tmp)
        db = args.db or workdir / "ledger.db"
        if _events_in(db) != args.events:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            built = build(f"sqlite:///{db}", args.events)
            print(f"built {args.events:,} events in {built['seconds']:.0f} s")
        conn = sqlite3.connect(db)
        counts = {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("events", "rollup_minute", "rollup_hour", "rollup_day")
        }
        conn.close()
        print("rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
        process, url = _serve(workdir, db)
        try:
            headers = {"authorization": f"Bearer {ADMIN_KEY}"}
            worst = 0.0
            print(f"{'page data':<42} {'cold':>9} {'p50':>9} {'p95':>9}   (ms, {args.repeat} warm)")
            with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                for label, path in PAGES:
                    samples = []
                    for _ in range(args.repeat + 1):
                        started = time.perf_counter()
                        response = client.get(path)
                        samples.append((time.perf_counter() - started) * 1000)
                        response.raise_for_status()
                    cold, warm = samples[0], samples[1:]
                    p95 = _percentile(warm, 0.95)
                    worst = max(worst, p95)
                    print(f"{label:<42} {cold:>9.1f} {statistics.median(warm):>9.1f} {p95:>9.1f}")
            verdict = "met" if worst < 200 else "NOT met"
            print(f"goal p95 < 200 ms on every page: {verdict} (worst p95 {worst:.1f} ms)")
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
