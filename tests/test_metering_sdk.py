"""Through the real openai SDK (sync, async, streaming, embeddings, responses): the ledger's
cost per team equals upstream-reported usage times the configured or genai-prices prices."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import genai_prices
import httpx
import openai
import pytest

from conftest import Gateway, MockUpstream

PRICES = {
    "premium-model": (Decimal("5.00"), Decimal("2.50"), Decimal("15.00")),
}


def self_hosted_per_mtok(gpu_hour: str, gpus: int, tokens_per_second: str) -> Decimal:
    per_mtok = Decimal(gpu_hour) * gpus / 3600 / Decimal(tokens_per_second) * 1_000_000
    return per_mtok.quantize(Decimal("0.000001"))


def expected_cost(model: str, prompt: int, cached: int, completion: int) -> Decimal:
    """The oracle: prices from the config file or straight from genai-prices."""
    if model in PRICES:
        fresh, cache, out = PRICES[model]
        return ((prompt - cached) * fresh + cached * cache + completion * out) / 1_000_000
    if model == "llama-70b":
        fresh = self_hosted_per_mtok("2.40", 2, "12000")
        out = self_hosted_per_mtok("2.40", 2, "800")
        return (prompt * fresh + completion * out) / 1_000_000
    ref, provider = {
        "gpt-4o-mini": ("gpt-4o-mini", "openai"),
        "embed-small": ("text-embedding-3-small", "openai"),
        "claude-sonnet": ("claude-sonnet-4-5", "anthropic"),
    }[model]
    usage = genai_prices.Usage(
        input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion
    )
    return genai_prices.calc_price(usage, model_ref=ref, provider_id=provider).total_price


def cached_of(usage: Any) -> int:
    details = getattr(usage, "prompt_tokens_details", None)
    return int(getattr(details, "cached_tokens", 0) or 0)


def long_prompt(rng: random.Random) -> str:
    words = ["budget", "token", "invoice", "model", "latency", "forecast", "cluster"]
    return " ".join(rng.choice(words) for _ in range(rng.choice([20, 80, 1500])))


def upstream_usage(
    mock: MockUpstream, model: str, messages: list[dict[str, str]], max_tokens: int
) -> Any:
    """What the provider reports for a request (the mock is deterministic)."""
    client = openai.OpenAI(base_url=mock.base_url, api_key="unused")
    return client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens
    ).usage


def test_mixed_run_costs_are_exact_per_team(gateway: Gateway, mock_upstream: MockUpstream) -> None:
    teams = ["support", "research", "sales"]
    keys = {
        team: gateway.create_key(team=team, department=f"dept-{team}", user=f"{team}-lead")
        for team in teams
    }
    expected: dict[str, Decimal] = defaultdict(Decimal)
    requests: dict[str, int] = defaultdict(int)
    rng = random.Random(7)
    chat_models = ["premium-model", "gpt-4o-mini", "llama-70b", "claude-sonnet"]
    targets = {
        "premium-model": "mock-large",
        "gpt-4o-mini": "gpt-4o-mini",
        "llama-70b": "llama-3.1-70b",
    }

    def charge(team: str, model: str, usage: Any) -> None:
        expected[team] += expected_cost(
            model, usage.prompt_tokens, cached_of(usage), usage.completion_tokens or 0
        )
        requests[team] += 1

    # Sync: plain and streamed chat with usage, embeddings.
    for index in range(120):
        team = teams[index % 3]
        client = openai.OpenAI(base_url=gateway.base_url, api_key=keys[team], max_retries=0)
        model = chat_models[index % len(chat_models)]
        messages = [{"role": "user", "content": long_prompt(rng)}]
        max_tokens = rng.randint(1, 40)
        if index % 4 == 0:
            stream = client.chat.completions.create(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            assert chunks[-1].usage is not None and chunks[-1].choices == []
            charge(team, model, chunks[-1].usage)
        elif index % 4 == 1 and model in targets:
            # A stream without include_usage: the client gets no usage chunk, the gateway
            # still bills what the provider reports for this very request.
            stream = client.chat.completions.create(
                model=model, messages=messages, max_tokens=max_tokens, stream=True
            )
            chunks = list(stream)
            assert all(chunk.usage is None for chunk in chunks)
            assert chunks[-1].choices[0].finish_reason is not None
            charge(team, model, upstream_usage(mock_upstream, targets[model], messages, max_tokens))
        elif index % 4 == 2:
            response = client.embeddings.create(model="embed-small", input=[long_prompt(rng), "hi"])
            expected[team] += expected_cost("embed-small", response.usage.prompt_tokens, 0, 0)
            requests[team] += 1
        else:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=messages, max_tokens=max_tokens
            )
            completion = raw.parse()
            charge(team, model, completion.usage)
            assert raw.headers["x-tokenomy-model"] == model
            assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == expected_cost(
                model,
                completion.usage.prompt_tokens,
                cached_of(completion.usage),
                completion.usage.completion_tokens,
            )
            assert raw.headers["x-request-id"].startswith("req_")

    # Async, concurrent: chat and the Responses API.
    async def async_run() -> list[tuple[str, str, Any]]:
        clients = {
            t: openai.AsyncOpenAI(base_url=gateway.base_url, api_key=k, max_retries=0)
            for t, k in keys.items()
        }
        semaphore = asyncio.Semaphore(16)

        async def one(index: int) -> tuple[str, str, Any]:
            team = teams[index % 3]
            model = ["premium-model", "gpt-4o-mini", "reasoner"][index % 3]
            async with semaphore:
                if index % 5 == 0:
                    response = await clients[team].responses.create(
                        model=model, input=f"Summarize request {index}", max_output_tokens=12
                    )
                    return team, model, response.usage
                completion = await clients[team].chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": f"question number {index}"}],
                    max_tokens=1 + index % 30,
                )
                return team, model, completion.usage

        return await asyncio.gather(*(one(i) for i in range(150)))

    PRICES["reasoner"] = (Decimal("1.10"), Decimal("1.10"), Decimal("4.40"))
    try:
        for team, model, usage in asyncio.run(async_run()):
            if hasattr(usage, "input_tokens"):  # Responses API usage
                cached = usage.input_tokens_details.cached_tokens
                expected[team] += expected_cost(
                    model, usage.input_tokens, cached, usage.output_tokens
                )
                requests[team] += 1
            else:
                charge(team, model, usage)
    finally:
        PRICES.pop("reasoner")

    report = gateway.admin("GET", "/admin/spend", params={"group_by": "team"}).json()
    by_team = {row["team"]: row for row in report["rows"]}
    assert set(by_team) == set(teams)
    for team in teams:
        assert Decimal(by_team[team]["cost_usd"]) == expected[team], team
        assert by_team[team]["requests"] == requests[team]
    assert Decimal(report["total_cost_usd"]) == sum(expected.values())
    assert sum(requests.values()) == 270

    # The raw events give the same figures as the rollups.
    detailed = gateway.admin("GET", "/admin/spend", params={"group_by": "team,endpoint"}).json()
    assert detailed["source"] == "events"
    assert Decimal(detailed["total_cost_usd"]) == Decimal(report["total_cost_usd"])


def test_reasoning_and_cached_tokens_are_recorded(gateway: Gateway) -> None:
    key = gateway.create_key(team="tokens-check")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    completion = client.chat.completions.create(
        model="reasoner", messages=[{"role": "user", "content": "word " * 1500}], max_tokens=20
    )
    assert completion.usage is not None
    details = completion.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens == 10
    assert cached_of(completion.usage) > 0
    row = next(e for e in gateway.events() if e["team"] == "tokens-check")
    assert row["reasoning_tokens"] == 10
    assert row["cache_read_tokens"] == cached_of(completion.usage)
    assert row["input_tokens"] == completion.usage.prompt_tokens
    assert row["output_tokens"] == 20


def test_models_lists_what_the_key_may_use(gateway: Gateway) -> None:
    everything = gateway.create_key(team="all")
    narrow = gateway.create_key(team="narrow", allowed_models=["gpt-4o-mini"])
    names = {
        m.id for m in openai.OpenAI(base_url=gateway.base_url, api_key=everything).models.list()
    }
    assert {"premium-model", "gpt-4o-mini", "claude-sonnet", "embed-small"} <= names
    narrow_client = openai.OpenAI(base_url=gateway.base_url, api_key=narrow, max_retries=0)
    assert [m.id for m in narrow_client.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.NotFoundError) as denied:
        narrow_client.chat.completions.create(
            model="premium-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.code == "model_not_found"


def test_workflow_and_tags_headers_attribute_spend(gateway: Gateway) -> None:
    key = gateway.create_key(team="attribution", tags={"cost-center": "cc-7"})
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    for workflow, count in (("triage", 3), ("summarize", 2)):
        for _ in range(count):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hello"}],
                max_tokens=5,
                extra_headers={"x-tokenomy-workflow": workflow, "x-tokenomy-tags": "feature=inbox"},
            )
    report = gateway.admin(
        "GET", "/admin/spend", params={"group_by": "workflow", "team": "attribution"}
    ).json()
    assert {row["workflow"]: row["requests"] for row in report["rows"]} == {
        "triage": 3,
        "summarize": 2,
    }
    by_tag = gateway.admin(
        "GET",
        "/admin/spend",
        params={"group_by": "tag:feature,tag:cost-center", "team": "attribution"},
    ).json()
    assert [(r["tag:feature"], r["tag:cost-center"], r["requests"]) for r in by_tag["rows"]] == [
        ("inbox", "cc-7", 5)
    ]


def test_provider_key_never_leaks(gateway: Gateway) -> None:
    key = gateway.create_key(team="leak-check")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    client.chat.completions.create(
        model="claude-sonnet", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(
            model="nowhere-model", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
    dump = httpx.get(
        gateway.url + "/admin/requests",
        params={"limit": 1000},
        headers={"authorization": "Bearer admin-secret"},
    ).text
    assert "sk-ant-test-secret" not in dump
    assert "sk-ant-test-secret" not in gateway.stored_text()


def test_completions_and_streamed_responses_are_metered(gateway: Gateway) -> None:
    key = gateway.create_key(team="other-endpoints")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    legacy = client.completions.create(model="gpt-4o-mini", prompt="Once upon a time", max_tokens=9)
    assert legacy.usage is not None and legacy.usage.completion_tokens == 9
    legacy_chunks = list(
        client.completions.create(
            model="gpt-4o-mini",
            prompt="Once upon a time",
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    legacy_usage = legacy_chunks[-1].usage
    assert legacy_usage is not None and legacy_usage.completion_tokens == 6

    events = list(
        client.responses.create(
            model="premium-model", input="Write one line", max_output_tokens=11, stream=True
        )
    )
    completed = [e for e in events if e.type == "response.completed"]
    assert len(completed) == 1 and completed[0].response.usage is not None
    usage = completed[0].response.usage
    assert usage.output_tokens == 11

    rows = [e for e in gateway.events() if e["team"] == "other-endpoints"]
    assert [(r["endpoint"], r["stream"], r["output_tokens"], r["estimated"]) for r in rows] == [
        ("completions", 0, 9, 0),
        ("completions", 1, 6, 0),
        ("responses", 1, 11, 0),
    ]
    expected = (
        expected_cost("gpt-4o-mini", legacy.usage.prompt_tokens, 0, 9)
        + expected_cost("gpt-4o-mini", legacy_usage.prompt_tokens, 0, 6)
        + expected_cost("premium-model", usage.input_tokens, 0, 11)
    )
    report = gateway.admin("GET", "/admin/spend", params={"team": "other-endpoints"}).json()
    assert Decimal(report["total_cost_usd"]) == expected
