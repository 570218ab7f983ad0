"""``GET /metrics`` after real traffic through the openai SDK: token and cost counters equal
the ledger, GenAI histograms count every request, budget gauges follow the budgets."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN_KEY, Gateway, MockUpstream, gateway_config, start_gateway, stop

TEAMS = ("support", "research")
CHAT_MODELS = ("premium-model", "gpt-4o-mini", "llama-70b", "claude-sonnet", "reasoner")
LONG = " ".join(["invoice budget token"] * 500)  # >= 1024 tokens: the mock reports cache reads


def drive_traffic(gateway: Gateway) -> None:
    """Chat (plain, streamed, cached, reasoning), completions, embeddings and a failure,
    for two teams."""
    for team in TEAMS:
        key = gateway.create_key(team=team, project="p1", environment="prod")
        client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        for model in CHAT_MODELS:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"hello {team}"}], max_tokens=12
            )
        client.chat.completions.create(
            model="premium-model", messages=[{"role": "user", "content": LONG}], max_tokens=8
        )
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream please"}],
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert sum(1 for _ in stream) > 1
        client.completions.create(model="reasoner", prompt="think", max_tokens=10)
        client.embeddings.create(model="embed-small", input=["one", "two three"])
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(
                model="broken-model", messages=[{"role": "user", "content": "x"}], max_tokens=5
            )


def scrape(gateway: Gateway, **headers: str) -> dict[str, Any]:
    response = httpx.get(gateway.url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(
    families: dict[str, Any], family: str, sample: str
) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for s in families[family].samples if s.name == sample]


def ledger_by_team_model(db: Path) -> dict[tuple[str, str], tuple[int, ...]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT team, model, SUM(cost_pico), "
            "SUM(input_tokens - cache_read_tokens - cache_write_tokens), SUM(cache_read_tokens), "
            "SUM(cache_write_tokens), SUM(output_tokens), SUM(reasoning_tokens) "
            "FROM events GROUP BY team, model"
        ).fetchall()
    finally:
        conn.close()
    return {(row[0], row[1]): tuple(int(v) for v in row[2:]) for row in rows}


@pytest.fixture(scope="module")
def traffic(gateway: Gateway) -> Gateway:
    budget = {"scope": {"team": "support"}, "period": "month", "limit_usd": "50.00"}
    assert gateway.admin("PUT", "/admin/budgets/support-month", json=budget).status_code == 200
    drive_traffic(gateway)
    return gateway


def test_token_and_cost_counters_equal_the_ledger(traffic: Gateway) -> None:
    families = scrape(traffic)
    ledger = ledger_by_team_model(traffic.db_path)
    assert {k[0] for k in ledger} == set(TEAMS) and len(ledger) >= 2 * 7
    cost = {
        (labels["team"], labels["model"]): value
        for labels, value in samples(families, "tokenomy_cost_usd", "tokenomy_cost_usd_total")
    }
    tokens: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for labels, value in samples(families, "tokenomy_tokens", "tokenomy_tokens_total"):
        tokens[(labels["team"], labels["model"])][labels["token_type"]] = value
    reasoning = {
        (labels["team"], labels["model"]): value
        for labels, value in samples(
            families, "tokenomy_reasoning_tokens", "tokenomy_reasoning_tokens_total"
        )
    }
    assert set(cost) == set(ledger) == set(tokens)
    for key, (pico, fresh, cached, written, output, thought) in ledger.items():
        assert cost[key] == pytest.approx(pico / 1e12, rel=1e-12, abs=1e-18), key
        by_type = tokens[key]
        assert by_type == {
            "input": fresh,
            "cached_input": cached,
            "cache_write": written,
            "output": output,
        }, key
        assert reasoning[key] == thought, key
    # The traffic exercised every class that the mock reports.
    assert sum(t["cached_input"] for t in tokens.values()) > 0
    assert sum(reasoning.values()) > 0
    assert sum(pico for pico, *_ in ledger.values()) > 0


def test_request_counter_by_status_equals_the_ledger(traffic: Gateway) -> None:
    families = scrape(traffic)
    counted = {
        (labels["team"], labels["model"], labels["status"]): value
        for labels, value in samples(families, "tokenomy_requests", "tokenomy_requests_total")
    }
    expected: dict[tuple[str, str, str], int] = defaultdict(int)
    for event in traffic.events():
        expected[(event["team"], event["model"], str(event["status"]))] += 1
    assert counted == expected
    assert any(status == "502" for _, _, status in counted)


def test_gen_ai_histograms_cover_every_request(traffic: Gateway) -> None:
    families = scrape(traffic)
    events = traffic.events()
    usage = families["gen_ai_client_token_usage"]
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for sample in usage.samples:
        if sample.name.endswith("_sum"):
            sums[sample.labels["gen_ai_token_type"]] += sample.value
        elif sample.name.endswith("_count"):
            counts[sample.labels["gen_ai_token_type"]] += sample.value
    assert sums["input"] == sum(e["input_tokens"] for e in events)
    assert sums["output"] == sum(e["output_tokens"] for e in events)
    assert counts["input"] == sum(1 for e in events if e["input_tokens"])
    assert counts["output"] == sum(1 for e in events if e["output_tokens"])
    operations = {s.labels["gen_ai_operation_name"] for s in usage.samples}
    assert operations == {"chat", "text_completion", "embeddings"}
    providers = {s.labels["gen_ai_provider_name"] for s in usage.samples}
    assert providers == {"openai", "anthropic"}

    durations = samples(
        families,
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_operation_duration_seconds_count",
    )
    assert sum(value for _, value in durations) == len(events)
    errors = {labels["error_type"] for labels, value in durations if value}
    assert errors == {"", "502"}
    total_s = sum(
        value
        for _, value in samples(
            families,
            "gen_ai_client_operation_duration_seconds",
            "gen_ai_client_operation_duration_seconds_sum",
        )
    )
    assert total_s == pytest.approx(sum(e["latency_ms"] for e in events) / 1000)
    ttft = samples(
        families,
        "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_server_time_to_first_token_seconds_count",
    )
    assert sum(value for _, value in ttft) == sum(1 for e in events if e["ttft_ms"] is not None) > 0


def test_budget_gauges_and_in_flight_reservations(traffic: Gateway) -> None:
    state = traffic.admin("GET", "/admin/budgets/support-month").json()
    families = scrape(traffic)

    def gauge(name: str) -> float:
        values = [
            v for labels, v in samples(families, name, name) if labels["budget"] == "support-month"
        ]
        assert len(values) == 1, name
        return values[0]

    assert gauge("tokenomy_budget_fraction_used") == pytest.approx(state["fraction_used"])
    assert gauge("tokenomy_budget_limit_usd") == 50.0
    spent = sum(
        pico
        for (team, _), (pico, *_) in ledger_by_team_model(traffic.db_path).items()
        if team == "support"
    )
    assert gauge("tokenomy_budget_spent_usd") == pytest.approx(spent / 1e12)
    assert gauge("tokenomy_budget_reserved_usd") == 0.0

    # A slow stream in flight holds its worst case on the budget until it settles.
    key = traffic.create_key(team="support")
    client = openai.OpenAI(base_url=traffic.base_url, api_key=key, max_retries=0)

    def slow() -> None:
        for _ in client.chat.completions.create(
            model="slow-model",
            messages=[{"role": "user", "content": "take your time"}],
            max_tokens=30,
            stream=True,
        ):
            pass

    worker = threading.Thread(target=slow)
    worker.start()
    held = 0.0
    deadline = time.monotonic() + 5
    while held == 0.0 and time.monotonic() < deadline:
        families = scrape(traffic)
        held = gauge("tokenomy_budget_reserved_usd")
        time.sleep(0.05)
    worker.join(timeout=30)
    assert held > 0
    assert gauge("tokenomy_budget_reserved_tokens") > 0
    families = scrape(traffic)
    assert gauge("tokenomy_budget_reserved_usd") == 0.0


@pytest.fixture
def private_gateway(tmp_path: Path, mock_upstream: MockUpstream) -> Iterator[Gateway]:
    config = gateway_config(
        tmp_path / "ledger.db", mock_upstream, telemetry={"metrics_public": False}
    )
    gw = start_gateway(tmp_path, config)
    yield gw
    stop(gw.process)


def test_metrics_can_require_the_admin_key(private_gateway: Gateway) -> None:
    url = private_gateway.url + "/metrics"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_key"
    families = scrape(private_gateway, authorization=f"Bearer {ADMIN_KEY}")
    assert "gen_ai_client_token_usage" in families


def test_openmetrics_is_served_when_asked(traffic: Gateway) -> None:
    response = httpx.get(
        traffic.url + "/metrics", headers={"accept": "application/openmetrics-text"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
