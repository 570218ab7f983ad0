"""The `learned` route end to end: the shipped router sends easy prompts to the cheap model
and hard ones to the strong model, the ledger records the reason and the savings
(counterfactual minus actual), and a filling budget shifts traffic to the cheap model."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, MockUpstream, gateway_config, start_gateway, stop

pytest.importorskip("sentence_transformers", reason="the embeddings extra is not installed")

WEAK = {"input_per_mtok": "0.60", "output_per_mtok": "0.60"}  # Mixtral-class
STRONG = {"input_per_mtok": "10.00", "output_per_mtok": "30.00"}  # GPT-4-Turbo-class
PICO = Decimal(10) ** 12
EASY = [
    "What is the capital of France?",
    "Which of these is a fruit?\nA. Carrot\nB. Apple\nC. Potato\nD. Onion\nAnswer:",
    "What color is the sky on a clear day?",
]
HARD = [
    "Let p = (1, 2, 5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.\nA. 8\nB. 2\nC. 24\n"
    "D. 120\nAnswer:",
    "Find the characteristic of the ring Z_3 x 3Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer:",
    "Statement 1 | Every integral domain has a field of quotients. Statement 2 | A polynomial "
    "of degree n over a ring can have at most n zeros counting multiplicity.\nA. True, True\n"
    "B. False, False\nC. True, False\nD. False, True\nAnswer:",
]


@pytest.fixture(scope="module")
def learned(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    tmp_path: Path = tmp_path_factory.mktemp("learned")
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    config["models"] += [
        {"name": "weak", "upstream": "mock", "upstream_model": "s", "price": WEAK},
        {"name": "strong", "upstream": "mock", "upstream_model": "l", "price": STRONG},
    ]
    route = {"strategy": "learned", "weak": "weak", "strong": "strong", "strong_share": 0.5}
    config["routes"] = {
        "auto": route,
        "thrifty": {**route, "budget_curve": [[0.0, 1.0], [0.1, 0.0]]},
    }
    gateway = start_gateway(tmp_path, config)
    yield gateway
    stop(gateway.process)


def ask(gateway: Gateway, key: str, prompt: str, model: str = "auto") -> httpx.Response:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 8,
    }
    response = gateway.chat(key, body)
    assert response.status_code == 200, response.text
    return response


def cost(price: dict[str, str], event: Any) -> Decimal:
    return (
        Decimal(event["input_tokens"]) * Decimal(price["input_per_mtok"])
        + Decimal(event["output_tokens"]) * Decimal(price["output_per_mtok"])
    ) / 10**6


def test_easy_prompts_go_cheap_hard_ones_strong_and_savings_are_exact(learned: Gateway) -> None:
    key = learned.create_key(team="learned")
    served = {}
    for prompt in EASY + HARD:
        response = ask(learned, key, prompt)
        score = float(response.headers["x-tokenomy-route-score"])
        cut = float(response.headers["x-tokenomy-route-threshold"])
        served[prompt] = (response.headers["x-tokenomy-model"], score, cut)
        side = "strong" if response.headers["x-tokenomy-model"] == "strong" else "weak"
        assert response.headers["x-tokenomy-route-reason"] == f"route:auto/learned:{side}"
        assert (score >= cut) == (side == "strong")
    assert [served[p][0] for p in EASY] == ["weak"] * len(EASY), served
    assert [served[p][0] for p in HARD] == ["strong"] * len(HARD), served
    events = [e for e in learned.events() if e["team"] == "learned"]
    assert len(events) == len(EASY) + len(HARD)
    for event in events:
        assert event["strategy"] == "learned" and event["baseline_model"] == "strong"
        actual = Decimal(event["cost_pico"]) / PICO
        counterfactual = cost(STRONG, event)
        assert actual == cost(WEAK if event["model"] == "weak" else STRONG, event)
        if event["model"] == "weak":
            assert Decimal(event["saved_pico"]) / PICO == counterfactual - actual > 0
        else:
            assert event["saved_pico"] == 0 and event["baseline_model"] == "strong"


def test_a_filling_budget_moves_hard_prompts_to_the_cheap_model(learned: Gateway) -> None:
    key = learned.create_key(team="thrifty")
    first = ask(learned, key, HARD[0], model="thrifty")
    assert first.headers["x-tokenomy-model"] == "strong"  # no budget yet: full share
    spent = Decimal(first.headers["x-tokenomy-cost-usd"])
    put = learned.admin(
        "PUT",
        "/admin/budgets/thrifty",
        json={"scope": {"team": "thrifty"}, "period": "month", "limit_usd": str(spent * 4)},
    )
    assert put.status_code == 200, put.text
    # A quarter of the budget is spent: past the curve's 10% point, the strong share is 0.
    again = ask(learned, key, HARD[0], model="thrifty")
    assert again.headers["x-tokenomy-model"] == "weak"
    assert float(again.headers["x-tokenomy-route-strong-share"]) == 0.0
