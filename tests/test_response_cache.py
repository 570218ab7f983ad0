"""The exact response cache through the gateway: deterministic requests repeat for free,
scoped to tenant and model, replayed as the shape asked for, controllable per request and
per key, purged by the admin API; in SQLite (one gateway) and Redis (replicas)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, MockUpstream, gateway_config, start_gateway, stop

PICO = Decimal(10) ** 12
REDIS_URL = "redis://127.0.0.1:6379/13"


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def cached(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mock_upstream: MockUpstream,
) -> Iterator[Gateway]:
    store = request.param
    if store == "redis":
        if not _redis_available():
            if os.environ.get("CI") == "true":
                pytest.fail("Redis is not reachable at 127.0.0.1:6379 (CI needs it)")
            pytest.skip("Redis is not reachable at 127.0.0.1:6379")
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        store = REDIS_URL
    tmp_path: Path = tmp_path_factory.mktemp(f"cache-{request.param}")
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    config["cache"] = {"enabled": True, "store": store, "ttl_s": 60}
    gateway = start_gateway(tmp_path, config)
    yield gateway
    stop(gateway.process)


def chat(
    gateway: Gateway,
    key: str,
    content: str,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    payload = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
        "temperature": 0,
    }
    payload.update(body)
    return gateway.chat(key, payload, headers)


def event_of(gateway: Gateway, response: httpx.Response) -> Any:
    request_id = response.headers["x-request-id"]
    return next(e for e in gateway.events() if e["id"] == request_id)


def test_a_repeated_deterministic_request_is_free_and_books_its_savings(cached: Gateway) -> None:
    key = cached.create_key(team="repeat")
    first = chat(cached, key, "What is the capital of France?")
    second = chat(cached, key, "What is the capital of France?")
    assert first.headers["x-tokenomy-cache"] == "miss"
    assert second.headers["x-tokenomy-cache"] == "hit-exact"
    assert second.json() == first.json()  # the same answer, as the client first got it
    assert Decimal(second.headers["x-tokenomy-cost-usd"]) == 0
    paid, free = event_of(cached, first), event_of(cached, second)
    assert paid["cost_pico"] > 0 and not paid["cache_hit"]
    assert free["cost_pico"] == 0 and free["cache_hit"] == 1
    assert (free["strategy"], free["route_reason"]) == ("cache", "cache:exact")
    assert free["input_tokens"] == free["output_tokens"] == 0  # nothing was processed
    assert free["saved_pico"] == paid["cost_pico"]  # what the model would have charged
    assert Decimal(second.headers["x-tokenomy-saved-usd"]) == Decimal(paid["cost_pico"]) / PICO
    slots = {
        s["key"]: s for s in cached.admin("GET", "/ui/api/overview").json()["savings"]["slots"]
    }
    cache_events = [e for e in cached.events() if e["strategy"] == "cache"]
    assert (
        Decimal(slots["cache"]["usd"]) == sum(Decimal(e["saved_pico"]) for e in cache_events) / PICO
    )
    assert Decimal(slots["routing"]["usd"]) == 0


def test_parameters_that_change_the_answer_are_part_of_the_key(cached: Gateway) -> None:
    key = cached.create_key(team="params")
    chat(cached, key, "Name a colour")
    assert chat(cached, key, "Name a colour", max_tokens=9).headers["x-tokenomy-cache"] == "miss"
    assert chat(cached, key, "Name a colour", seed=7).headers["x-tokenomy-cache"] == "miss"
    other_model = chat(cached, key, "Name a colour", model="premium-model")
    assert other_model.headers["x-tokenomy-cache"] == "miss"
    # Fields that do not change the answer do not split the entry.
    same = chat(cached, key, "Name a colour", user="someone-else")
    assert same.headers["x-tokenomy-cache"] == "hit-exact"


def test_no_hit_crosses_tenants(cached: Gateway) -> None:
    ours = cached.create_key(team="a", tenant="acme")
    theirs = cached.create_key(team="b", tenant="globex")
    assert chat(cached, ours, "Our secret plan?").headers["x-tokenomy-cache"] == "miss"
    assert chat(cached, theirs, "Our secret plan?").headers["x-tokenomy-cache"] == "miss"
    same_tenant = cached.create_key(team="c", tenant="acme")
    assert chat(cached, same_tenant, "Our secret plan?").headers["x-tokenomy-cache"] == "hit-exact"


def test_non_deterministic_requests_need_an_opt_in(cached: Gateway) -> None:
    key = cached.create_key(team="sampling")
    for _ in range(2):
        response = chat(cached, key, "Write a poem", temperature=0.8)
        assert "x-tokenomy-cache" not in response.headers
        assert event_of(cached, response)["cost_pico"] > 0
    no_temperature = {"temperature": None}
    response = chat(cached, key, "Write a poem", **no_temperature)  # the API default is 1
    assert "x-tokenomy-cache" not in response.headers
    opted = {"x-tokenomy-cache": "on"}
    assert chat(cached, key, "Haiku", opted, temperature=0.8).headers["x-tokenomy-cache"] == "miss"
    hit = chat(cached, key, "Haiku", opted, temperature=0.8)
    assert hit.headers["x-tokenomy-cache"] == "hit-exact"


def test_off_refresh_and_per_key_opt_out(cached: Gateway) -> None:
    key = cached.create_key(team="controls")
    chat(cached, key, "Controls?")
    bypass = chat(cached, key, "Controls?", {"x-tokenomy-cache": "off"})
    assert "x-tokenomy-cache" not in bypass.headers and event_of(cached, bypass)["cost_pico"] > 0
    refresh = chat(cached, key, "Controls?", {"x-tokenomy-cache": "refresh"})
    assert refresh.headers["x-tokenomy-cache"] == "miss"
    assert chat(cached, key, "Controls?").headers["x-tokenomy-cache"] == "hit-exact"
    bad = chat(cached, key, "Controls?", {"x-tokenomy-cache": "sometimes"})
    assert bad.status_code == 400 and "x-tokenomy-cache" in bad.json()["error"]["message"]
    opted_out = cached.create_key(team="controls", cache_opt_out=True)
    for _ in range(2):
        response = chat(cached, opted_out, "Controls?")
        assert "x-tokenomy-cache" not in response.headers
        assert event_of(cached, response)["cost_pico"] > 0


def test_a_cached_answer_replays_as_a_valid_stream(cached: Gateway) -> None:
    key = cached.create_key(team="stream")
    plain = chat(cached, key, "Stream me").json()
    client = openai.OpenAI(api_key=key, base_url=cached.base_url, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream me"}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-tokenomy-cache"] == "hit-exact"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain["choices"][0]["message"]["content"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain["usage"]["completion_tokens"]


def test_embeddings_are_cached(cached: Gateway) -> None:
    key = cached.create_key(team="embed")
    client = openai.OpenAI(api_key=key, base_url=cached.base_url, max_retries=0)
    first = client.embeddings.with_raw_response.create(model="embed-small", input="hello")
    second = client.embeddings.with_raw_response.create(model="embed-small", input="hello")
    assert first.headers["x-tokenomy-cache"] == "miss"
    assert second.headers["x-tokenomy-cache"] == "hit-exact"
    assert second.parse().data[0].embedding == first.parse().data[0].embedding


def test_admin_purge_by_tenant_and_model(cached: Gateway) -> None:
    acme = cached.create_key(team="p", tenant="purge-acme")
    globex = cached.create_key(team="p", tenant="purge-globex")
    for key in (acme, globex):
        chat(cached, key, "Purge me?")
        chat(cached, key, "Purge me?", model="premium-model")
    stats = cached.admin("GET", "/admin/cache").json()
    assert stats["enabled"] is True and stats["exact_entries"] >= 4
    removed = cached.admin("DELETE", "/admin/cache?tenant=purge-acme&model=gpt-4o-mini").json()
    assert removed["removed"] == 1
    assert chat(cached, acme, "Purge me?").headers["x-tokenomy-cache"] == "miss"
    premium = chat(cached, acme, "Purge me?", model="premium-model")
    assert premium.headers["x-tokenomy-cache"] == "hit-exact"
    assert chat(cached, globex, "Purge me?").headers["x-tokenomy-cache"] == "hit-exact"
    time.sleep(0.05)
    older = cached.admin("DELETE", "/admin/cache?older_than_s=0").json()
    assert older["removed"] >= 3
    assert chat(cached, globex, "Purge me?").headers["x-tokenomy-cache"] == "miss"
    bad = cached.admin("DELETE", "/admin/cache?older_than_s=-1")
    assert bad.status_code == 400


def test_a_streamed_answer_is_cached_for_plain_and_streamed_repeats(cached: Gateway) -> None:
    key = cached.create_key(team="stream-first")
    client = openai.OpenAI(api_key=key, base_url=cached.base_url, max_retries=0)
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Streamed first"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    with client.chat.completions.with_streaming_response.create(**body, stream=True) as response:
        assert response.headers["x-tokenomy-cache"] == "miss"
        streamed = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    plain = chat(cached, key, "Streamed first")
    assert plain.headers["x-tokenomy-cache"] == "hit-exact"
    answer = plain.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == streamed
    assert answer["usage"]["completion_tokens"] == 8
    again = client.chat.completions.create(**body, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in again if c.choices) == streamed


def test_an_answer_shaped_by_a_budget_is_not_cached_for_the_plain_request(cached: Gateway) -> None:
    key = cached.create_key(team="budgeted-cache")
    put = cached.admin(
        "PUT",
        "/admin/budgets/budgeted-cache",
        json={"scope": {"team": "budgeted-cache"}, "period": "month", "limit_usd": "10"},
    )
    assert put.status_code == 200, put.text
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "No output limit given"}],
        "temperature": 0,
    }
    for _ in range(2):  # the budget injects an output limit: this answer is not the key's
        response = cached.chat(key, body)
        assert response.status_code == 200, response.text
        assert "x-tokenomy-max-tokens-injected" in response.headers
        assert response.headers["x-tokenomy-cache"] == "miss"
