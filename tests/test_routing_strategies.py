"""Cascade, priority and per-team route variants, budget downgrades, and the savings the
ledger records for each: savings = the baseline model's price for the same usage minus
what was charged, summed by `tokenomy report --savings`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, MockUpstream, gateway_config, start_gateway, stop

CHEAP = {"input_per_mtok": "0.10", "output_per_mtok": "0.40"}
STRONG = {"input_per_mtok": "5.00", "output_per_mtok": "15.00"}
PICO = Decimal(10) ** 12


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    tmp_path: Path = tmp_path_factory.mktemp("strategies")
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    base = mock_upstream.base_url
    # "terse" models answer in 3 tokens (finish: stop); "verbose" ones run into max_tokens.
    config["upstreams"]["terse"] = {
        "base_url": base,
        "headers": {"x-mock-completion-tokens": "3"},
    }
    config["upstreams"]["verbose"] = {
        "base_url": base,
        "headers": {"x-mock-completion-tokens": "50"},
    }
    config["models"] += [
        {"name": "cheap-terse", "upstream": "terse", "upstream_model": "s", "price": CHEAP},
        {"name": "cheap-verbose", "upstream": "verbose", "upstream_model": "s", "price": CHEAP},
        {
            "name": "strong-terse",
            "upstream": "terse",
            "upstream_model": "l",
            "price": STRONG,
            "tier": "premium",
            "downgrade": {"commodity": "cheap-terse"},
        },
    ]
    config["routes"] = {
        "frugal": {"strategy": "cascade", "models": ["cheap-terse", "strong-terse"]},
        "frugal-escalates": {"strategy": "cascade", "models": ["cheap-verbose", "strong-terse"]},
        "smart": {
            "strategy": "fixed",
            "model": "strong-terse",
            "by_priority": {
                "deferrable": {
                    "strategy": "fixed",
                    "model": "cheap-terse",
                    "baseline": "strong-terse",
                }
            },
            "overrides": [
                {
                    "match": {"team": "research"},
                    "route": {"strategy": "cheapest-capable", "models": ["cheap-verbose"]},
                }
            ],
        },
    }
    gateway = start_gateway(tmp_path, config)
    yield gateway
    stop(gateway.process)


def ask(
    gateway: Gateway, key: str, model: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    payload.update(body)
    return gateway.chat(key, payload, headers)


def report(gateway: Gateway, *args: str) -> str:
    """What `tokenomy report` prints for this gateway's ledger."""
    command = [sys.executable, "-m", "tokenomy", "report", "--config", str(gateway.config_path)]
    return subprocess.run([*command, *args], capture_output=True, text=True, check=True).stdout


def price_of(price: dict[str, str], row: Any) -> Decimal:
    """The oracle: usage x the configured price, in dollars."""
    return (
        Decimal(row["input_tokens"]) * Decimal(price["input_per_mtok"])
        + Decimal(row["output_tokens"]) * Decimal(price["output_per_mtok"])
    ) / 10**6


def test_cascade_keeps_a_good_cheap_answer_and_books_the_savings(routed: Gateway) -> None:
    key = routed.create_key(team="cascade-ok")
    response = ask(routed, key, "frugal")
    assert response.status_code == 200, response.text
    assert response.headers["x-tokenomy-model"] == "cheap-terse"
    assert response.headers["x-tokenomy-cascade-steps"] == "0"
    [event] = [e for e in routed.events() if e["team"] == "cascade-ok"]
    assert (event["strategy"], event["baseline_model"]) == ("cascade", "strong-terse")
    cost = Decimal(event["cost_pico"]) / PICO
    assert cost == price_of(CHEAP, event)
    assert Decimal(event["saved_pico"]) / PICO == price_of(STRONG, event) - cost > 0


def test_cascade_escalates_a_truncated_answer_and_charges_both_calls(routed: Gateway) -> None:
    key = routed.create_key(team="cascade-up")
    response = ask(routed, key, "frugal-escalates")
    assert response.status_code == 200, response.text
    assert response.headers["x-tokenomy-model"] == "strong-terse"
    assert response.headers["x-tokenomy-cascade-steps"] == "1"
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    events = sorted(
        (e for e in routed.events() if e["team"] == "cascade-up"), key=lambda e: e["id"]
    )
    assert len(events) == 2
    main, attempt = events  # "req_x" sorts before "req_x-1"
    assert attempt["id"] == main["id"] + "-1"
    assert attempt["model"] == "cheap-verbose" and attempt["output_tokens"] == 50
    assert "rejected(finish_reason=length)" in attempt["route_reason"]
    assert attempt["saved_pico"] == -attempt["cost_pico"] < 0  # cascading cost this much
    assert main["model"] == "strong-terse" and main["saved_pico"] == 0
    header_cost = Decimal(response.headers["x-tokenomy-cost-usd"])
    assert header_cost == Decimal(main["cost_pico"]) / PICO == price_of(STRONG, main)
    budget = routed.admin(
        "PUT",
        "/admin/budgets/cascade-up",
        json={"scope": {"team": "cascade-up"}, "period": "month", "limit_usd": "10"},
    )
    assert budget.status_code == 200, budget.text
    spent = Decimal(budget.json()["spent_usd"])
    assert spent == (Decimal(main["cost_pico"]) + Decimal(attempt["cost_pico"])) / PICO


def test_a_cascaded_stream_replays_as_valid_sse(routed: Gateway) -> None:
    key = routed.create_key(team="cascade-stream")
    client = openai.OpenAI(api_key=key, base_url=routed.base_url, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="frugal-escalates",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    plain = ask(routed, key, "frugal-escalates").json()
    assert text == plain["choices"][0]["message"]["content"]  # the strong model's answer


def test_no_budget_room_for_the_strong_model_keeps_the_cheap_answer(routed: Gateway) -> None:
    key = routed.create_key(team="cascade-poor")
    put = routed.admin(
        "PUT",
        "/admin/budgets/poor-strong",
        json={
            "scope": {"team": "cascade-poor", "model": "strong-terse"},
            "period": "month",
            "limit_usd": "0.000001",
        },
    )
    assert put.status_code == 200, put.text
    response = ask(routed, key, "frugal-escalates")
    assert response.status_code == 200, response.text
    assert response.headers["x-tokenomy-model"] == "cheap-verbose"
    assert response.headers["x-tokenomy-cascade-stopped"] == "budget"
    [event] = [e for e in routed.events() if e["team"] == "cascade-poor"]
    assert event["model"] == "cheap-verbose" and event["status"] == 200
    state = routed.admin("GET", "/admin/budgets/poor-strong").json()
    assert Decimal(state["reserved_usd"]) == 0  # the refused hold left nothing behind


def test_priority_and_team_variants_pick_their_own_model(routed: Gateway) -> None:
    key = routed.create_key(team="product")
    assert ask(routed, key, "smart").headers["x-tokenomy-model"] == "strong-terse"
    deferred = ask(routed, key, "smart", headers={"x-tokenomy-priority": "deferrable"})
    assert deferred.headers["x-tokenomy-model"] == "cheap-terse"
    research = routed.create_key(team="research")
    assert ask(routed, research, "smart").headers["x-tokenomy-model"] == "cheap-verbose"
    events = [e for e in routed.events() if e["team"] == "product"]
    by_model = {e["model"]: e for e in events}
    assert by_model["strong-terse"]["saved_pico"] == 0
    cheap = by_model["cheap-terse"]
    assert cheap["baseline_model"] == "strong-terse"
    assert Decimal(cheap["saved_pico"]) / PICO == price_of(STRONG, cheap) - price_of(CHEAP, cheap)


def test_a_budget_downgrade_books_savings_against_the_model_asked_for(routed: Gateway) -> None:
    key = routed.create_key(team="downgraded")
    put = routed.admin(
        "PUT",
        "/admin/budgets/downgraded",
        json={
            "scope": {"team": "downgraded"},
            "period": "month",
            "limit_usd": "10",
            "thresholds": [
                {
                    "at": "0.000001",
                    "action": "downgrade",
                    "from_tier": "premium",
                    "to_tier": "commodity",
                }
            ],
        },
    )
    assert put.status_code == 200, put.text
    first = ask(routed, key, "strong-terse")  # spends past the (tiny) threshold
    assert first.headers["x-tokenomy-model"] == "strong-terse"
    response = ask(routed, key, "strong-terse")
    assert response.headers["x-tokenomy-model"] == "cheap-terse"
    event = next(e for e in routed.events() if e["id"] == response.headers["x-request-id"])
    assert (event["strategy"], event["baseline_model"]) == ("budget_downgrade", "strong-terse")
    assert Decimal(event["saved_pico"]) / PICO == price_of(STRONG, event) - price_of(CHEAP, event)


def test_report_savings_sums_the_ledger(routed: Gateway) -> None:
    key = routed.create_key(team="report-savings")
    for _ in range(3):
        assert ask(routed, key, "frugal").status_code == 200
    assert ask(routed, key, "frugal-escalates").status_code == 200
    savings = ("--savings", "--where", "team=report-savings")
    result = report(routed, *savings, "--by", "strategy,model", "--format", "json")
    found = json.loads(result)
    events = [e for e in routed.events() if e["team"] == "report-savings"]
    saved = sum(Decimal(e["saved_pico"]) for e in events) / PICO
    cost = sum(Decimal(e["cost_pico"]) for e in events) / PICO
    assert Decimal(found["total_saved_usd"]) == saved > 0
    assert Decimal(found["total_counterfactual_cost_usd"]) == cost + saved
    rows = {(r["strategy"], r["model"]): r for r in found["rows"]}
    assert set(rows) == {
        ("cascade", "cheap-terse"),
        ("cascade", "cheap-verbose"),
        ("cascade", "strong-terse"),
    }
    assert Decimal(rows[("cascade", "cheap-verbose")]["saved_usd"]) < 0
    table = report(routed, *savings)
    assert "saved: $" in table and "cascade" in table
    overview = routed.admin("GET", "/ui/api/overview").json()
    month = routed.admin("GET", "/admin/spend?period=this-month").json()
    assert overview["savings"]["total_usd"] == month["total_saved_usd"]
    assert Decimal(month["total_saved_usd"]) > 0
    metrics = routed.admin("GET", "/metrics").text
    line = next(
        row
        for row in metrics.splitlines()
        if row.startswith("tokenomy_saved_usd_total{")
        and 'team="report-savings"' in row
        and 'model="cheap-terse"' in row
    )
    expected = float(rows[("cascade", "cheap-terse")]["saved_usd"])
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(expected, rel=1e-12)  # float samples
