"""The demo traffic model against the trace it was fitted to.

Trace: Azure Public Dataset "AzureLLMInferenceTrace_code" (Patel et al., "Splitwise:
Efficient generative LLM inference using phase splitting", ISCA 2024), CC-BY 4.0.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from datetime import datetime
from pathlib import Path

import pytest

from tokenomy import tokens
from tokenomy.demo.traffic import RequestShape, TrafficModel, prompt_of_tokens

TRACE = Path(__file__).parents[1] / ".." / "shared" / "data" / "traces" / "azure_llm_2023_code.csv"
needs_trace = pytest.mark.skipif(
    not TRACE.exists(),
    reason=f"real trace not available at {TRACE} (the shared data folder is absent)",
)


def _quantile(values: list[int] | list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    i = math.floor(pos)
    j = min(i + 1, len(ordered) - 1)
    return ordered[i] + (ordered[j] - ordered[i]) * (pos - i)


def _trace() -> tuple[list[float], list[int], list[int]]:
    times: list[float] = []
    context: list[int] = []
    generated: list[int] = []
    with TRACE.open(newline="") as handle:
        for row in csv.DictReader(handle):
            head, _, frac = row["TIMESTAMP"].strip().partition(".")
            times.append(datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}").timestamp())
            context.append(int(row["ContextTokens"]))
            generated.append(int(row["GeneratedTokens"]))
    return sorted(times), context, generated


@needs_trace
def test_sizes_reproduce_trace_median_and_p90() -> None:
    _, context, generated = _trace()
    model = TrafficModel()
    rng = random.Random(7)
    shapes = [model.sample(rng) for _ in range(20_000)]
    for name, data, sampled in (
        ("context", context, [s.context_tokens for s in shapes]),
        ("generated", generated, [s.generated_tokens for s in shapes]),
    ):
        assert min(sampled) >= min(data) and max(sampled) <= max(data), name
        for q in (0.5, 0.9):
            want, got = _quantile(data, q), _quantile(sampled, q)
            assert abs(got / want - 1) <= 0.15, f"{name} p{round(q * 100)}: {got} vs {want}"


@needs_trace
def test_arrivals_reproduce_trace_rate_and_burstiness() -> None:
    times, _, _ = _trace()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    observed_rate = len(gaps) / sum(gaps)
    model = TrafficModel()
    assert abs(model.mean_rate_per_s / observed_rate - 1) <= 0.10

    rng = random.Random(11)
    sampled = [model.interarrival_s(rng) for _ in range(20_000)]
    for q in (0.5, 0.9):
        want, got = _quantile(gaps, q), _quantile(sampled, q)
        assert abs(got / want - 1) <= 0.15, f"gap p{round(q * 100)}: {got} vs {want}"
    mean = sum(sampled) / len(sampled)
    cv = math.sqrt(sum((g - mean) ** 2 for g in sampled) / len(sampled)) / mean
    assert cv > 5  # far burstier than Poisson (cv = 1); the trace's is about 13


def test_rate_scale_and_busy_only() -> None:
    model = TrafficModel()
    a = model.interarrival_s(random.Random(3))
    b = model.interarrival_s(random.Random(3), rate_scale=4.0)
    assert b == pytest.approx(a / 4.0)
    with pytest.raises(ValueError):
        model.interarrival_s(random.Random(3), rate_scale=0.0)
    busy = TrafficModel(idle_gaps=False)
    assert busy.mean_rate_per_s > 2 * model.mean_rate_per_s
    rng = random.Random(5)
    assert max(busy.interarrival_s(rng) for _ in range(5_000)) <= 10.0


def test_seeded_streams_are_reproducible() -> None:
    model = TrafficModel()

    def stream(seed: int) -> list[tuple[RequestShape, float]]:
        rng = random.Random(seed)
        return [(model.sample(rng), model.interarrival_s(rng)) for _ in range(500)]

    assert stream(42) == stream(42)
    assert stream(42) != stream(43)
    assert prompt_of_tokens(300, random.Random(1)) == prompt_of_tokens(300, random.Random(1))
    shape = stream(42)[0][0]
    assert isinstance(shape.context_tokens, int) and isinstance(shape.generated_tokens, int)


@pytest.mark.parametrize("n", [10, 11, 17, 50, 99, 128, 500, 1_000, 2_047, 4_096, 7_437, 8_000])
def test_prompt_of_tokens_accuracy(n: int) -> None:
    text = prompt_of_tokens(n, random.Random(n))
    assert abs(tokens.count(text) - n) <= 0.02 * n
    assert text == text.strip() and "  " not in text


def test_prompt_of_tokens_random_lengths() -> None:
    rng = random.Random(2024)
    for _ in range(50):
        n = rng.randint(10, 8_000)
        assert abs(tokens.count(prompt_of_tokens(n, rng)) - n) <= 0.02 * n
    assert prompt_of_tokens(0, rng) == ""
