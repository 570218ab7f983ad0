"""Fallback chains and circuit breakers: a failing provider's requests are served by the
next model, charged once; a provider that keeps failing is skipped, then tried again."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from conftest import (
    Gateway,
    MockUpstream,
    free_port,
    gateway_config,
    start_gateway,
    stop,
    wait_until_up,
)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fallback_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[tuple[Gateway, int]]:
    tmp_path: Path = tmp_path_factory.mktemp("fallbacks")
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    later_port = free_port()
    config["upstreams"]["later"] = {
        "base_url": f"http://127.0.0.1:{later_port}/v1",
        "connect_timeout_s": 1,
        "breaker_threshold": 2,
        "breaker_open_s": 1,
        "retries": 0,
    }
    # Fails every other call: the retry on the same upstream answers.
    config["upstreams"]["flaky-once"] = {
        "base_url": mock_upstream.base_url,
        "headers": {"x-mock-fault-sequence": "error,ok"},
        "retries": 1,
        "retry_backoff_s": 0.05,
    }
    config["upstreams"]["broken"]["breaker_threshold"] = 1000  # never opens in these tests
    price = {"input_per_mtok": "1.00", "output_per_mtok": "2.00"}
    config["models"] += [
        {
            "name": "flaky",
            "upstream": "broken",
            "upstream_model": "m",
            "price": price,
            "fallbacks": ["hanging-model", "gpt-4o-mini"],
        },
        {"name": "later-model", "upstream": "later", "upstream_model": "m", "price": price},
        {"name": "retried", "upstream": "flaky-once", "upstream_model": "m", "price": price},
    ]
    gateway = start_gateway(tmp_path, config)
    yield gateway, later_port
    stop(gateway.process)


def test_the_next_model_serves_and_the_request_is_charged_once(
    fallback_gateway: tuple[Gateway, int],
) -> None:
    gateway, _ = fallback_gateway
    key = gateway.create_key(team="fallback")
    gateway.admin(
        "PUT", "/admin/budgets/fallback", json={"scope": {"team": "fallback"}, "limit_usd": "1.00"}
    )
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="flaky", messages=HI, max_tokens=6)
    assert raw.headers["x-tokenomy-model"] == "gpt-4o-mini"  # broken (500), then hanging (timeout)
    assert raw.headers["x-tokenomy-route-reason"] == "fallback:flaky->gpt-4o-mini"
    chunks = list(
        client.chat.completions.create(
            model="flaky",
            messages=HI,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    events = [e for e in gateway.events() if e["team"] == "fallback"]
    assert len(events) == 2  # one event per request, whatever was tried
    assert {(e["requested_model"], e["model"], e["status"]) for e in events} == {
        ("flaky", "gpt-4o-mini", 200)
    }
    state = gateway.admin("GET", "/admin/budgets/fallback").json()
    assert Decimal(state["reserved_usd"]) == 0
    assert Decimal(state["spent_usd"]) == sum(Decimal(e["cost_pico"]) for e in events) / 10**12
    assert Decimal(state["spent_usd"]) > 0


def test_the_breaker_opens_skips_and_closes_again(fallback_gateway: tuple[Gateway, int]) -> None:
    gateway, later_port = fallback_gateway
    key = gateway.create_key(team="breaker")

    def code() -> str:
        response = httpx.post(
            gateway.base_url + "/chat/completions",
            timeout=30,
            json={"model": "later-model", "messages": HI, "max_tokens": 3},
            headers={"authorization": f"Bearer {key}"},
        )
        return "ok" if response.status_code == 200 else str(response.json()["error"]["code"])

    assert [code(), code()] == ["upstream_error", "upstream_error"]  # nothing listens yet
    assert code() == "circuit_open"  # two failures in a row: skipped without a try
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenomy.mock", "--port", str(later_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{later_port}/v1/models", process)
        time.sleep(1.1)  # past the breaker's pause (the upstream's breaker_open_s)
        assert code() == "ok"  # the trial after the pause succeeds: closed again
        assert code() == "ok"
    finally:
        stop(process)


def test_a_failed_call_is_retried_on_the_same_upstream_and_charged_once(
    fallback_gateway: tuple[Gateway, int],
) -> None:
    gateway, _ = fallback_gateway
    key = gateway.create_key(team="retry")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    for _ in range(3):  # each request meets the 500 first, then the retry succeeds
        raw = client.chat.completions.with_raw_response.create(
            model="retried", messages=HI, max_tokens=4
        )
        assert raw.headers["x-tokenomy-model"] == "retried"
        assert raw.headers["x-tokenomy-route-reason"] == "requested"
    events = [e for e in gateway.events() if e["team"] == "retry"]
    assert [(e["status"], e["output_tokens"]) for e in events] == [(200, 4)] * 3


def test_backoff_is_jittered_capped_and_honours_retry_after() -> None:
    from tokenomy.config import UpstreamConfig
    from tokenomy.errors import UpstreamError
    from tokenomy.gateway.fallback import backoff_s

    config = UpstreamConfig(base_url="http://x", retry_backoff_s=0.1, retry_max_wait_s=2.0)
    waits = [backoff_s(3, config, None) for _ in range(2000)]
    assert 0 <= min(waits) < 0.02 and 0.38 < max(waits) <= 0.4  # uniform up to 0.1 x 2^2
    assert len(set(waits)) > 1900  # jittered: replicas do not retry in step
    asked = UpstreamError("busy", headers={"retry-after": "1"})
    assert backoff_s(1, config, asked) >= 1.0
    asked.headers["retry-after"] = "30"
    assert backoff_s(1, config, asked) == 2.0  # capped
