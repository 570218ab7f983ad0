"""Property-based tests (hypothesis) of the numbers everything else rests on: usage
normalization, pricing and budget reservations."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenomy.budgets.store import CounterKey, Hold, MemoryBudgetStore, Refusal, ReserveLine
from tokenomy.money import MILLION, from_pico, to_pico
from tokenomy.pricing.sheet import PriceSheet
from tokenomy.usage import Usage, from_anthropic, from_openai_chat, from_openai_responses

COUNT = st.integers(min_value=0, max_value=10**9)
# What a provider might put where a count belongs: counts, and garbage.
REPORTED = st.one_of(
    COUNT,
    st.integers(max_value=-1),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(COUNT, max_size=2),
)


def details(key: str) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.text(max_size=3), st.fixed_dictionaries({key: REPORTED}))


def assert_consistent(usage: Usage) -> None:
    """Disjoint token classes, none negative, that add up to the whole."""
    classes = (usage.uncached_input_tokens, usage.cache_read_tokens, usage.cache_write_tokens)
    for value in (*classes, usage.input_tokens, usage.output_tokens, usage.reasoning_tokens):
        assert type(value) is int and value >= 0, usage
    assert sum(classes) == usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": REPORTED,
            "completion_tokens": REPORTED,
            "prompt_tokens_details": details("cached_tokens"),
            "completion_tokens_details": details("reasoning_tokens"),
        },
    )
)
def test_openai_chat_usage_is_always_consistent(report: dict[str, Any]) -> None:
    """Regression: cached_tokens above prompt_tokens gave negative uncached input, and
    ``true`` counted as one token."""
    assert_consistent(from_openai_chat(report))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": REPORTED,
            "output_tokens": REPORTED,
            "input_tokens_details": details("cached_tokens"),
            "output_tokens_details": details("reasoning_tokens"),
        },
    )
)
def test_openai_responses_usage_is_always_consistent(report: dict[str, Any]) -> None:
    assert_consistent(from_openai_responses(report))


@given(COUNT, COUNT, COUNT, COUNT, COUNT)
def test_openai_shapes_keep_cached_tokens_inside_the_prompt(
    prompt: int, cached: int, completion: int, reasoning: int, extra: int
) -> None:
    """Well-formed reports are taken as they are: cached ⊆ prompt, reasoning ⊆ output."""
    cached, reasoning = min(cached, prompt), min(reasoning, completion)
    chat = from_openai_chat(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    )
    assert chat == Usage(prompt, completion, cached, 0, reasoning)
    responses = from_openai_responses(
        {
            "input_tokens": prompt,
            "output_tokens": completion,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": extra,  # ignored: recomputed from the classes
        }
    )
    assert responses == chat


@given(COUNT, COUNT, COUNT, COUNT, COUNT)
def test_anthropic_input_excludes_cache_and_is_normalized_to_include_it(
    fresh: int, read: int, write: int, output: int, thinking: int
) -> None:
    usage = from_anthropic(
        {
            "input_tokens": fresh,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
            "output_tokens": output,
            "output_tokens_details": {"thinking_tokens": thinking},
        }
    )
    assert_consistent(usage)
    assert usage.uncached_input_tokens == fresh
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (read, write)
    assert usage.input_tokens == fresh + read + write
    assert usage.reasoning_tokens == min(thinking, output)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": REPORTED,
            "cache_read_input_tokens": REPORTED,
            "cache_creation_input_tokens": REPORTED,
            "output_tokens": REPORTED,
            "output_tokens_details": details("thinking_tokens"),
        },
    )
)
def test_anthropic_usage_is_always_consistent(report: dict[str, Any]) -> None:
    assert_consistent(from_anthropic(report))


# Prices as configured: USD per million tokens with up to six decimals.
PRICE = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)
OPTIONAL_PRICE = st.none() | PRICE


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    read, write, fresh = draw(COUNT), draw(COUNT), draw(COUNT)
    output = draw(COUNT)
    return Usage(fresh + read + write, output, read, write, draw(st.integers(0, output)))


@st.composite
def sheets(draw: st.DrawFn) -> PriceSheet:
    return PriceSheet(
        input_per_mtok=draw(PRICE),
        output_per_mtok=draw(PRICE),
        cached_input_per_mtok=draw(OPTIONAL_PRICE),
        cache_write_per_mtok=draw(OPTIONAL_PRICE),
        batch_discount=draw(st.decimals(min_value=0, max_value=1, places=2)),
    )


def plus(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cache_read_tokens + b.cache_read_tokens,
        a.cache_write_tokens + b.cache_write_tokens,
        a.reasoning_tokens + b.reasoning_tokens,
    )


@given(sheets(), usages(), usages())
def test_cost_is_additive_over_usage(sheet: PriceSheet, a: Usage, b: Usage) -> None:
    """Two requests cost what one request with both usages costs, to the pico-dollar and
    exactly in Decimal (no float anywhere)."""
    assert sheet.cost(plus(a, b)) == sheet.cost(a) + sheet.cost(b)
    assert sheet.cost_pico(plus(a, b)) == sheet.cost_pico(a) + sheet.cost_pico(b)
    assert isinstance(sheet.cost(a), Decimal)


@given(sheets(), usages(), usages())
def test_cost_is_monotone_in_every_token_class(sheet: PriceSheet, a: Usage, more: Usage) -> None:
    assert sheet.cost(plus(a, more)) >= sheet.cost(a) >= 0
    assert sheet.cost_pico(plus(a, more)) >= sheet.cost_pico(a) >= 0


@given(sheets(), usages())
def test_cost_is_exact_and_pico_agrees_with_decimal(sheet: PriceSheet, usage: Usage) -> None:
    """Six-decimal prices per million tokens make every cost a whole number of pico-dollars:
    the integer fast path and the Decimal path agree, and nothing is rounded away."""
    cost = sheet.cost(usage)
    read = (
        sheet.input_per_mtok if sheet.cached_input_per_mtok is None else sheet.cached_input_per_mtok
    )
    write = (
        sheet.input_per_mtok if sheet.cache_write_per_mtok is None else sheet.cache_write_per_mtok
    )
    by_hand = (
        usage.uncached_input_tokens * sheet.input_per_mtok
        + usage.cache_read_tokens * read
        + usage.cache_write_tokens * write
        + usage.output_tokens * sheet.output_per_mtok
    ) / MILLION
    assert cost == by_hand
    assert sheet.cost_pico(usage) == to_pico(cost)
    assert from_pico(sheet.cost_pico(usage)) == cost


@given(sheets(), usages())
def test_batch_price_is_the_discount_off_the_list_price(sheet: PriceSheet, usage: Usage) -> None:
    list_price = sheet.cost(usage)
    batch = sheet.cost(usage, batch=True)
    assert batch == list_price * (1 - sheet.batch_discount)
    assert 0 <= batch <= list_price
    assert sheet.cost_pico(usage, batch=True) == to_pico(batch)


KEYS: list[CounterKey] = [("team", 0), ("dept", 0), ("org", 0)]


@st.composite
def reservation_scripts(draw: st.DrawFn) -> tuple[dict[CounterKey, int], list[Any]]:
    """Limits per counter and a script of reserves (which counters, how much) and settles
    (which open hold, what fraction of it was spent)."""
    limits = {key: draw(st.integers(0, 10_000)) for key in KEYS}
    steps = draw(
        st.lists(
            st.one_of(
                st.tuples(
                    st.just("reserve"),
                    st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
                    st.integers(0, 4_000),
                    st.integers(0, 500),
                ),
                st.tuples(st.just("settle"), st.integers(0, 50), st.fractions(0, 1)),
            ),
            max_size=40,
        )
    )
    return limits, steps


TOKEN_LIMITS: dict[CounterKey, int | None] = {
    ("team", 0): 1_500,
    ("dept", 0): None,
    ("org", 0): 4_000,
}


@settings(max_examples=300)
@given(reservation_scripts())
def test_reservations_never_overshoot_and_settle_back_to_zero(
    script: tuple[dict[CounterKey, int], list[Any]],
) -> None:
    limits, steps = script
    asyncio.run(run_script(limits, steps))


async def run_script(limits: dict[CounterKey, int], steps: list[Any]) -> None:
    store = MemoryBudgetStore()
    open_holds: list[Hold] = []
    spent = dict.fromkeys(KEYS, 0)
    for step in steps:
        before = {key: await store.counter(key) for key in KEYS}
        if step[0] == "reserve":
            _, keys, pico, tokens = step
            lines = [ReserveLine(key, limits[key], TOKEN_LIMITS[key]) for key in keys]
            result = await store.reserve(lines, pico, tokens)
            after = {key: await store.counter(key) for key in KEYS}
            if isinstance(result, Refusal):  # none reserved
                assert after == before
                assert result.key in keys
                room = limits[result.key] - before[result.key].spent_pico
                assert result.available_pico == max(room - before[result.key].reserved_pico, 0)
                counter, token_limit = before[result.key], TOKEN_LIMITS[result.key]
                assert counter.spent_pico + counter.reserved_pico + pico > limits[result.key] or (
                    token_limit is not None
                    and counter.spent_tokens + counter.reserved_tokens + tokens > token_limit
                )
            else:  # all reserved
                open_holds.append(result)
                for key in KEYS:
                    held = key in keys
                    assert after[key].reserved_pico == before[key].reserved_pico + pico * held
                    assert after[key].reserved_tokens == before[key].reserved_tokens + tokens * held
                for key in keys:  # there was room on every counter
                    assert before[key].spent_pico + before[key].reserved_pico + pico <= limits[key]
        elif open_holds:
            _, index, fraction = step
            hold = open_holds.pop(index % len(open_holds))
            actual = int(hold.pico * fraction)
            await store.settle(hold, actual, int(hold.tokens * fraction))
            for key in hold.keys:
                spent[key] += actual
        for key in KEYS:
            counter = await store.counter(key)
            assert counter.reserved_pico >= 0 and counter.reserved_tokens >= 0
            assert counter.spent_pico + counter.reserved_pico <= limits[key]
            token_limit = TOKEN_LIMITS[key]
            if token_limit is not None:
                assert counter.spent_tokens + counter.reserved_tokens <= token_limit
    for hold in open_holds:  # whatever was left open is released (a failed request)
        await store.settle(hold, 0, 0)
    for key in KEYS:
        counter = await store.counter(key)
        assert counter.reserved_pico == 0 and counter.reserved_tokens == 0
        assert counter.spent_pico == spent[key]
