"""Soak: 200,000 requests through one gateway process, its memory sampled throughout,
with the SQLite ledger (the default) and then PostgreSQL, side by side.

    python benchmarks/soak.py [--requests 200000] [--warmup 20000] [--concurrency 32]
        [--engines sqlite,postgresql] [--postgres postgresql://postgres@127.0.0.1:5432]
        [--sample-s 5] [--segment-s 15] [--stream-every 4] [--json PATH]

Layout as in ``gateway_overhead.py`` (Linux, ``wrk`` and ``taskset``): the mock upstream and
``wrk`` share CPU 0, one gateway process (uvicorn, one worker) is pinned to CPU 1. Each
engine gets a fresh gateway: a fresh SQLite file, or a fresh PostgreSQL database created
through the server's ``test`` database (dropped at the end). The key's team has a budget
in scope (so every request reserves and settles a hold), and every ``--stream-every``-th
request streams. ``wrk -t1 -c{concurrency}`` runs in segments of ``--segment-s`` seconds
(wrk runs for a duration, not a count; the last segment is sized from the rate so far)
until ``--warmup`` requests, then until ``--requests`` in all (the total includes the
warm-up; it may overshoot by about a second of traffic, and every segment's end drops its
in-flight connections, which the ledger records too). The gateway's resident memory (VmRSS
of its processes, from /proc) is sampled every ``--sample-s`` seconds through both phases.

Reported per engine: requests/s of the measured phase, p50/p99 latency, CPU µs per
request, the first and last segments' requests/s (drift), RSS at start, after warm-up and
at the end, the growth after warm-up (in MB and per 100,000 requests, from a least-squares
fit over the measured phase's samples), the ledger's event count (at least every answered
request, or the script fails), the budget's reserved and spent amounts and the ledger's cost.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from gateway_overhead import (
    ADMIN_KEY,
    MODEL,
    PATH,
    Service,
    WrkResult,
    free_port,
    parse_wrk,
    request_body,
)

TEAM = "soak"


@dataclass
class Sample:
    t: float  # seconds since the gateway answered its first request
    phase: str  # start, warmup, soak, end
    rss_mb: float
    anon_mb: float = 0.0
    mapped_mb: float = 0.0  # RssFile + RssShmem


@dataclass
class EngineResult:
    engine: str
    warmup: WrkResult
    soak: WrkResult
    cpu_us_per_request: float
    rss_start_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    rss_max_mb: float
    growth_mb: float  # end - after warm-up
    anon_growth_mb: float  # of which heap (RssAnon)
    mapped_growth_mb: float  # of which mapped files (RssFile + RssShmem)
    slope_mb_per_100k: float  # least-squares over the soak phase's samples
    ledger_events: int
    budget_reserved_usd: str
    budget_spent_usd: str
    ledger_cost_usd: str
    segment_rps: list[tuple[float, float]] = field(default_factory=list)  # (req/s, CPU µs)
    wal_max_mb: float | None = None
    samples: list[Sample] = field(default_factory=list)


def memory_mb(pids: list[int]) -> dict[str, float]:
    """VmRSS and its parts (RssAnon: heap and stacks; RssFile + RssShmem: mapped files,
    such as SQLite's WAL index) summed over processes, in MB."""
    totals = dict.fromkeys(("VmRSS", "RssAnon", "RssFile", "RssShmem"), 0)
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in totals:
                    totals[name] += int(value.split()[0])
        except OSError:
            continue
    return {name: kb / 1024 for name, kb in totals.items()}


def rss_mb(pids: list[int]) -> float:
    return memory_mb(pids)["VmRSS"]


def lua_script(path: Path, key: str, stream_every: int) -> Path:
    plain = request_body(False).decode()
    stream = request_body(True).decode()
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        f"local plain = [[{plain}]]\n"
        f"local stream = [[{stream}]]\n"
        "local sent = 0\n"
        "request = function()\n"
        "  sent = sent + 1\n"
        f"  if {stream_every} > 0 and sent % {stream_every} == 0 then\n"
        "    return wrk.format(nil, nil, nil, stream)\n"
        "  end\n"
        "  return wrk.format(nil, nil, nil, plain)\n"
        "end\n"
    )
    return path


def run_wrk(url: str, script: Path, connections: int, cpu: str, seconds: int) -> WrkResult:
    command = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    command += ["--latency", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def drive(
    url: str, script: Path, args: argparse.Namespace, requests: int, service: Service
) -> tuple[WrkResult, list[tuple[float, float]]]:
    """wrk in segments of ``--segment-s`` seconds (the last one sized from the rate so
    far) until ``requests`` were answered: (the merged result, each segment's req/s).
    wrk runs for a duration, not a number of requests; the segments also show whether
    throughput drifts. Latency percentiles are the request-weighted mean of the
    segments'."""
    segments: list[WrkResult] = []
    rates: list[tuple[float, float]] = []
    done = 0
    while done < requests:
        seconds = min(args.segment_s, 2)  # the first run measures the rate
        if segments:
            rate = done / sum(r.seconds for r in segments)
            seconds = max(1, min(args.segment_s, math.ceil((requests - done) / rate)))
        cpu = service.cpu_seconds()
        result = run_wrk(url, script, args.concurrency, args.wrk_cpu, seconds)
        cpu_us = (service.cpu_seconds() - cpu) / max(result.requests, 1) * 1e6
        segments.append(result)
        rates.append((result.rps, cpu_us))
        done += result.requests
    total_s = sum(r.seconds for r in segments)

    def weighted(name: str) -> float:
        return float(sum(getattr(r, name) * r.requests for r in segments)) / max(done, 1)

    merged = WrkResult(
        requests=done,
        seconds=total_s,
        rps=done / total_s,
        p50_ms=weighted("p50_ms"),
        p75_ms=weighted("p75_ms"),
        p90_ms=weighted("p90_ms"),
        p99_ms=weighted("p99_ms"),
        non_2xx=sum(r.non_2xx for r in segments),
        socket_errors=sum(r.socket_errors for r in segments),
    )
    return merged, rates


def fresh_postgres(server: str) -> str:
    import psycopg

    name = f"tok_soak_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(f"{server}/test", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def drop_postgres(url: str) -> None:
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/test", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def ledger_totals(database: str) -> tuple[int, Decimal]:
    sql = "SELECT COUNT(*), COALESCE(SUM(cost_pico), 0) FROM events WHERE team = 'soak'"
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as pg:
            row = pg.execute(sql).fetchone()
    else:
        with sqlite3.connect(f"file:{database[len('sqlite:///') :]}?mode=ro", uri=True) as conn:
            row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0]), Decimal(int(row[1])) / 10**12


def slope_per_100k(samples: list[Sample], rps: float) -> float:
    """MB per 100,000 requests: the least-squares slope of RSS over time, times the time
    100,000 requests take."""
    points = [(s.t, s.rss_mb) for s in samples if s.phase == "soak"]
    if len(points) < 3 or rps <= 0:
        return 0.0
    fit = statistics.linear_regression([t for t, _ in points], [m for _, m in points])
    return fit.slope * 100_000 / rps


def soak(engine: str, args: argparse.Namespace, mock_url: str, workdir: Path) -> EngineResult:
    directory = workdir / engine
    directory.mkdir()
    database = (
        f"sqlite:///{directory / 'ledger.db'}"
        if engine == "sqlite"
        else fresh_postgres(args.postgres)
    )
    try:
        return _soak(engine, database, args, mock_url, directory)
    finally:
        if database.startswith("postgresql://"):
            drop_postgres(database)


def _soak(
    engine: str, database: str, args: argparse.Namespace, mock_url: str, directory: Path
) -> EngineResult:
    config = directory / "tokenomy.yaml"
    config.write_text(
        f"database: {database}\n"
        f"admin_key: {ADMIN_KEY}\n"
        "upstreams:\n"
        f'  mock: {{base_url: "{mock_url}/v1", api_key: none}}\n'
        "models:\n"
        f"  - {{name: {MODEL}, upstream: mock}}\n"
    )
    port = free_port()
    command = ["taskset", "-c", args.gateway_cpu, str(Path(sys.executable).parent / "tokenomy")]
    command += ["serve", "--config", str(config), "--port", str(port), "--server", "uvicorn"]
    url = f"http://127.0.0.1:{port}"
    service = Service(f"gateway ({engine})", command, directory / "server.log", directory)
    try:
        service.wait_ready(url + "/healthz")
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        created = httpx.post(url + "/admin/keys", json={"team": TEAM}, headers=admin, timeout=10)
        created.raise_for_status()
        key = created.json()["key"]
        budget = {"scope": {"team": TEAM}, "limit_usd": "1000000"}
        httpx.put(url + "/admin/budgets/soak", json=budget, headers=admin, timeout=10)
        check = httpx.post(
            url + PATH,
            content=request_body(False),
            headers={**admin, "Authorization": f"Bearer {key}"},
            timeout=10,
        )
        if check.status_code != 200:
            raise SystemExit(f"gateway ({engine}): HTTP {check.status_code} {check.text[:300]}")

        samples: list[Sample] = []
        # SQLite's write-ahead log: its largest size seen (it must stay bounded too).
        wal = Path(database[len("sqlite:///") :] + "-wal") if engine == "sqlite" else None
        wal_max = [0.0]
        phase = ["start"]
        started = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while True:
                memory = memory_mb(service.pids())
                mapped = memory["RssFile"] + memory["RssShmem"]
                elapsed = time.monotonic() - started
                if wal is not None and wal.exists():
                    wal_max[0] = max(wal_max[0], wal.stat().st_size / 2**20)
                samples.append(
                    Sample(elapsed, phase[0], memory["VmRSS"], memory["RssAnon"], mapped)
                )
                if stop.wait(args.sample_s):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(0.2)
        rss_start = rss_mb(service.pids())
        phase[0] = "warmup"
        script = lua_script(directory / "load.lua", key, args.stream_every)
        warm, _ = drive(url + PATH, script, args, args.warmup, service)
        warm_memory = memory_mb(service.pids())
        rss_warm = warm_memory["VmRSS"]
        phase[0] = "soak"
        cpu_warm = service.cpu_seconds()
        if warm.requests >= args.requests:
            raise SystemExit(f"the warm-up alone sent {warm.requests:,} requests")
        measured, rates = drive(url + PATH, script, args, args.requests - warm.requests, service)
        cpu_end = service.cpu_seconds()
        end_memory = memory_mb(service.pids())
        rss_end = end_memory["VmRSS"]
        phase[0] = "end"
        stop.set()
        sampler.join()

        time.sleep(1.0)  # the last requests' events (wrk stopped with some in flight)
        state = httpx.get(url + "/admin/budgets/soak", headers=admin, timeout=10).json()
        events, ledger_cost = ledger_totals(database)
        answered = 1 + warm.requests + measured.requests
        if events < answered:
            raise SystemExit(f"gateway ({engine}): {answered} answered, {events} in the ledger")
        return EngineResult(
            engine=engine,
            warmup=warm,
            soak=measured,
            cpu_us_per_request=(cpu_end - cpu_warm) / max(measured.requests, 1) * 1e6,
            rss_start_mb=rss_start,
            rss_warm_mb=rss_warm,
            rss_end_mb=rss_end,
            rss_max_mb=max([rss_end, *(s.rss_mb for s in samples)]),
            growth_mb=rss_end - rss_warm,
            anon_growth_mb=end_memory["RssAnon"] - warm_memory["RssAnon"],
            mapped_growth_mb=sum(end_memory[k] - warm_memory[k] for k in ("RssFile", "RssShmem")),
            slope_mb_per_100k=slope_per_100k(samples, measured.rps),
            ledger_events=events,
            budget_reserved_usd=str(state["reserved_usd"]),
            budget_spent_usd=str(state["spent_usd"]),
            ledger_cost_usd=str(ledger_cost),
            segment_rps=rates,
            wal_max_mb=wal_max[0] if wal is not None else None,
            samples=samples,
        )
    finally:
        service.stop()


def table(results: list[EngineResult]) -> str:
    rows: list[tuple[str, Callable[[EngineResult], str]]] = [
        ("requests (warm-up + soak)", lambda r: f"{r.warmup.requests:,} + {r.soak.requests:,}"),
        ("requests/s (soak)", lambda r: f"{r.soak.rps:,.0f}"),
        (
            "req/s first / last segment",
            lambda r: f"{r.segment_rps[0][0]:,.0f} / {r.segment_rps[-1][0]:,.0f}",
        ),
        (
            "CPU µs per request first / last segment",
            lambda r: f"{r.segment_rps[0][1]:.0f} / {r.segment_rps[-1][1]:.0f}",
        ),
        ("p50 / p99 ms", lambda r: f"{r.soak.p50_ms:.2f} / {r.soak.p99_ms:.2f}"),
        ("non-2xx / socket errors", lambda r: f"{r.soak.non_2xx} / {r.soak.socket_errors}"),
        ("gateway CPU µs per request", lambda r: f"{r.cpu_us_per_request:.0f}"),
        ("RSS at start MB", lambda r: f"{r.rss_start_mb:.1f}"),
        ("RSS after warm-up MB", lambda r: f"{r.rss_warm_mb:.1f}"),
        ("RSS at end MB", lambda r: f"{r.rss_end_mb:.1f}"),
        ("RSS max MB", lambda r: f"{r.rss_max_mb:.1f}"),
        ("growth after warm-up MB", lambda r: f"{r.growth_mb:+.1f}"),
        ("of which heap (RssAnon) MB", lambda r: f"{r.anon_growth_mb:+.1f}"),
        ("of which mapped files (RssFile + RssShmem) MB", lambda r: f"{r.mapped_growth_mb:+.1f}"),
        ("fitted growth MB / 100k requests", lambda r: f"{r.slope_mb_per_100k:+.2f}"),
        (
            "SQLite WAL, largest MB",
            lambda r: "-" if r.wal_max_mb is None else f"{r.wal_max_mb:.1f}",
        ),
        ("ledger events", lambda r: f"{r.ledger_events:,}"),
        ("budget reserved / spent $", lambda r: f"{r.budget_reserved_usd} / {r.budget_spent_usd}"),
        ("ledger cost $", lambda r: r.ledger_cost_usd),
    ]
    header = "| | " + " | ".join(r.engine for r in results) + " |"
    lines = [header, "|---" * (len(results) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--segment-s", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--stream-every", type=int, default=4, help="0: no streams")
    parser.add_argument("--upstream-cpu", default="0")
    parser.add_argument("--wrk-cpu", default="0")
    parser.add_argument("--gateway-cpu", default="1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.warmup >= args.requests:
        parser.error("--warmup must be below --requests")

    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; {args.requests:,} requests per engine "
        f"({args.warmup:,} warm-up), {args.concurrency} connections, "
        f"1 in {args.stream_every} streaming"
        if args.stream_every
        else "no streams",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="tokenomy-soak-") as tmp:
        workdir = Path(tmp)
        mock_port = free_port()
        mock = Service(
            "mock",
            [
                *("taskset", "-c", args.upstream_cpu, sys.executable, "-m", "tokenomy.mock"),
                *("--port", str(mock_port), "--log-level", "warning"),
            ],
            workdir / "mock.log",
            workdir,
        )
        results: list[EngineResult] = []
        try:
            mock.wait_ready(f"http://127.0.0.1:{mock_port}/health")
            for engine in args.engines.split(","):
                print(f"soaking {engine} ...", flush=True)
                result = soak(engine, args, f"http://127.0.0.1:{mock_port}", workdir)
                results.append(result)
                print(
                    f"  {result.soak.rps:,.0f} req/s, RSS {result.rss_warm_mb:.1f} -> "
                    f"{result.rss_end_mb:.1f} MB",
                    flush=True,
                )
        finally:
            mock.stop()
    print()
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
