"""Reports answer from the coarsest exact source (hourly or per-minute rollups, or raw
events) and every source gives the same exact figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openai

from conftest import Gateway, MockUpstream, gateway_config, start_gateway, stop


def test_every_source_gives_the_same_exact_totals(gateway: Gateway) -> None:
    started = datetime.now(UTC)
    key = gateway.create_key(team="sources", department="audit")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    for index in range(12):
        client.chat.completions.create(
            model=["premium-model", "gpt-4o-mini", "llama-70b"][index % 3],
            messages=[{"role": "user", "content": f"item {index} " * (index + 1)}],
            max_tokens=3 + index,
        )
    day_start = started.replace(hour=0, minute=0, second=0, microsecond=0)
    hour_start = started.replace(minute=0, second=0, microsecond=0)
    if hour_start == day_start:
        hour_start -= timedelta(hours=1)
    minute_start = started.replace(second=0, microsecond=0)
    if minute_start == started.replace(minute=0, second=0, microsecond=0):
        minute_start -= timedelta(minutes=1)
    unaligned = started - timedelta(milliseconds=500)
    answers = {}
    for start in (day_start, hour_start, minute_start, unaligned):
        result = gateway.admin(
            "GET",
            "/admin/spend",
            params={"group_by": "model", "team": "sources", "from": start.isoformat()},
        ).json()
        answers[result["source"]] = result
    assert set(answers) == {"rollup_day", "rollup_hour", "rollup_minute", "events"}
    totals = {source: Decimal(result["total_cost_usd"]) for source, result in answers.items()}
    assert len(set(totals.values())) == 1 and totals["events"] > 0
    rows = {
        source: sorted((r["model"], r["requests"], r["cost_usd"]) for r in result["rows"])
        for source, result in answers.items()
    }
    assert rows["rollup_day"] == rows["rollup_hour"] == rows["rollup_minute"] == rows["events"]
    assert sum(r[1] for r in rows["events"]) == 12

    by_minute = gateway.admin(
        "GET", "/admin/spend", params={"group_by": "minute", "team": "sources"}
    ).json()
    assert by_minute["source"] == "rollup_minute"
    assert sum(r["requests"] for r in by_minute["rows"]) == 12


def test_requests_listing_and_detail(gateway: Gateway) -> None:
    key = gateway.create_key(team="listing")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "secret prompt text"}],
        max_tokens=4,
    )
    request_id = raw.headers["x-request-id"]
    listing = gateway.admin("GET", "/admin/requests", params={"team": "listing"}).json()["data"]
    assert [r["id"] for r in listing] == [request_id]
    detail = gateway.admin("GET", f"/admin/requests/{request_id}").json()
    assert detail["cost_usd"] == raw.headers["x-tokenomy-cost-usd"]
    assert detail["prompt"] is None and detail["completion"] is None  # privacy by default
    assert "secret prompt text" not in gateway.stored_text()
    missing = gateway.admin("GET", "/admin/requests/req_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "request_not_found"


def test_admin_api_requires_the_admin_key_and_documents_itself(gateway: Gateway) -> None:
    import httpx

    for headers in ({}, {"authorization": "Bearer wrong"}):
        response = httpx.get(gateway.url + "/admin/spend", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    spec = httpx.get(gateway.url + "/admin/openapi.json").json()
    assert {"/admin/keys", "/admin/spend", "/admin/requests"} <= set(spec["paths"])
    bad = gateway.admin("POST", "/admin/keys", json={"team": 5})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "team"
    unknown = gateway.admin("POST", "/admin/keys", json={"squad": "x"})
    assert unknown.status_code == 400 and "squad" in unknown.json()["error"]["message"]


def test_content_is_stored_only_when_the_deployment_turns_it_on(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    config = gateway_config(tmp_path / "ledger.db", mock_upstream, ledger={"store_content": True})
    gateway = start_gateway(tmp_path, config)
    try:
        key = gateway.create_key(team="auditors")
        client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        answer = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "keep this prompt"}],
            max_tokens=5,
        )
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "and this one"}],
                max_tokens=4,
                stream=True,
            )
            if chunk.choices
        )
        events = gateway.events()
        assert "keep this prompt" in events[0]["prompt"]
        assert events[0]["completion"] == answer.choices[0].message.content
        assert "and this one" in events[1]["prompt"] and events[1]["completion"] == streamed
    finally:
        stop(gateway.process)
