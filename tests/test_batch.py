"""The Batch API and deferred jobs, through the real openai SDK and real servers."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from conftest import (
    Gateway,
    JsonServer,
    MockUpstream,
    gateway_config,
    ledger_rows,
    start_gateway,
    stop,
)
from tokenomy.cli.main import cli

PREMIUM_BATCH_PRICE = {
    "input_per_mtok": "5.00",
    "output_per_mtok": "15.00",
    "batch_discount": "0.5",
}


def batch_config(db: Path, mock: MockUpstream, **batch: Any) -> dict[str, Any]:
    config = gateway_config(db, mock, batch={"lease_s": 1, "retry_s": 0.3, **batch})
    for model in config["models"]:
        if model["name"] == "premium-model":
            model["price"] = PREMIUM_BATCH_PRICE
    closed = datetime.now(UTC) + timedelta(hours=2)
    config["upstreams"]["night"] = {
        "base_url": mock.base_url,
        "batch_windows": [f"{closed:%H}:00-{(closed + timedelta(hours=1)):%H}:00"],
    }
    # Every answer takes 300 ms: lines are still running when a test acts.
    config["upstreams"]["lagging"] = {
        "base_url": mock.base_url,
        "headers": {"x-mock-latency-ms": "300"},
    }
    # A provider with its own Batch API: batches go there, done a second after submission.
    config["upstreams"]["provider"] = {
        "base_url": mock.base_url,
        "batch_api": True,
        "batch_poll_s": 0.2,
        "headers": {"x-mock-batch-seconds": "1"},
    }
    config["models"].append(
        {
            "name": "hosted-model",
            "upstream": "provider",
            "upstream_model": "mock-large",
            "price": PREMIUM_BATCH_PRICE,
        }
    )
    for name in ("night", "lagging"):
        config["models"].append(
            {
                "name": f"{name}-model",
                "upstream": name,
                "upstream_model": "mock-small",
                "price": {"input_per_mtok": "1.00", "output_per_mtok": "2.00"},
            }
        )
    return config


@pytest.fixture(scope="module")
def batch_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("batch")
    gw = start_gateway(tmp_path, batch_config(tmp_path / "ledger.db", mock_upstream))
    yield gw
    stop(gw.process)


def requests_file(n: int, model: str = "premium-model", max_tokens: int = 20) -> bytes:
    lines = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"question number {i}"}],
                "max_tokens": max_tokens,
            },
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def submit(client: openai.OpenAI, content: bytes) -> str:
    uploaded = client.files.create(file=("requests.jsonl", content), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly-eval"},
    )
    assert batch.status == "in_progress" and batch.request_counts
    assert batch.request_counts.total == content.count(b"\n")
    return batch.id


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finished(client: openai.OpenAI, batch_id: str, status: str = "completed") -> Any:
    def check() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status == status else None

    return wait_for(check, what=f"batch {batch_id} {status}")


def results(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def line_events(gateway: Gateway, batch_id: str) -> list[Any]:
    return [e for e in gateway.events() if e["id"].startswith(batch_id + "-")]


def test_sdk_round_trip_charges_each_line_once_at_the_batch_price(batch_gateway: Gateway) -> None:
    key = batch_gateway.create_key(team="analytics")
    client = openai.OpenAI(base_url=batch_gateway.base_url, api_key=key)
    batch_id = submit(client, requests_file(12))
    batch = finished(client, batch_id)
    assert batch.request_counts.completed == 12 and batch.request_counts.failed == 0
    assert batch.output_file_id and batch.error_file_id is None
    assert batch.metadata == {"job": "nightly-eval"}
    assert batch.in_progress_at and batch.completed_at and batch.completed_at >= batch.created_at

    answers = results(client, batch.output_file_id)
    assert sorted(a["custom_id"] for a in answers) == sorted(f"req-{i}" for i in range(12))
    for answer in answers:
        assert answer["response"]["status_code"] == 200 and answer["error"] is None
        assert answer["response"]["body"]["object"] == "chat.completion"

    events = line_events(batch_gateway, batch_id)
    assert len(events) == 12 and len({e["id"] for e in events}) == 12
    for event in events:
        realtime = Decimal(event["input_tokens"]) * Decimal("5.00") + Decimal(
            event["output_tokens"]
        ) * Decimal("15.00")
        expected_pico = realtime / Decimal(1_000_000) * Decimal("0.5") * Decimal(10**12)
        assert event["cost_pico"] == int(expected_pico)
        assert event["saved_pico"] == event["cost_pico"]  # half of the real-time price
        assert event["strategy"] == "batch" and event["team"] == "analytics"
    assert batch.usage and batch.usage.input_tokens == sum(e["input_tokens"] for e in events)
    assert batch.usage.output_tokens == sum(e["output_tokens"] for e in events)
    total = sum(e["cost_pico"] for e in events)
    assert Decimal(batch.tokenomy["cost_usd"]) == Decimal(total) / Decimal(10**12)  # type: ignore[attr-defined]
    # The admin spend report filtered by key reads the batch's cost back.
    spend = batch_gateway.admin(
        "GET", "/admin/spend", params={"key_id": key_id(batch_gateway, key)}
    )
    assert spend.status_code == 200, spend.text
    assert Decimal(spend.json()["total_cost_usd"]) == Decimal(total) / Decimal(10**12)

    listed = client.batches.list(limit=5)
    assert batch_id in [b.id for b in listed.data]
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"


def key_id(gateway: Gateway, key: str) -> str:
    keys = gateway.admin("GET", "/admin/keys").json()["data"]
    return str(next(k["id"] for k in keys if key.startswith(k["prefix"])))


def test_bad_files_and_batches_are_refused_with_the_line_named(batch_gateway: Gateway) -> None:
    key = batch_gateway.create_key(team="careless")
    client = openai.OpenAI(base_url=batch_gateway.base_url, api_key=key, max_retries=0)
    good = requests_file(1)
    broken = good + b"{not json\n" + b'{"custom_id": "x", "url": "/v1/nowhere", "body": {}}\n'
    with pytest.raises(openai.BadRequestError) as error:
        client.files.create(file=("bad.jsonl", broken), purpose="batch")
    message = error.value.message
    assert "line 2: not valid JSON" in message and "line 3: url must be one of" in message
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", good), purpose="fine-tune")

    mixed = requests_file(1) + requests_file(1, model="gpt-4o-mini").replace(b"req-0", b"req-9")
    uploaded = client.files.create(file=("mixed.jsonl", mixed), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="one model"):
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    unknown = client.files.create(
        file=("u.jsonl", requests_file(1, model="gpt-9")), purpose="batch"
    )
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        client.batches.create(
            input_file_id=unknown.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="1h",  # type: ignore[arg-type]
        )
    no_key = httpx.get(batch_gateway.base_url + "/batches")
    assert no_key.status_code == 401 and no_key.json()["error"]["type"]


def test_one_team_cannot_see_another_teams_files_or_batches(batch_gateway: Gateway) -> None:
    owner = openai.OpenAI(
        base_url=batch_gateway.base_url, api_key=batch_gateway.create_key(team="a")
    )
    other = openai.OpenAI(
        base_url=batch_gateway.base_url,
        api_key=batch_gateway.create_key(team="b"),
        max_retries=0,
    )
    batch_id = submit(owner, requests_file(2))
    batch = finished(owner, batch_id)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch_id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(batch.output_file_id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(batch_id)
    assert batch_id not in [b.id for b in other.batches.list().data]


def test_a_budget_that_runs_out_pauses_the_batch_and_raising_it_resumes(
    batch_gateway: Gateway,
) -> None:
    key = batch_gateway.create_key(team="frugal")
    budget = {"scope": {"team": "frugal"}, "period": "month", "limit_usd": "0.001"}
    put = batch_gateway.admin("PUT", "/admin/budgets/frugal-month", json=budget)
    assert put.status_code == 200, put.text
    client = openai.OpenAI(base_url=batch_gateway.base_url, api_key=key)
    batch_id = submit(client, requests_file(15))

    def paused() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.tokenomy["paused"] else None  # type: ignore[attr-defined]

    batch = wait_for(paused, what="the batch to pause")
    assert batch.status == "in_progress"
    assert "frugal-month" in batch.tokenomy["paused_reason"]  # type: ignore[attr-defined]
    time.sleep(1.0)  # it stays paused: no line runs without budget room
    still = client.batches.retrieve(batch_id)
    assert 0 < still.request_counts.completed < 15 and still.status == "in_progress"
    state = batch_gateway.admin("GET", "/admin/budgets/frugal-month").json()
    assert Decimal(state["spent_usd"]) <= Decimal("0.001")  # never past the limit
    assert Decimal(state["reserved_usd"]) == 0  # no hold left behind by paused lines

    raised = batch_gateway.admin(
        "PUT", "/admin/budgets/frugal-month", json={**budget, "limit_usd": "1"}
    )
    assert raised.status_code == 200
    batch = finished(client, batch_id)
    assert batch.request_counts.completed == 15 and not batch.tokenomy["paused"]  # type: ignore[attr-defined]
    assert len(line_events(batch_gateway, batch_id)) == 15


def test_deferrable_request_under_a_defer_threshold_gets_202_and_its_answer_later(
    batch_gateway: Gateway,
) -> None:
    key = batch_gateway.create_key(team="patient")
    budget = {
        "scope": {"team": "patient"},
        "period": "day",
        "limit_usd": "1.00",
        "thresholds": [{"at": 0.000001, "action": "defer"}],
    }
    assert batch_gateway.admin("PUT", "/admin/budgets/patient-day", json=budget).status_code == 200
    body = {"model": "premium-model", "messages": [{"role": "user", "content": "summarize"}]}
    assert batch_gateway.chat(key, body).status_code == 200  # not deferrable: served now

    received: list[dict[str, Any]] = []

    def remember(path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        received.append(json.loads(body))
        return 204, None

    server = JsonServer(remember)
    hook = server.url + "/done"
    try:
        headers = {"x-tokenomy-priority": "deferrable", "x-tokenomy-callback-url": hook}
        queued = batch_gateway.chat(key, {**body, "max_tokens": 30}, headers)
        assert queued.status_code == 202, queued.text
        job = queued.json()
        assert job["object"] == "tokenomy.job" and job["status"] == "queued"
        assert queued.headers["location"] == job["status_url"] == f"/v1/jobs/{job['id']}"
        assert "patient-day" in job["reason"]

        def done() -> Any:
            answer = httpx.get(
                batch_gateway.url + job["status_url"], headers={"authorization": f"Bearer {key}"}
            ).json()
            return answer if answer["status"] == "completed" else None

        answer = wait_for(done, what="the deferred job")
        assert answer["response"]["status_code"] == 200
        assert answer["response"]["body"]["choices"][0]["message"]["content"]
        event = next(e for e in batch_gateway.events() if e["id"] == job["id"])
        assert event["strategy"] == "batch" and event["saved_pico"] == event["cost_pico"] > 0
        assert Decimal(answer["cost_usd"]) == Decimal(event["cost_pico"]) / Decimal(10**12)
        wait_for(lambda: received, what="the job's callback")
        assert received[0]["id"] == job["id"]
        assert received[0]["status"] == "completed"
    finally:
        server.close()
    stranger = batch_gateway.create_key(team="nosy")
    peek = httpx.get(
        batch_gateway.url + job["status_url"], headers={"authorization": f"Bearer {stranger}"}
    )
    assert peek.status_code == 404
    bad_hook = batch_gateway.chat(key, body, {"x-tokenomy-callback-url": "ftp://x"})
    assert bad_hook.status_code == 400


def test_cancel_stops_a_batch_and_keeps_what_finished(batch_gateway: Gateway) -> None:
    client = openai.OpenAI(
        base_url=batch_gateway.base_url, api_key=batch_gateway.create_key(team="quitter")
    )
    batch_id = submit(client, requests_file(30, model="lagging-model"))
    wait_for(
        lambda: client.batches.retrieve(batch_id).request_counts.completed >= 1,  # type: ignore[union-attr]
        what="a first line",
    )
    cancelling = client.batches.cancel(batch_id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = finished(client, batch_id, "cancelled")
    assert batch.cancelled_at and 1 <= batch.request_counts.completed < 30
    assert len(results(client, batch.output_file_id)) == batch.request_counts.completed
    assert len(line_events(batch_gateway, batch_id)) == batch.request_counts.completed


def test_an_upstream_outside_its_window_holds_its_lines_and_the_queue_is_measured(
    batch_gateway: Gateway,
) -> None:
    client = openai.OpenAI(
        base_url=batch_gateway.base_url, api_key=batch_gateway.create_key(team="owls")
    )
    batch_id = submit(client, requests_file(3, model="night-model"))
    time.sleep(1.5)
    batch = client.batches.retrieve(batch_id)
    assert batch.status == "in_progress" and batch.request_counts.completed == 0
    metrics = batch_gateway.admin("GET", "/metrics").text
    assert 'tokenomy_batch_queue_lines{model="night-model",pool="night"} 3.0' in metrics
    assert 'tokenomy_batch_queue_tokens{model="night-model",pool="night"}' in metrics
    assert 'tokenomy_batch_oldest_age_seconds{model="night-model",pool="night"}' in metrics
    client.batches.cancel(batch_id)
    assert finished(client, batch_id, "cancelled").request_counts.completed == 0


def test_kill_9_mid_batch_then_restart_answers_and_charges_every_line_once(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    config = batch_config(tmp_path / "ledger.db", mock_upstream, workers=4)
    gateway = start_gateway(tmp_path, config)
    key = gateway.create_key(team="crashy")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key)
    total = 24
    batch_id = submit(client, requests_file(total, model="lagging-model"))
    wait_for(
        lambda: client.batches.retrieve(batch_id).request_counts.completed >= 4,  # type: ignore[union-attr]
        what="some lines",
    )
    os.killpg(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait()
    restarted = start_gateway(tmp_path, config)
    try:
        client = openai.OpenAI(base_url=restarted.base_url, api_key=key)
        batch = finished(client, batch_id)
        assert batch.request_counts.completed == total and batch.request_counts.failed == 0
        answers = results(client, batch.output_file_id)
        assert sorted(a["custom_id"] for a in answers) == sorted(f"req-{i}" for i in range(total))
        events = line_events(restarted, batch_id)
        assert sorted(e["id"] for e in events) == sorted(f"{batch_id}-{i}" for i in range(total))
        assert all(e["status"] == 200 and e["strategy"] == "batch" for e in events)
    finally:
        stop(restarted.process)


def test_deferral_turned_off_refuses_with_retry_after_and_always_queues(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "later"}]}
    deferrable = {"x-tokenomy-priority": "deferrable"}
    budget = {
        "scope": {"team": "t"},
        "period": "day",
        "limit_usd": "1.00",
        "thresholds": [{"at": 0.000001, "action": "defer"}],
    }
    for mode in ("never", "always"):
        folder = tmp_path / mode
        folder.mkdir()
        gateway = start_gateway(
            folder, batch_config(folder / "ledger.db", mock_upstream, defer=mode)
        )
        try:
            key = gateway.create_key(team="t")
            if mode == "always":  # no budget needed: every deferrable request is queued
                queued = gateway.chat(key, body, deferrable)
                assert queued.status_code == 202 and queued.json()["reason"] == "deferrable"
                continue
            assert gateway.admin("PUT", "/admin/budgets/t-day", json=budget).status_code == 200
            assert gateway.chat(key, body).status_code == 200
            refused = gateway.chat(key, body, deferrable)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "budget_deferred"
            assert 0 < int(refused.headers["retry-after"]) <= 86_400
            assert "x-should-retry" not in refused.headers
        finally:
            stop(gateway.process)


def test_an_upstream_with_a_batch_api_runs_the_batch_itself_within_the_budget(
    batch_gateway: Gateway,
) -> None:
    key = batch_gateway.create_key(team="offloaders")
    budget = {"scope": {"team": "offloaders"}, "period": "month", "limit_usd": "0.0015"}
    assert batch_gateway.admin("PUT", "/admin/budgets/off-month", json=budget).status_code == 200
    client = openai.OpenAI(base_url=batch_gateway.base_url, api_key=key)
    batch_id = submit(client, requests_file(6, model="hosted-model"))

    def paused() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.tokenomy["paused"] else None  # type: ignore[attr-defined]

    # The budget holds the worst case of only some lines: those go up, the batch waits.
    batch = wait_for(paused, what="the batch to pause")
    assert "off-month" in batch.tokenomy["paused_reason"]  # type: ignore[attr-defined]
    time.sleep(1.5)  # the upstream answers the first chunk
    partial = client.batches.retrieve(batch_id)
    assert 0 < partial.request_counts.completed < 6 and partial.status == "in_progress"
    raised = {**budget, "limit_usd": "1"}
    assert batch_gateway.admin("PUT", "/admin/budgets/off-month", json=raised).status_code == 200
    batch = finished(client, batch_id)
    assert batch.request_counts.completed == 6
    answers = results(client, batch.output_file_id)
    assert all(a["response"]["body"]["system_fingerprint"] == "mock-batch" for a in answers)
    events = line_events(batch_gateway, batch_id)
    assert len(events) == 6
    for event in events:
        realtime = Decimal(event["input_tokens"]) * 5 + Decimal(event["output_tokens"]) * 15
        assert event["cost_pico"] == int(realtime * Decimal("0.5") * 1_000_000)
        assert event["upstream"] == "provider" and event["strategy"] == "batch"


def test_teams_share_the_worker_pool_fairly(batch_gateway: Gateway) -> None:
    def team_client(team: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=batch_gateway.base_url, api_key=batch_gateway.create_key(team=team)
        )

    early, late = team_client("fair-early"), team_client("fair-late")
    big = submit(early, requests_file(48, model="lagging-model"))
    small = submit(late, requests_file(8, model="lagging-model"))
    finished(early, big)
    finished(late, small)
    big_done = max(e["ts_ms"] for e in line_events(batch_gateway, big))
    small_done = max(e["ts_ms"] for e in line_events(batch_gateway, small))
    # The later team's batch was served alongside the big one, not after all of it.
    assert small_done < big_done


def test_an_upstream_batch_answered_after_a_restart_is_charged_even_to_a_revoked_key(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    config = batch_config(tmp_path / "ledger.db", mock_upstream)
    config["upstreams"]["provider"]["headers"] = {"x-mock-batch-seconds": "3"}
    gateway = start_gateway(tmp_path, config)
    created = gateway.admin("POST", "/admin/keys", json={"team": "leavers"}).json()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"])
    batch_id = submit(client, requests_file(4, model="hosted-model"))
    query = (
        "SELECT COUNT(*) AS n FROM batch_lines WHERE batch_id = ? AND upstream_batch IS NOT NULL"
    )
    wait_for(
        lambda: ledger_rows(gateway.database, query, (batch_id,))[0]["n"] == 4,
        what="the lines sent upstream",
    )
    os.killpg(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait()
    revoked = CliRunner().invoke(
        cli, ["keys", "revoke", "--config", str(gateway.config_path), created["id"]]
    )
    assert revoked.exit_code == 0, revoked.output
    restarted = start_gateway(tmp_path, config)
    try:
        lines = "SELECT state FROM batch_lines WHERE batch_id = ?"
        wait_for(
            lambda: (
                {r["state"] for r in ledger_rows(restarted.database, lines, (batch_id,))}
                == {"done"}
            ),
            what="the upstream's answers",
        )
        events = line_events(restarted, batch_id)
        # The provider billed every line: the ledger has them all, at the batch price.
        assert len(events) == 4 and all(e["cost_pico"] > 0 for e in events)
        assert all(e["team"] == "leavers" and e["strategy"] == "batch" for e in events)
    finally:
        stop(restarted.process)
