"""Anthropic's Messages API behind the gateway: clients speak OpenAI, usage is normalized
(Anthropic's input_tokens exclude cache reads) and priced from genai-prices' tiers."""

from __future__ import annotations

from decimal import Decimal

import genai_prices
import openai

from conftest import Gateway


def genai_cost(prompt: int, cached: int, completion: int) -> Decimal:
    usage = genai_prices.Usage(
        input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion
    )
    return genai_prices.calc_price(
        usage, model_ref="claude-sonnet-4-5", provider_id="anthropic"
    ).total_price


def test_plain_and_streamed_claude_calls_are_priced_exactly(gateway: Gateway) -> None:
    key = gateway.create_key(team="claude-users")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    long_context = "contract clause " * 800  # >= 1024 tokens: the mock reports cache reads
    raw = client.chat.completions.with_raw_response.create(
        model="claude-sonnet",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": long_context},
        ],
        max_tokens=25,
    )
    completion = raw.parse()
    usage = completion.usage
    assert usage is not None and completion.choices[0].message.content
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    assert cached and cached < usage.prompt_tokens  # prompt_tokens includes the cached part
    assert usage.completion_tokens == 25
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == genai_cost(
        usage.prompt_tokens, cached, 25
    )

    chunks = list(
        client.chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=7,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    final = chunks[-1].usage
    assert final is not None and final.completion_tokens == 7

    events = [e for e in gateway.events() if e["team"] == "claude-users"]
    assert [e["stream"] for e in events] == [0, 1]
    assert events[0]["cache_read_tokens"] == cached
    assert events[0]["input_tokens"] == usage.prompt_tokens
    assert events[1]["output_tokens"] == 7 and events[1]["estimated"] == 0
    report = gateway.admin("GET", "/admin/spend", params={"team": "claude-users"}).json()
    assert Decimal(report["total_cost_usd"]) == genai_cost(
        usage.prompt_tokens, cached, 25
    ) + genai_cost(final.prompt_tokens, 0, 7)


def test_untranslatable_request_names_the_param(gateway: Gateway) -> None:
    key = gateway.create_key(team="claude-users-2")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    try:
        client.chat.completions.create(
            model="claude-sonnet", messages=[{"role": "user", "content": "hi"}], n=3
        )
    except openai.BadRequestError as exc:
        assert exc.param == "n"
    else:
        raise AssertionError("n=3 cannot be served by Anthropic and must be refused")
