"""Budgets that never overshoot: races, thresholds that act, hierarchy, holds released on
failure, live control with an audit log, counters rebuilt from the ledger."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from conftest import ADMIN_KEY, Gateway

HI = [{"role": "user", "content": "hi"}]


def put_budget(gateway: Gateway, name: str, **definition: Any) -> dict[str, Any]:
    response = gateway.admin("PUT", f"/admin/budgets/{name}", json=definition)
    assert response.status_code == 200, response.text
    return dict(response.json())


def state(gateway: Gateway, name: str) -> dict[str, Any]:
    response = gateway.admin("GET", f"/admin/budgets/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def ledger_spend(gateway: Gateway, **filters: str) -> Decimal:
    report = gateway.admin("GET", "/admin/spend", params=filters).json()
    return Decimal(report["total_cost_usd"])


def chat(
    gateway: Gateway,
    key: str,
    model: str = "premium-model",
    max_tokens: int | None = 20,
    **headers: str,
) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": HI}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json=body,
        timeout=30,
        headers={"authorization": f"Bearer {key}", **headers},
    )


def cost_of(response: httpx.Response) -> Decimal:
    return Decimal(response.headers["x-tokenomy-cost-usd"])


def test_race_hundreds_of_concurrent_requests_never_overshoot(gateway: Gateway) -> None:
    key = gateway.create_key(team="racers")
    one = chat(gateway, key)  # the price of one request, before the budget exists
    assert one.status_code == 200
    unit = cost_of(one)
    limit = unit * 40
    put_budget(
        gateway,
        "racers-month",
        scope={"team": "racers"},
        period="month",
        limit_usd=str(limit + ledger_spend(gateway, team="racers")),
        thresholds=[{"at": 1.0, "action": "block"}],
    )

    async def storm() -> Counter[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one_request() -> int:
                response = await client.post(
                    gateway.base_url + "/chat/completions",
                    json={"model": "premium-model", "messages": HI, "max_tokens": 20},
                    headers={"authorization": f"Bearer {key}"},
                )
                if response.status_code == 429:
                    error = response.json()["error"]
                    assert error["type"] == "insufficient_quota"
                    assert error["code"] == "budget_exceeded"
                    assert "racers-month" in error["message"]
                    assert response.headers["x-should-retry"] == "false"
                return response.status_code

            return Counter(await asyncio.gather(*(one_request() for _ in range(300))))

    statuses = asyncio.run(storm())
    assert set(statuses) == {200, 429}, statuses
    after = state(gateway, "racers-month")
    spent = Decimal(after["spent_usd"])
    budget_limit = Decimal(after["limit_usd"])
    assert spent == ledger_spend(gateway, team="racers")  # the counter is the ledger
    assert spent <= budget_limit  # never overshoots
    assert spent >= Decimal("0.8") * budget_limit  # the holds are not needlessly conservative
    assert Decimal(after["reserved_usd"]) == 0  # every hold settled or released
    assert statuses[200] >= 35


def test_thresholds_downgrade_then_block_and_raising_the_limit_unblocks(gateway: Gateway) -> None:
    key = gateway.create_key(team="support", department="ops")
    critical_key = gateway.create_key(team="support", department="ops", allow_critical=True)
    unit = cost_of(chat(gateway, gateway.create_key(team="pricing-probe")))
    definition = {
        "scope": {"team": "support"},
        "period": "month",
        "limit_usd": str(unit * 6),
        "thresholds": [
            {"at": 0.6, "action": "downgrade", "from_tier": "premium", "to_tier": "mid"},
            {"at": 1.0, "action": "block"},
        ],
    }
    put_budget(gateway, "support-month", **definition)
    served = []
    for _ in range(4):
        response = chat(gateway, key)
        assert response.status_code == 200
        served.append(response.headers["x-tokenomy-model"])
    assert served == ["premium-model"] * 4  # 4 of 6 units: past the 60% threshold
    assert state(gateway, "support-month")["active_action"] == "downgrade"

    downgraded = chat(gateway, key)
    assert downgraded.status_code == 200
    assert downgraded.headers["x-tokenomy-model"] == "gpt-4o-mini"
    assert downgraded.headers["x-tokenomy-route-reason"] == "budget_downgrade:support-month@0.6"
    critical = chat(gateway, critical_key, **{"x-tokenomy-priority": "critical"})
    assert critical.headers["x-tokenomy-model"] == "premium-model"  # skips the downgrade
    not_allowed = chat(gateway, key, **{"x-tokenomy-priority": "critical"})
    assert not_allowed.headers["x-tokenomy-model"] == "gpt-4o-mini"  # this key may not

    blocked = None
    for _ in range(50):  # big answers from the mid model until the limit is reached
        response = chat(gateway, key, model="gpt-4o-mini", max_tokens=300)
        if response.status_code == 429:
            blocked = response
            break
    assert blocked is not None
    error = blocked.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert "support-month" in error["message"] and "resets at" in error["message"]
    assert blocked.headers["x-should-retry"] == "false"
    with pytest.raises(openai.RateLimitError):  # what the SDK raises, without retrying
        openai.OpenAI(
            base_url=gateway.base_url, api_key=key, max_retries=0
        ).chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=300)
    current = state(gateway, "support-month")
    assert Decimal(current["spent_usd"]) <= Decimal(current["limit_usd"])

    put_budget(gateway, "support-month", **{**definition, "limit_usd": str(unit * 100)})
    unblocked = chat(gateway, key, model="gpt-4o-mini", max_tokens=300)
    assert unblocked.status_code == 200


def test_defer_threshold_queues_deferrable_requests(gateway: Gateway) -> None:
    key = gateway.create_key(team="batchers")
    put_budget(
        gateway,
        "batchers-day",
        scope={"team": "batchers"},
        period="day",
        limit_usd="1.00",
        thresholds=[{"at": 0.000001, "action": "defer"}],
    )
    assert chat(gateway, key).status_code == 200  # not deferrable: served
    deferred = chat(gateway, key, **{"x-tokenomy-priority": "deferrable"})
    assert deferred.status_code == 202  # queued as a job (tests/test_batch.py follows it)
    assert deferred.json()["object"] == "tokenomy.job"
    assert "batchers-day" in deferred.json()["reason"]
    bad = chat(gateway, key, **{"x-tokenomy-priority": "whenever"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-tokenomy-priority"


def test_user_team_and_department_budgets_hold_at_once(gateway: Gateway) -> None:
    unit = cost_of(chat(gateway, gateway.create_key(team="probe-2")))
    ann = gateway.create_key(user="ann", team="h-team", department="h-dept", environment="prod")
    bob = gateway.create_key(user="bob", team="h-team", department="h-dept", environment="prod")
    cid = gateway.create_key(user="cid", team="h-other", department="h-dept", environment="prod")
    ann_dev = gateway.create_key(user="ann", team="h-team", department="h-dept", environment="dev")
    # Each limit leaves 0.6 of a request spare: a request's hold (its worst case: the
    # prompt bounded by its size in bytes) is about 1.5 times what it costs.
    spare = unit * Decimal("0.6")
    put_budget(
        gateway,
        "h-user-ann",
        scope={"user": "ann", "environment": "prod"},
        limit_usd=str(unit * 2 + spare),
    )
    put_budget(
        gateway,
        "h-team",
        scope={"team": "h-team", "environment": "prod"},
        limit_usd=str(unit * 5 + spare),
    )
    put_budget(
        gateway,
        "h-dept",
        scope={"department": "h-dept", "environment": "prod"},
        limit_usd=str(unit * 7 + spare),
    )
    put_budget(
        gateway,
        "h-dev",
        scope={"department": "h-dept", "environment": "dev"},
        limit_usd=str(unit * 1 + spare),
    )

    def run(key: str) -> tuple[int, str]:
        count = 0
        while True:
            response = chat(gateway, key)
            if response.status_code != 200:
                return count, response.json()["error"]["message"]
            count += 1

    served, message = run(ann)
    assert served == 2 and "h-user-ann" in message  # the user's own limit
    served, message = run(bob)
    assert served == 3 and "h-team" in message  # the team's limit, shared with ann
    served, message = run(cid)
    assert served == 2 and "h-dept" in message  # the department's limit, shared with both
    served, message = run(ann_dev)
    assert served == 1 and "h-dev" in message  # dev spends its own budget, not prod's
    for name in ("h-user-ann", "h-team", "h-dept", "h-dev"):
        current = state(gateway, name)
        assert Decimal(current["spent_usd"]) <= Decimal(current["limit_usd"])
        assert Decimal(current["reserved_usd"]) == 0


def test_failures_release_their_holds(gateway: Gateway) -> None:
    key = gateway.create_key(team="unlucky")
    put_budget(gateway, "unlucky-month", scope={"team": "unlucky"}, limit_usd="5.00")
    for model in ("broken-model", "hanging-model", "garbled-model", "nowhere-model"):
        assert chat(gateway, key, model=model).status_code in (502, 504)
    current = state(gateway, "unlucky-month")
    assert Decimal(current["reserved_usd"]) == 0
    assert Decimal(current["spent_usd"]) == ledger_spend(gateway, team="unlucky")

    # A client that leaves mid-stream pays for what it was sent, and its hold is released.
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            gateway.base_url + "/chat/completions",
            json={"model": "slow-model", "messages": HI, "max_tokens": 200, "stream": True},
            headers={"authorization": f"Bearer {key}"},
        ) as response,
    ):
        delivered = 0
        for line in response.iter_lines():
            delivered += '"content"' in line
            if delivered == 3:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Decimal(state(gateway, "unlucky-month")["reserved_usd"]):
        time.sleep(0.05)
    current = state(gateway, "unlucky-month")
    assert Decimal(current["reserved_usd"]) == 0
    assert Decimal(current["spent_usd"]) == ledger_spend(gateway, team="unlucky") > 0


def test_missing_max_tokens_is_bounded_and_announced(gateway: Gateway) -> None:
    key = gateway.create_key(team="open-ended")
    put_budget(gateway, "open-ended", scope={"team": "open-ended"}, limit_usd="0.003")
    response = chat(gateway, key, max_tokens=None)
    assert response.status_code == 200
    injected = int(response.headers["x-tokenomy-max-tokens-injected"])
    # premium-model: $15 per million output tokens; $0.003 pays for at most 200.
    assert 0 < injected < 200
    assert response.json()["usage"]["completion_tokens"] == injected  # the upstream obeyed
    assert Decimal(state(gateway, "open-ended")["spent_usd"]) <= Decimal("0.003")


def test_live_control_audit_and_contract(gateway: Gateway) -> None:
    created = put_budget(
        gateway, "live-one", scope={"team": "live"}, period="week", limit_usd="10.00"
    )
    assert {"limit_usd", "spent_usd", "reserved_usd", "remaining_usd"} <= set(created)
    assert created["limit_usd"] == "10" and created["remaining_usd"] == "10"
    assert created["period_start"] and created["resets_at"]
    changed = gateway.admin(
        "PUT",
        "/admin/budgets/live-one",
        json={"scope": {"team": "live"}, "period": "week", "limit_usd": "12.5"},
        headers={"x-tokenomy-actor": "carol"},
    )
    assert changed.json()["limit_usd"] == "12.5"
    trail = gateway.admin("GET", "/admin/audit", params={"budget": "live-one"}).json()["data"]
    assert [entry["change"] for entry in trail] == ["update", "create"]
    assert trail[0]["actor"] == "admin-api:carol"
    assert trail[0]["old"]["limit_usd"] == "10" and trail[0]["new"]["limit_usd"] == "12.5"
    assert gateway.admin("DELETE", "/admin/budgets/live-one").status_code == 200
    assert gateway.admin("GET", "/admin/budgets/live-one").status_code == 404

    for body, param in [
        ({"limit_usd": 5}, None),
        ({"limit_usd": "x"}, "limit_usd"),
        ({"limit_usd": "1", "period": "fortnight"}, "period"),
        ({"limit_usd": "1", "scope": {"planet": "mars"}}, "scope.planet"),
        ({"limit_usd": "1", "thresholds": [{"at": 1.5, "action": "block"}]}, "thresholds[0].at"),
        (
            {"limit_usd": "1", "thresholds": [{"at": 0.5, "action": "downgrade"}]},
            "thresholds[0].from_tier",
        ),
    ]:
        response = gateway.admin("PUT", "/admin/budgets/bad", json=body)
        if param is None:
            assert response.status_code == 200  # an integer amount is exact
            continue
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param


def test_budget_set_by_cli_applies_to_the_running_gateway(gateway: Gateway) -> None:
    from click.testing import CliRunner

    from tokenomy.cli.main import cli

    key = gateway.create_key(team="cli-budgeted")
    result = CliRunner().invoke(
        cli,
        [
            "budgets",
            "set",
            "cli-zero",
            "--config",
            str(gateway.config_path),
            "--scope",
            "team=cli-budgeted",
            "--limit",
            "0",
            "--threshold",
            "1.0:block",
        ],
    )
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 5
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = chat(gateway, key).status_code
        time.sleep(0.1)
    assert status == 429  # picked up within a second or so
    listing = CliRunner().invoke(cli, ["budgets", "list", "--config", str(gateway.config_path)])
    assert "cli-zero" in listing.output
    trail = CliRunner().invoke(
        cli, ["budgets", "audit", "cli-zero", "--config", str(gateway.config_path)]
    )
    assert '"actor":"cli:' in trail.output


def test_rate_limits_per_key(gateway: Gateway) -> None:
    key = gateway.create_key(team="limited-team", rpm=3)
    statuses = [chat(gateway, key) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert statuses[2].headers["x-ratelimit-remaining-requests"] == "0"
    refused = statuses[3]
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


def test_admin_budget_routes_need_the_admin_key(gateway: Gateway) -> None:
    response = httpx.put(gateway.url + "/admin/budgets/x", json={"limit_usd": "1"})
    assert response.status_code == 401
    response = httpx.put(
        gateway.url + "/admin/budgets/x",
        json={"limit_usd": "1"},
        headers={"authorization": f"Bearer {ADMIN_KEY}x"},
    )
    assert response.status_code == 401


class Receiver:
    """A webhook endpoint on loopback that records what it is sent."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_alert_webhook_fires_once_per_threshold_per_period(gateway: Gateway) -> None:
    receiver = Receiver()
    try:
        key = gateway.create_key(team="alerted")
        unit = cost_of(chat(gateway, gateway.create_key(team="probe-3")))
        put_budget(
            gateway,
            "alerted-month",
            scope={"team": "alerted"},
            limit_usd=str(unit * 10),
            thresholds=[{"at": 0.5, "action": "alert", "webhook": receiver.url}],
        )
        for _ in range(4):
            chat(gateway, key)
        time.sleep(0.3)
        assert receiver.received == []  # 40% used: nothing yet
        for _ in range(4):
            chat(gateway, key)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not receiver.received:
            time.sleep(0.05)
        time.sleep(0.3)
        assert len(receiver.received) == 1
        alert = receiver.received[0]
        assert alert["budget"] == "alerted-month" and alert["threshold"] == 0.5
        assert Decimal(alert["spent_usd"]) >= unit * 5
        thresholds = state(gateway, "alerted-month")["thresholds"]
        assert thresholds[0]["reached"] and thresholds[0]["alerted"]
    finally:
        receiver.close()


def test_counters_are_rebuilt_from_the_ledger_after_a_restart(
    tmp_path: Any, mock_upstream: Any
) -> None:
    from conftest import gateway_config, start_gateway, stop

    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    first = start_gateway(tmp_path, config)
    key = first.create_key(team="restarted")
    unit = cost_of(chat(first, key))
    put_budget(
        first,
        "restarted",
        scope={"team": "restarted"},
        limit_usd=str(unit * 4 + unit * Decimal("0.6")),
    )
    for _ in range(2):
        assert chat(first, key).status_code == 200
    before = state(first, "restarted")
    stop(first.process)

    second = start_gateway(tmp_path, config)
    try:
        after = state(second, "restarted")
        assert after["spent_usd"] == before["spent_usd"] == str(unit * 3)
        assert chat(second, key).status_code == 200
        assert chat(second, key).status_code == 429  # the 4th unit leaves no room for a hold
    finally:
        stop(second.process)


def test_the_spend_watch_publishes_forecasts_and_anomaly_scans(
    tmp_path: Any, mock_upstream: Any
) -> None:
    from conftest import gateway_config, start_gateway, stop

    config = gateway_config(tmp_path / "ledger.db", mock_upstream, watch={"every_s": 0.5})
    gateway = start_gateway(tmp_path, config)
    try:
        key = gateway.create_key(team="watched")
        put_budget(gateway, "watched", scope={"team": "watched"}, limit_usd="1.00")
        assert chat(gateway, key).status_code == 200
        deadline = time.monotonic() + 15
        forecast = None
        while time.monotonic() < deadline and forecast is None:
            forecast = state(gateway, "watched")["forecast"]
            time.sleep(0.2)
        assert forecast is not None
        assert forecast["budget"] == "watched" and "note" in forecast
        assert Decimal(forecast["spent_usd"]) == ledger_spend(gateway, team="watched")
        scan = gateway.admin("GET", "/admin/anomalies").json()
        assert scan["enabled"] and scan["scan"]["findings"] == []
    finally:
        stop(gateway.process)
