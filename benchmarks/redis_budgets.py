"""What shared budgets cost: reserve + settle per request in Redis versus in memory, and
gateway throughput with Redis budgets versus in-memory ones, measured side by side.

    python benchmarks/redis_budgets.py [--duration 5] [--connections 16] [--rounds 4]

In-process, per request, alternating memory and Redis ``--rounds`` times:

- store: ``reserve`` + ``settle`` on one counter and on five (one request at a time: the
  cost a request pays), and with 64 requests in flight (what one process can push);
- enforcer: ``admit`` + ``settle`` with five budgets in scope (scope matching, the
  threshold read, the hold), as the gateway calls it.

On the wire (Linux, ``wrk``, ``taskset``): two gateways, one with in-memory budgets and one
with ``redis:``, each pinned to CPU 1 and loaded in turn (the idle one waits), the mock and
wrk on CPU 0, five budgets in scope of the caller, the small chat request of
``gateway_overhead.py``. Redis runs where it runs (a system service, not pinned): its CPU
is not in the gateway's figures. Needs Redis on 127.0.0.1:6379 (database 12 is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from budget_overhead import PRINCIPAL, SCOPES, set_budgets
from gateway_overhead import (
    ADMIN_KEY,
    PATH,
    Service,
    free_port,
    lua_script,
    machine,
    request_body,
    run_wrk,
    start_gateway,
)
from tokenomy import database, redis_client
from tokenomy.budgets.book import BudgetBook
from tokenomy.budgets.enforcer import BudgetEnforcer, Request
from tokenomy.budgets.redis_store import RedisBudgetStore
from tokenomy.budgets.store import BudgetStore, Hold, MemoryBudgetStore, ReserveLine
from tokenomy.config import parse_settings
from tokenomy.pricing import Catalog
from tokenomy.principals import Principal

REDIS_URL = "redis://127.0.0.1:6379/12"
LIMIT = 10**24  # never refuses


async def _stores() -> dict[str, BudgetStore]:
    client = redis_client.connect(REDIS_URL)
    await client.flushdb()
    return {"memory": MemoryBudgetStore(), "redis": RedisBudgetStore(client, REDIS_URL)}


async def _timed(job: Callable[[], Awaitable[None]], requests: int, in_flight: int) -> float:
    """Microseconds of wall time per request, ``in_flight`` requests at a time."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(worker(requests // in_flight) for _ in range(in_flight)))
    return (time.perf_counter() - started) / requests * 1e6


async def store_costs(rounds: int, requests: int) -> dict[tuple[str, str], list[float]]:
    stores = await _stores()
    results: dict[tuple[str, str], list[float]] = {}
    cases = (("1 budget", 1, 1), ("5 budgets", 5, 1), ("5 budgets, 64 in flight", 5, 64))
    for round_index in range(rounds):
        order = list(stores) if round_index % 2 == 0 else list(reversed(stores))
        for name in order:
            store = stores[name]
            for label, budgets, in_flight in cases:
                lines = [ReserveLine((f"b{i}", 0), LIMIT, None) for i in range(budgets)]
                for line in lines:
                    if not store.loaded(line.key):
                        await store.load(line.key, 0, 0)

                async def one(store: BudgetStore = store, lines: list[ReserveLine] = lines) -> None:
                    hold = await store.reserve(lines, 1_000_000, 40)
                    assert isinstance(hold, Hold), hold
                    await store.settle(hold, 123_456, 25)

                await _timed(one, 200, in_flight)  # warm up
                cost = await _timed(one, requests, in_flight)
                results.setdefault((label, name), []).append(cost)
    redis_store = stores["redis"]
    assert isinstance(redis_store, RedisBudgetStore)
    await redis_store.close()
    return results


async def enforcer_costs(rounds: int, requests: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        settings = parse_settings(
            {
                "database": url,
                "upstreams": {"mock": {"base_url": "http://127.0.0.1:1/v1"}},
                "models": [{"name": "gpt-4o-mini", "upstream": "mock"}],
            }
        )
        conn = database.connect(url)
        book = BudgetBook(conn)
        for index, scope in enumerate(SCOPES):
            definition: dict[str, Any] = {"scope": scope, "limit_usd": "1000000"}
            definition["thresholds"] = [{"at": 0.9, "action": "block"}]
            book.put(f"b{index}", definition, "bench")
        catalog = Catalog.from_settings(settings)
        model = catalog.get("gpt-4o-mini")
        assert model is not None
        principal = Principal(key_id="key_bench", **PRINCIPAL)  # type: ignore[arg-type]
        payload = {
            "model": "gpt-4o-mini",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        }
        request = Request(principal, dict(principal.tags), "realtime", payload, "max_tokens", True)
        stores = await _stores()
        enforcers = {
            name: BudgetEnforcer(book, store, catalog, conn, ZoneInfo("UTC"))
            for name, store in stores.items()
        }
        results: dict[str, list[float]] = {}
        for round_index in range(rounds):
            order = list(enforcers) if round_index % 2 == 0 else list(reversed(enforcers))
            for name in order:
                enforcer = enforcers[name]

                async def one(enforcer: BudgetEnforcer = enforcer) -> None:
                    await enforcer.settle(await enforcer.admit(request, model), 123_456, 25)

                await _timed(one, 200, 1)
                results.setdefault(name, []).append(await _timed(one, requests, 1))
        redis_store = stores["redis"]
        assert isinstance(redis_store, RedisBudgetStore)
        await redis_store.close()
        return results


def gateway_throughput(args: argparse.Namespace) -> dict[str, tuple[list[float], list[float]]]:
    venv_bin = Path(sys.executable).parent
    rates: dict[str, tuple[list[float], list[float]]] = {"memory": ([], []), "redis": ([], [])}
    with tempfile.TemporaryDirectory(prefix="tokenomy-redis-bench-") as tmp:
        workdir = Path(tmp)
        mock_port = free_port()
        mock_url = f"http://127.0.0.1:{mock_port}"
        mock_command = [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "tokenomy.mock",
            "--port",
            str(mock_port),
            "--log-level",
            "warning",
        ]
        mock = Service("mock", mock_command, workdir / "mock.log", workdir)
        gateways = {}
        try:
            mock.wait_ready(mock_url + "/v1/models")
            watch = "watch: {every_s: 0}\n"
            for name, extra in (("memory", ""), ("redis", f"redis: {REDIS_URL}\n")):
                (workdir / name).mkdir()
                gateway = start_gateway(
                    "uvicorn", mock_url, "1", workdir / name, venv_bin, watch + extra
                )
                gateway.key = httpx.post(
                    gateway.url + "/admin/keys",
                    json=PRINCIPAL,
                    headers={"authorization": f"Bearer {ADMIN_KEY}"},
                ).json()["key"]
                set_budgets(gateway.url, 5)
                gateways[name] = gateway
            for round_index in range(args.rounds):
                order = ("memory", "redis") if round_index % 2 == 0 else ("redis", "memory")
                for name in order:
                    gateway = gateways[name]
                    script = lua_script(workdir / name, "plain", request_body(False), gateway.key)
                    if round_index == 0:
                        run_wrk("0", gateway.url + PATH, script, args.connections, 2)  # warm up
                    cpu_before = gateway.service.cpu_seconds()
                    result, _ = run_wrk(
                        "0", gateway.url + PATH, script, args.connections, args.duration
                    )
                    used = gateway.service.cpu_seconds() - cpu_before
                    rates[name][0].append(result.rps)
                    rates[name][1].append(used / max(result.requests, 1) * 1e6)
        finally:
            for gateway in gateways.values():
                gateway.service.stop()
            mock.stop()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5_000, help="per in-process cell")
    parser.add_argument("--no-gateway", action="store_true", help="in-process figures only")
    args = parser.parse_args()
    host = machine()
    print(f"machine: {host['nproc']} CPUs, {host['cpu']}, Python {host['python']}")
    print(f"reserve + settle per request, µs (median of {args.rounds} alternating runs):")
    costs = uvloop.run(store_costs(args.rounds, args.requests))  # the gateway's loop
    for label in ("1 budget", "5 budgets", "5 budgets, 64 in flight"):
        memory = statistics.median(costs[(label, "memory")])
        shared = statistics.median(costs[(label, "redis")])
        print(
            f"  {label:24s} memory {memory:7.1f}   redis {shared:7.1f}   "
            f"redis/memory {shared / memory:6.1f}x"
        )
    enforcer = uvloop.run(enforcer_costs(args.rounds, args.requests))
    memory, shared = statistics.median(enforcer["memory"]), statistics.median(enforcer["redis"])
    print(
        f"  {'enforcer admit + settle':24s} memory {memory:7.1f}   redis {shared:7.1f}   "
        f"redis/memory {shared / memory:6.1f}x   (5 budgets, thresholds read)"
    )
    if args.no_gateway:
        return
    rates = gateway_throughput(args)
    print(
        f"gateway at {args.connections} connections, five budgets in scope, "
        f"median of {args.rounds} alternating runs:"
    )
    for name in ("memory", "redis"):
        runs, cpu = rates[name]
        print(
            f"  {name:7s} budgets: {statistics.median(runs):7.0f} req/s   "
            f"gateway CPU {statistics.median(cpu):6.1f} µs/req   runs {[round(r) for r in runs]}"
        )
    ratio = statistics.median(rates["redis"][0]) / statistics.median(rates["memory"][0])
    print(f"  ratio redis/memory: {ratio:.3f} (throughput change {ratio - 1:+.1%})")


if __name__ == "__main__":
    main()
