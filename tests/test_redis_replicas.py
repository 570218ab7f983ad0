"""Several replicas share budgets and rate limits through Redis: a 1,000-request race for a
budget with room for about 100 never overshoots, a replica killed mid-request leaks its holds
only until they expire, Redis down answers 503 (or serves unenforced when failing open), a
counter Redis lost comes back from the ledger, and ``serve --workers N`` needs ``redis:``.

Three ``tokenomy serve`` processes sit behind a round-robin TCP proxy written here, rather
than one ``serve --workers 3``: the proxy deals connections to the replicas in turn, so every
replica provably takes part (with a shared listening socket the kernel may hand most
connections to one worker, and the test would pass without testing sharing), and kill -9
hits one known replica, like a lost pod, whose holds the test can name in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from click.testing import CliRunner

from conftest import (
    Gateway,
    MockUpstream,
    free_port,
    gateway_config,
    ledger_rows,
    start_gateway,
    stop,
)
from tokenomy.cli.main import cli

HI = [{"role": "user", "content": "hi"}]
PICO = Decimal(10) ** 12
REDIS_DB = 11  # the response cache tests use 13
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
HOLD_TTL_S = 4.0
REDIS_NO_DISK = ("--save", "", "--appendonly", "no")  # a restart forgets every counter
LAG_MS = 2000  # the "lagging" model's upstream latency: requests still in flight at the kill


def redis_client() -> Any:
    client: Any = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not reachable at 127.0.0.1:6379 (CI needs it)")
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    return client


class RoundRobin:
    """One address for several replicas, like a load balancer: each TCP connection goes to
    the next replica that accepts it (a dead one is skipped)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports  # a restarted replica replaces a killed one in place
        self.port = free_port()
        self.connections: Counter[int] = Counter()  # per replica port
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> RoundRobin:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=4096)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[next(self._turn) % len(self.ports)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.connections[port] += 1
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


@dataclass
class Replicas:
    gateways: list[Gateway]
    proxy: RoundRobin
    config: dict[str, Any]
    tmp_path: Path
    redis: Any  # a client answering str

    @property
    def any(self) -> Gateway:
        return next(g for g in self.gateways if g.process.poll() is None)

    def ledger_pico(self, team: str) -> int:
        (row,) = ledger_rows(
            self.any.database,
            "SELECT COALESCE(SUM(cost_pico), 0) AS spent FROM events WHERE team = ?",
            (team,),
        )
        return int(row["spent"])

    def ledger_ids(self, team: str) -> set[str]:
        rows = ledger_rows(self.any.database, "SELECT id FROM events WHERE team = ?", (team,))
        return {str(row["id"]) for row in rows}

    def redis_counter(self, budget: str) -> dict[str, int]:
        """The budget's counter fields in Redis, plus its number of holds."""
        (key,) = self.redis.keys(f"tokenomy:budget:*:{budget}")
        fields = {k: int(v) for k, v in self.redis.hgetall(key).items()}
        fields["holds"] = int(self.redis.zcard(key.replace("tokenomy:budget:", "tokenomy:holds:")))
        return fields

    def holds(self, budget: str) -> list[str]:
        return [
            str(member)
            for key in self.redis.keys(f"tokenomy:holds:*:{budget}")
            for member in self.redis.zrange(key, 0, -1)
        ]

    def put_budget(self, name: str, team: str, limit_pico: int) -> None:
        definition: dict[str, Any] = {
            "scope": {"team": team},
            "period": "month",
            "limit_usd": str(Decimal(limit_pico) / PICO),
            "thresholds": [{"at": 1.0, "action": "block"}],
        }
        response = self.any.admin("PUT", f"/admin/budgets/{name}", json=definition)
        assert response.status_code == 200, response.text
        self.wait_for_budget(name, definition["limit_usd"])

    def wait_for_budget(self, name: str, limit_usd: str) -> float:
        """Seconds until every replica enforces the definition just written on one."""
        started = time.monotonic()
        waiting = list(self.gateways)
        while waiting and time.monotonic() - started < 5:
            response = waiting[0].admin("GET", f"/admin/budgets/{name}")
            if response.status_code == 200 and Decimal(response.json()["limit_usd"]) == Decimal(
                limit_usd
            ):
                waiting.pop(0)
            else:
                time.sleep(0.02)
        elapsed = time.monotonic() - started
        assert not waiting and elapsed < 1.0, f"{name}: replicas still behind after {elapsed}s"
        return elapsed

    def state(self, gateway: Gateway, name: str) -> dict[str, Any]:
        response = gateway.admin("GET", f"/admin/budgets/{name}")
        assert response.status_code == 200, response.text
        return dict(response.json())


def start_replicas(tmp_path: Path, config: dict[str, Any], count: int) -> list[Gateway]:
    """Started one after the other from this thread (a replica dies with the thread that
    started it: PR_SET_PDEATHSIG), each warmed up by one request (a cold replica spends its
    first second importing, which would skew a race towards the others)."""
    gateways = [start_gateway(tmp_path, config) for _ in range(count)]
    for gateway in gateways:
        warm = gateway.chat(
            gateway.create_key(team="warm-up"),
            {"model": "gpt-4o-mini", "messages": HI, "max_tokens": 1},
        )
        assert warm.status_code == 200, warm.text
    return gateways


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Replicas]:
    client = redis_client()
    client.flushdb()
    tmp_path = tmp_path_factory.mktemp("replicas")
    config = gateway_config(
        tmp_path / "ledger.db", mock_upstream, redis=REDIS_URL, redis_hold_ttl_s=HOLD_TTL_S
    )
    config["upstreams"]["lagging"] = {
        "base_url": mock_upstream.base_url,
        "headers": {"x-mock-latency-ms": str(LAG_MS)},
    }
    config["models"].append(
        {
            "name": "lagging-model",
            "upstream": "lagging",
            "upstream_model": "mock-small",
            "price": {"input_per_mtok": "1.00", "output_per_mtok": "2.00"},
        }
    )
    gateways = start_replicas(tmp_path, config, 3)
    with RoundRobin([g.port for g in gateways]) as proxy:
        yield Replicas(gateways, proxy, config, tmp_path, client)
        for gateway in gateways:
            stop(gateway.process)
    client.close()


async def storm(
    url: str, key: str, body: dict[str, Any], count: int, connections: int
) -> list[httpx.Response | Exception]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one() -> httpx.Response | Exception:
            try:
                return await client.post(
                    url + "/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {key}"},
                )
            except httpx.HTTPError as exc:
                return exc

        return list(await asyncio.gather(*(one() for _ in range(count))))


def test_1000_requests_through_three_replicas_never_overshoot(replicas: Replicas) -> None:
    gateway = replicas.any
    key = gateway.create_key(team="racers")
    probe = gateway.chat(
        gateway.create_key(team="probe"),
        {"model": "premium-model", "messages": HI, "max_tokens": 20},
    )
    unit = int(Decimal(probe.headers["x-tokenomy-cost-usd"]) * PICO)
    limit = unit * 100
    replicas.put_budget("racers-month", "racers", limit)
    before = Counter(replicas.proxy.connections)

    body = {"model": "premium-model", "messages": HI, "max_tokens": 20}
    responses = asyncio.run(storm(replicas.proxy.base_url, key, body, 1000, 1000))

    statuses = Counter(r.status_code if isinstance(r, httpx.Response) else 0 for r in responses)
    assert set(statuses) == {200, 429}, statuses
    for response in responses:
        assert isinstance(response, httpx.Response)
        if response.status_code == 429:
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
            assert "racers-month" in error["message"]
    per_replica = Counter(replicas.proxy.connections)
    per_replica.subtract(before)
    assert all(per_replica[g.port] >= 300 for g in replicas.gateways), per_replica

    spent = replicas.ledger_pico("racers")
    assert spent <= limit  # zero overshoot, by the ledger
    assert spent >= limit * 8 // 10, (spent, limit, statuses)  # holds not needlessly wide
    counter = replicas.redis_counter("racers-month")
    assert counter["sp"] == spent  # every settle reached Redis
    assert (counter["rp"], counter["rt"], counter["holds"]) == (0, 0, 0)  # no leaked hold
    for replica in replicas.gateways:  # every replica reports the shared counter
        state = replicas.state(replica, "racers-month")
        assert Decimal(state["spent_usd"]) == Decimal(spent) / PICO
        assert Decimal(state["reserved_usd"]) == 0

    # Redis loses its data (a restart without persistence): the counter comes back from
    # the ledger before the next request is admitted, and the budget still holds.
    replicas.redis.flushdb()
    state = replicas.state(replicas.gateways[1], "racers-month")
    assert Decimal(state["spent_usd"]) == Decimal(spent) / PICO
    extra = asyncio.run(storm(replicas.proxy.base_url, key, body, 30, 3))
    assert any(isinstance(r, httpx.Response) and r.status_code == 429 for r in extra)
    assert replicas.ledger_pico("racers") <= limit


def test_rate_limits_are_shared_by_the_replicas(replicas: Replicas) -> None:
    key = replicas.any.create_key(team="limited", rpm=10)
    body = {"model": "gpt-4o-mini", "messages": HI, "max_tokens": 5}
    before = Counter(replicas.proxy.connections)
    # One connection per request: the proxy deals them to the three replicas in turn.
    responses = asyncio.run(storm(replicas.proxy.base_url, key, body, 30, 30))
    statuses = Counter(r.status_code for r in responses if isinstance(r, httpx.Response))
    assert statuses == {200: 10, 429: 20}, statuses  # per-process limits would allow 30
    per_replica = Counter(replicas.proxy.connections)
    per_replica.subtract(before)
    assert all(per_replica[g.port] == 10 for g in replicas.gateways), per_replica
    refused = next(r for r in responses if isinstance(r, httpx.Response) and r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "10"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_kill_9_mid_race_leaks_holds_only_until_they_expire(replicas: Replicas) -> None:
    gateway = replicas.any
    key = gateway.create_key(team="crashers")
    body = {"model": "lagging-model", "messages": HI, "max_tokens": 50}
    probe = gateway.chat(gateway.create_key(team="lag-probe"), body)
    unit = int(Decimal(probe.headers["x-tokenomy-cost-usd"]) * PICO)
    limit = unit * 200  # room for every worst-case hold: each replica holds some
    replicas.put_budget("crashers-month", "crashers", limit)
    victim = replicas.gateways[1]

    victim_prefix = f"{socket.gethostname()}:{victim.process.pid}:"

    async def race_and_kill() -> list[httpx.Response | Exception]:
        requests = asyncio.ensure_future(storm(replicas.proxy.base_url, key, body, 90, 90))
        deadline = time.monotonic() + LAG_MS / 1000
        while time.monotonic() < deadline:  # kill once the victim holds budget
            await asyncio.sleep(0.05)
            if (
                len([m for m in replicas.holds("crashers-month") if m.startswith(victim_prefix)])
                >= 20
            ):
                break
        os.killpg(victim.process.pid, signal.SIGKILL)
        return await requests

    try:
        responses = asyncio.run(race_and_kill())
        victim.process.wait()
        # The survivors' requests have ended; the victim's holds are still in Redis...
        leaked = replicas.holds("crashers-month")
        assert leaked, "the killed replica held nothing: the test would prove nothing"
        assert all(member.startswith(victim_prefix) for member in leaked), leaked
        assert replicas.redis_counter("crashers-month")["rp"] > 0
        lost = [r for r in responses if not isinstance(r, httpx.Response)]
        assert lost  # the victim's clients lost their connections
        # ...until they expire: the survivors' heartbeats drop them.
        deadline = time.monotonic() + HOLD_TTL_S + 3
        while replicas.redis_counter("crashers-month")["holds"] and time.monotonic() < deadline:
            time.sleep(0.2)
        counter = replicas.redis_counter("crashers-month")
        assert (counter["rp"], counter["rt"], counter["holds"]) == (0, 0, 0)
        spent = replicas.ledger_pico("crashers")
        assert spent <= limit
        # Zero acknowledged requests missing: every answered request is in the ledger.
        answered = {
            r.headers["x-request-id"]
            for r in responses
            if isinstance(r, httpx.Response) and r.status_code == 200
        }
        assert answered and answered <= replicas.ledger_ids("crashers")
        assert counter["sp"] == spent  # the victim answered nothing it had not recorded
    finally:  # a new replica takes the victim's place
        (fresh,) = start_replicas(replicas.tmp_path, replicas.config, 1)
        index = replicas.gateways.index(victim)
        replicas.gateways[index] = fresh
        replicas.proxy.ports[index] = fresh.port
    state = replicas.state(fresh, "crashers-month")
    assert Decimal(state["spent_usd"]) == Decimal(spent) / PICO
    assert Decimal(state["reserved_usd"]) == 0


@pytest.mark.parametrize("fail_open", [False, True])
def test_redis_down_fails_closed_with_503_unless_failing_open(
    tmp_path: Path, mock_upstream: MockUpstream, fail_open: bool
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    config = gateway_config(
        tmp_path / "ledger.db", mock_upstream, redis=nowhere, redis_fail_open=fail_open
    )
    gateway = start_gateway(tmp_path, config)
    try:
        key = gateway.create_key(team="cut-off", rpm=100)
        gateway.admin(
            "PUT",
            "/admin/budgets/cut-off",
            json={"scope": {"team": "cut-off"}, "period": "month", "limit_usd": "1.00"},
        )
        response = gateway.chat(key, {"model": "gpt-4o-mini", "messages": HI, "max_tokens": 5})
        if fail_open:
            assert response.status_code == 200, response.text
            assert len(gateway.events()) == 1  # served unenforced, and still recorded
        else:
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["type"] == "server_error"
            assert error["code"] == "redis_unavailable"
            assert "Redis at 127.0.0.1" in error["message"]
            assert gateway.events() == []  # never reached the upstream
        # Monitoring keeps working: the budget gauges are left out, the rest is served.
        metrics = gateway.admin("GET", "/metrics")
        assert metrics.status_code == 200 and "tokenomy_requests_total" in metrics.text
    finally:
        stop(gateway.process)


def test_serve_workers_needs_redis(tmp_path: Path, mock_upstream: MockUpstream) -> None:
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    config_path = tmp_path / "plain.yaml"
    config_path.write_text(yaml.safe_dump(config))
    refused = CliRunner().invoke(cli, ["serve", "--config", str(config_path), "--workers", "3"])
    assert refused.exit_code != 0
    assert "redis:" in refused.output

    client = redis_client()
    client.flushdb()
    gateway = start_gateway(tmp_path, {**config, "redis": REDIS_URL}, "--workers", "3")
    try:
        workers = _children(gateway.process.pid)
        assert len(workers) >= 3, workers
        key = gateway.create_key(team="workers")
        response = gateway.chat(key, {"model": "gpt-4o-mini", "messages": HI, "max_tokens": 5})
        assert response.status_code == 200
    finally:
        stop(gateway.process)
        client.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def test_a_redis_restart_under_load_loses_no_answered_request(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    """A private Redis killed and restarted (empty, like one without persistence) while
    requests flow: the outage answers 503, service comes back by itself, every answered
    request is in the ledger, and the lost counter is rebuilt from the ledger."""
    port = free_port()

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [*("redis-server", "--port", str(port), "--bind", "127.0.0.1"), *REDIS_NO_DISK],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return process
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    server = start_redis()
    config = gateway_config(
        tmp_path / "ledger.db", mock_upstream, redis=f"redis://127.0.0.1:{port}/0"
    )
    gateway = start_gateway(tmp_path, config)
    outcomes: list[tuple[float, int, str]] = []
    try:
        key = gateway.create_key(team="weathered")
        budget = {"scope": {"team": "weathered"}, "period": "month", "limit_usd": "10"}
        assert gateway.admin("PUT", "/admin/budgets/weathered", json=budget).status_code == 200
        stop_at = time.monotonic() + 7

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < stop_at:
                    answer = client.post(
                        gateway.base_url + "/chat/completions",
                        json={"model": "gpt-4o-mini", "messages": HI, "max_tokens": 5},
                        headers={"authorization": f"Bearer {key}"},
                    )
                    outcomes.append(
                        (time.monotonic(), answer.status_code, answer.headers["x-request-id"])
                    )

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(2)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        down_at = time.monotonic()
        time.sleep(1.5)
        server = start_redis()
        up_at = time.monotonic()
        for worker in workers:
            worker.join()
        statuses = Counter(status for _, status, _ in outcomes)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] > 0  # the outage was seen (fail closed)
        assert any(status == 200 and at > up_at + 1 for at, status, _ in outcomes)
        assert any(status == 200 and at < down_at for at, status, _ in outcomes)
        answered = {rid for _, status, rid in outcomes if status == 200}
        recorded = ledger_rows(
            gateway.database, "SELECT id, cost_pico FROM events WHERE team = ?", ("weathered",)
        )
        assert answered <= {row["id"] for row in recorded}
        # The empty Redis got its counter back from the ledger: spent is the ledger's.
        state = gateway.admin("GET", "/admin/budgets/weathered").json()
        spent = sum(int(row["cost_pico"]) for row in recorded)
        assert Decimal(state["spent_usd"]) == Decimal(spent) / PICO
        assert Decimal(state["reserved_usd"]) == 0
    finally:
        stop(gateway.process)
        stop(server)
