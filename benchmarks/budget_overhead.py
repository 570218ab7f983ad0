"""What budgets cost: reserve + settle per request in-process, and gateway throughput with
five budgets in scope versus none.

    python benchmarks/budget_overhead.py [--duration 5] [--connections 16] [--rounds 3]

In-process: the budget enforcer's admit + settle on real objects (SQLite-backed budget
book, in-memory counters), timed over many requests, with 0, 1 and 5 budgets in scope.

On the wire (Linux, ``wrk`` and ``taskset``): one gateway pinned to CPU 1, the mock
upstream and wrk on CPU 0, the same small chat request as ``gateway_overhead.py``. The
same gateway process is measured alternately with no budget and with five budgets in
scope of the caller (user, team, department, environment and a tag; limits high enough
never to block), ``--rounds`` times each in alternating order, so the ratio compares runs
seconds apart.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

sys.path.insert(0, str(Path(__file__).parent))
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
from tokenomy import database
from tokenomy.budgets.book import BudgetBook
from tokenomy.budgets.enforcer import BudgetEnforcer, Request
from tokenomy.budgets.store import MemoryBudgetStore
from tokenomy.config import parse_settings
from tokenomy.pricing import Catalog
from tokenomy.principals import Principal

SCOPES = [
    {"user": "bench-user"},
    {"team": "bench"},
    {"department": "bench-dept"},
    {"environment": "prod"},
    {"tag:app": "bench"},
]
PRINCIPAL = {
    "user": "bench-user",
    "team": "bench",
    "department": "bench-dept",
    "environment": "prod",
    "tags": {"app": "bench"},
}


def in_process(budgets: int, requests: int = 20_000) -> float:
    """Microseconds per admit + settle with this many budgets in scope."""
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
        for index, scope in enumerate(SCOPES[:budgets]):
            book.put(f"b{index}", {"scope": scope, "limit_usd": "1000000"}, "bench")
        catalog = Catalog.from_settings(settings)
        enforcer = BudgetEnforcer(book, MemoryBudgetStore(), catalog, conn, ZoneInfo("UTC"))
        model = catalog.get("gpt-4o-mini")
        assert model is not None
        principal = Principal(key_id="key_bench", **PRINCIPAL)  # type: ignore[arg-type]
        payload = {
            "model": "gpt-4o-mini",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        }
        request = Request(principal, dict(principal.tags), "realtime", payload, "max_tokens", True)

        async def run() -> float:
            for _ in range(200):  # warm the caches (scope matching, counters loaded)
                await enforcer.settle(await enforcer.admit(request, model), 1000, 10)
            started = time.perf_counter()
            for _ in range(requests):
                admission = await enforcer.admit(request, model)
                await enforcer.settle(admission, 123_456, 25)
            return (time.perf_counter() - started) / requests * 1e6

        return asyncio.run(run())


def set_budgets(url: str, count: int) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    for index, scope in enumerate(SCOPES):
        name = f"bench-{index}"
        if index < count:
            body = {"scope": scope, "limit_usd": "1000000", "period": "month"}
            httpx.put(f"{url}/admin/budgets/{name}", json=body, headers=headers).raise_for_status()
        else:
            httpx.delete(f"{url}/admin/budgets/{name}", headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--watch-every",
        type=float,
        default=0,
        help="the gateway's spend watch period in s (0: off, so its periodic forecasts on "
        "the same core do not land in one side of the comparison)",
    )
    args = parser.parse_args()
    host = machine()
    print(f"machine: {host['nproc']} CPUs, {host['cpu']}, Python {host['python']}")
    print("in-process admit + settle (µs per request):")
    for count in (0, 1, 5):
        print(f"  {count} budget(s) in scope: {in_process(count):7.1f} µs")

    venv_bin = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="tokenomy-budget-bench-") as tmp:
        workdir = Path(tmp)
        mock_port = free_port()
        mock_url = f"http://127.0.0.1:{mock_port}"
        mock = Service(
            "mock",
            [
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
            ],
            workdir / "mock.log",
            workdir,
        )
        gateway = None
        try:
            mock.wait_ready(mock_url + "/v1/models")
            watch = f"watch: {{every_s: {args.watch_every}}}\n"
            gateway = start_gateway("uvicorn", mock_url, "1", workdir, venv_bin, watch)
            key = httpx.post(
                gateway.url + "/admin/keys",
                json=PRINCIPAL,
                headers={"authorization": f"Bearer {ADMIN_KEY}"},
            ).json()["key"]
            script = lua_script(workdir, "plain", request_body(False), key)
            rates: dict[int, list[float]] = {0: [], 5: []}
            cpu_us: dict[int, list[float]] = {0: [], 5: []}
            run_wrk("0", gateway.url + PATH, script, args.connections, 2)  # warm up
            for round_index in range(args.rounds):
                # Alternate which goes first, so drift on a shared machine favours neither.
                for count in (0, 5) if round_index % 2 == 0 else (5, 0):
                    set_budgets(gateway.url, count)
                    cpu_before = gateway.service.cpu_seconds()
                    result, _ = run_wrk(
                        "0", gateway.url + PATH, script, args.connections, args.duration
                    )
                    rates[count].append(result.rps)
                    used = gateway.service.cpu_seconds() - cpu_before
                    cpu_us[count].append(used / max(result.requests, 1) * 1e6)
            set_budgets(gateway.url, 0)
        finally:
            if gateway is not None:
                gateway.service.stop()
            mock.stop()
    none, five = statistics.median(rates[0]), statistics.median(rates[5])
    print(f"gateway at {args.connections} connections, median of {args.rounds} alternating runs:")
    print(f"  no budget:        {none:8.0f} req/s   runs {[round(r) for r in rates[0]]}")
    print(f"  five budgets:     {five:8.0f} req/s   runs {[round(r) for r in rates[5]]}")
    print(f"  ratio five/none:  {five / none:8.3f}   (throughput loss {1 - five / none:.1%})")
    # CPU per request is steadier than requests/s when other work shares the machine.
    cpu_none, cpu_five = statistics.median(cpu_us[0]), statistics.median(cpu_us[5])
    print(
        f"  gateway CPU per request: {cpu_none:6.1f} µs without, {cpu_five:6.1f} µs with "
        f"five budgets (+{cpu_five - cpu_none:.1f} µs, capacity loss "
        f"{1 - cpu_none / cpu_five:.1%})"
    )


if __name__ == "__main__":
    main()
