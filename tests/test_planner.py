"""The dashboard's Planner page (capacity, rent or buy, allocation, what-if) in Debian's
Chromium and over HTTP, checked against what ``tokenomy plan`` prints for the same inputs;
and ``tokenomy plan`` reading the ledger of a real gateway: ``tco`` and ``whatif`` priced
from recorded traffic, ``allocate --apply`` writing budgets the gateway then enforces.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml
from click.testing import CliRunner

import test_dashboard_browser as dashboard
from conftest import (
    ADMIN_KEY,
    PREMIUM_PRICE,
    Gateway,
    MockUpstream,
    gateway_config,
    start_gateway,
    stop,
)
from tokenomy.cli.main import cli

# The dashboard tests' browser and logged-in tab, and their chart and screenshot helpers.
browser, page = dashboard.browser, dashboard.page
chart_drawn, painted, shot = dashboard.chart_drawn, dashboard.painted, dashboard.shot
PROMPT = [{"role": "user", "content": "Draft a reply to the customer about the late order."}]
MILLION = Decimal(1_000_000)
CAPACITY = {
    "model": "llama-3.1-70b",
    "gpu": "h200",
    "gpus": "4",
    "weights": "fp8",
    "isl": "2048",
    "osl": "512",
    "concurrency": "100",
    "gpu_hour_usd": "3.10",
    "traffic": "20000",
}
INFEASIBLE = {
    "total_usd": "500",
    "lines": [
        {"name": "support", "department": "support", "usd_per_mtok": "2", "min_usd": "300"},
        {"name": "research", "department": "research", "usd_per_mtok": "8", "min_usd": "250"},
        {"name": "sales", "department": "sales", "usd_per_mtok": "1", "max_usd": "40"},
    ],
}


def plan_cli(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, ["plan", *args])
    assert result.exit_code == code, result.output
    return orjson.loads(result.output) if "--json" in args else result.output


def capacity_cli(fields: dict[str, str]) -> dict[str, Any]:
    args = [part for key, value in fields.items() for part in (f"--{key.replace('_', '-')}", value)]
    out: dict[str, Any] = plan_cli("capacity", *args, "--json")
    return out


def post(gateway: Gateway, path: str, body: Any, **headers: str) -> httpx.Response:
    auth = {"authorization": f"Bearer {ADMIN_KEY}", **headers}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{gateway.url}/ui/api/planner/{path}", content=content, headers=auth)


@pytest.fixture(scope="module")
def ledger(gateway: Gateway) -> dict[str, Any]:
    """Traffic from three teams in two departments, through the openai SDK; the ledger's
    spend by team and model afterwards."""
    for team, department, models in (
        ("search", "eng", ("premium-model", "gpt-4o-mini", "premium-model")),
        ("support", "ops", ("premium-model", "reasoner")),
        ("billing", "ops", ("reasoner", "gpt-4o-mini")),
    ):
        key = gateway.create_key(team=team, department=department)
        client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        for model in models:
            client.chat.completions.create(model=model, messages=PROMPT, max_tokens=60)
    report = gateway.admin("GET", "/admin/spend?group_by=team,model")
    assert report.status_code == 200, report.text
    data: dict[str, Any] = report.json()
    assert data["total_requests"] == 7
    return data


def config(gateway: Gateway) -> list[str]:
    return ["--config", str(gateway.config_path)]


# -- the page-data API ----------------------------------------------------------------------


def test_planner_api_needs_the_admin_and_refuses_bad_input(gateway: Gateway) -> None:
    url = gateway.url
    assert httpx.get(f"{url}/ui/api/planner").status_code == 401
    for path in ("capacity", "tco", "allocate", "whatif"):
        response = httpx.post(f"{url}/ui/api/planner/{path}", json=CAPACITY)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "login_required"
    wrong = post(gateway, "capacity", CAPACITY, authorization="Bearer not-the-key")
    assert wrong.status_code == 401
    with httpx.Client(base_url=url) as browser_like:
        assert browser_like.post("/ui/login", json={"key": ADMIN_KEY}).status_code == 200
        # A session without the dashboard's own header is refused like any other change.
        assert browser_like.post("/ui/api/planner/capacity", json=CAPACITY).status_code == 403
        ok = browser_like.post(
            "/ui/api/planner/capacity", json=CAPACITY, headers={"x-tokenomy-ui": "1"}
        )
        assert ok.status_code == 200 and ok.json()["report"]["model"] == "llama-3.1-70b"

    bad: list[tuple[str, Any, str | None, str]] = [
        ("capacity", b"{not json", "body", "not valid JSON"),
        ("capacity", [1, 2], "body", "JSON object"),
        ("capacity", {**CAPACITY, "model": "gpt-17"}, "model", "unknown model"),
        ("capacity", {**CAPACITY, "gpu": "voodoo-5"}, "gpu", "unknown GPU"),
        ("capacity", {**CAPACITY, "weights": "fp3"}, "weights", "choose from"),
        ("capacity", {**CAPACITY, "isl": "-5"}, "isl", "number from 1"),
        ("capacity", {**CAPACITY, "gpus": "many"}, "gpus", "number"),
        ("capacity", {**CAPACITY, "concurrency": "2.5"}, "concurrency", "whole number"),
        ("capacity", {**CAPACITY, "gpu_hour_usd": "cheap"}, "gpu_hour_usd", "USD"),
        ("capacity", {**CAPACITY, "model": "llama-3.1-405b", "gpu": "l4", "gpus": "1"},
         "gpus", "not enough"),
        ("tco", {"gpus": "8"}, None, "tokens_per_s"),
        ("tco", {"tokens_per_s": "100", "gpu_price_usd": "-3"},
         "gpu_price_usd", "negative"),
        ("tco", {"tokens_per_s": "100", "api_usd_per_mtok": "2", "monthly_mtok": "10",
                 "months": "9999"}, "months", "number from 1"),
        ("allocate", {"total_usd": "100"}, "lines", "list of lines"),
        ("allocate", {"total_usd": "100", "lines": [{"name": "a"}]}, "lines", "usd_per_mtok"),
        ("allocate", {"total_usd": "100", "lines": [{"name": "a", "usd_per_mtok": "x"}]},
         None, "not a number"),
        ("allocate", {"total_usd": "1", "dev_max_share": 3,
                      "lines": [{"name": "a", "usd_per_mtok": "1"}]}, "dev_max_share", "0 and 1"),
        ("whatif", {"changes": []}, "changes", "at least one"),
        ("whatif", {"changes": [{"kind": "teleport", "text": "1"}]}, "teleport", "choose from"),
        ("whatif", {"changes": [{"kind": "cache", "text": "2"}]}, "cache", "cannot read"),
        ("whatif", {"group_by": "colour", "changes": [{"kind": "growth", "text": "2"}]},
         "group_by", "choose from"),
        ("whatif", {"period": "someday", "changes": [{"kind": "growth", "text": "2"}]},
         None, "period"),
    ]  # fmt: skip
    for path, body, param, words in bad:
        response = post(gateway, path, body)
        assert response.status_code == 400, (path, body, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error", error
        assert words in error["message"], (words, error)
        if param is not None:
            assert error["param"] == param, (body, error)


def test_tco_without_ledger_usage_asks_for_the_api_price(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    fresh = start_gateway(tmp_path, gateway_config(tmp_path / "empty.db", mock_upstream))
    try:
        response = post(fresh, "tco", {"tokens_per_s": "5000", "gpu_price_usd": "30000"})
        assert response.status_code == 400
        assert "no usage in the last 30 days" in response.json()["error"]["message"]
        given = {"tokens_per_s": "5000", "gpu_price_usd": "30000", "api_usd_per_mtok": "3",
                 "monthly_mtok": "100"}  # fmt: skip
        assert post(fresh, "tco", given).json()["api"]["usd_per_month"] == "300.00"
        setup = fresh.admin("GET", "/ui/api/planner").json()
        assert setup["ledger"] is None and setup["departments"] == []
        assert "llama-2-70b" in {m["name"] for m in setup["models"]}
        assert {"h100-sxm", "h200", "l4", "b200"} <= {g["name"] for g in setup["gpus"]}
    finally:
        stop(fresh.process)


def test_capacity_endpoint_answers_what_the_cli_prints(gateway: Gateway) -> None:
    for fields in (CAPACITY, {"model": "mixtral-8x7b", "gpu": "a100-80gb", "gpus": "2",
                              "weights": "int8", "isl": "700", "osl": "300"}):  # fmt: skip
        response = post(gateway, "capacity", fields)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["report"] == capacity_cli(fields)
        # The curve is the CLI's answer at each concurrency, up to the most that fit.
        sweep = data["sweep"]
        unbounded = {k: v for k, v in fields.items() if k != "concurrency"}
        assert sweep[-1]["concurrency"] == capacity_cli(unbounded)["max_batch"]
        assert [p["concurrency"] for p in sweep] == sorted({p["concurrency"] for p in sweep})
        # The operating point is on the curve.
        served = data["operating_concurrency"]
        on_curve = next(p for p in sweep if p["concurrency"] == served)
        assert on_curve["output_tokens_per_s"] == data["report"]["output_tokens_per_s"]
        for point in (sweep[0], sweep[len(sweep) // 2], sweep[-1]):
            at = capacity_cli(unbounded | {"concurrency": str(point["concurrency"])})
            assert point == {k: at[k] for k in point if k != "concurrency"} | {
                "concurrency": point["concurrency"]
            }


# -- tokenomy plan on a real ledger ---------------------------------------------------------


def test_plan_tco_prices_the_api_from_the_ledger(gateway: Gateway, ledger: dict[str, Any]) -> None:
    tokens = sum(r["input_tokens"] + r["output_tokens"] for r in ledger["rows"])
    blended = (Decimal(ledger["total_cost_usd"]) * MILLION / tokens).quantize(Decimal("1e-6"))
    args = ["--tokens-per-s", "4000", "--gpus", "2", "--gpu-price-usd", "25000", "--json"]
    out = plan_cli("tco", *config(gateway), *args)
    assert Decimal(out["api_usd_per_mtok"]) == blended > 0
    assert out["monthly_mtok"] == pytest.approx(tokens / 1e6)  # 30 days of a 30-day window
    api_month = Decimal(tokens) * blended / MILLION
    assert Decimal(out["api_usd_per_month"]) == api_month.quantize(Decimal("0.01"))
    # The dashboard's calculator reads the same ledger and answers the same for buying.
    response = post(gateway, "tco", {"tokens_per_s": "4000", "gpus": "2", "gpu_price_usd": "25000"})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["buy"] == out and data["api"]["from_ledger"] is True
    assert Decimal(data["api"]["usd_per_mtok"]) == blended
    # Cumulative lines: capital on day one, then cash each month.
    line = data["timeline"]["cumulative_usd"]
    assert len(line["api"]) == 37 and Decimal(line["buy"][0]) == Decimal(out["capex_usd"])
    step = Decimal(line["buy"][12]) - Decimal(line["buy"][11])
    assert abs(step - Decimal(out["cash_usd_per_month"])) <= Decimal("0.01")
    assert "rent" not in data and "rent" not in line  # no GPU-hour price: no renting line


def test_plan_tco_payback_point_on_the_chart(gateway: Gateway, ledger: dict[str, Any]) -> None:
    body = {"tokens_per_s": "20000", "gpus": "8", "gpu_price_usd": "30000", "power_kw": "0.7",
            "ops_usd_per_month": "2000", "api_usd_per_mtok": "5", "monthly_mtok": "10000",
            "utilization": "0.5", "gpu_hour_usd": "2.5", "months": "24"}  # fmt: skip
    data = post(gateway, "tco", body).json()
    capex, power = 8 * 30000 * 1.25, 8 * 0.7 * 0.8 * 1.3 * 730 * 0.10
    payback = capex / (10000 * 5 - power - 2000)
    assert data["buy"]["payback_months"] == pytest.approx(payback, abs=0.01)
    assert data["payback"]["months"] == data["buy"]["payback_months"]
    # The marker sits on the API's line at the payback month (the month to two decimals).
    assert float(data["payback"]["usd"]) == pytest.approx(50000 * data["payback"]["months"])
    assert data["timeline"]["months"] == list(range(25))
    assert float(data["rent"]["cost_usd_per_month"]) == 8 * 2.5 * 730 + 2000  # rent + ops
    assert data["api"]["from_ledger"] is False


def test_plan_whatif_reprices_the_ledger(gateway: Gateway, ledger: dict[str, Any]) -> None:
    out = plan_cli(
        "whatif", *config(gateway), "--group-by", "team", "--price", "premium-model:10:30",
        "--switch", "team=search:reasoner", "--growth", "3", "--json",
    )  # fmt: skip
    by_team: dict[str, Decimal] = {}
    price: dict[str, Decimal] = {}
    switched: dict[str, Decimal] = {}
    for row in ledger["rows"]:
        team, cost = row["team"], Decimal(row["cost_usd"])
        by_team[team] = by_team.get(team, Decimal(0)) + cost
        tokens_in, tokens_out = Decimal(row["input_tokens"]), Decimal(row["output_tokens"])
        if row["model"] == "premium-model":  # the new price has no cached rate: input rate
            cost_new = (tokens_in * 10 + tokens_out * 30) / MILLION
        else:
            cost_new = cost
        price[team] = price.get(team, Decimal(0)) + cost_new
        if team == "search":  # reasoner: $1.10 in, $4.40 out per Mtok
            cost_new = (tokens_in * Decimal("1.10") + tokens_out * Decimal("4.40")) / MILLION
        else:
            cost_new = cost
        switched[team] = switched.get(team, Decimal(0)) + cost_new
    assert Decimal(PREMIUM_PRICE["input_per_mtok"]) < 10  # the change is a real change
    micro = Decimal("0.000001")
    rows = {r["group"]: r for r in out["rows"]}
    assert set(rows) == {"search", "support", "billing"}
    for team, rowed in rows.items():
        assert Decimal(rowed["baseline"]) == by_team[team].quantize(micro)
        assert Decimal(rowed["price premium-model:10:30"]) == price[team].quantize(micro)
        assert Decimal(rowed["switch team=search:reasoner"]) == switched[team].quantize(micro)
        assert abs(Decimal(rowed["growth 3"]) - 3 * by_team[team]) <= 3 * micro
    assert Decimal(out["total"]["baseline"]) == Decimal(ledger["total_cost_usd"]).quantize(micro)
    # The dashboard's what-if on the same period and changes answers the same.
    changes = [
        {"kind": "price", "text": "premium-model:10:30"},
        {"kind": "switch", "text": "team=search:reasoner"},
        {"kind": "growth", "text": "3"},
    ]
    response = post(gateway, "whatif", {"group_by": "team", "changes": changes})
    assert response.status_code == 200, response.text
    data = response.json()
    assert {k: data[k] for k in out} == out and data["period"] == "last 30 days"


def test_plan_allocate_apply_writes_budgets_the_gateway_enforces(
    tmp_path: Path, gateway: Gateway, ledger: dict[str, Any]
) -> None:
    plan = {
        "total_usd": "1",
        "lines": [
            {"name": "alloc-tight", "department": "alloc-tight", "usd_per_mtok": "1",
             "value_per_mtok": 1, "max_usd": "0.01"},
            {"name": "alloc-roomy", "department": "alloc-roomy", "usd_per_mtok": "1",
             "value_per_mtok": 2},
        ],
    }  # fmt: skip
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    keys = {
        name: gateway.create_key(team=name, department=name)
        for name in ("alloc-tight", "alloc-roomy")
    }
    # A request whose worst case (2,000 output tokens at $15/Mtok = $0.03) is above one
    # allocation and below the other.
    body = {"model": "premium-model", "messages": PROMPT, "max_tokens": 2000}
    assert gateway.chat(keys["alloc-tight"], body).status_code == 200  # no budget yet

    out = plan_cli("allocate", *config(gateway), str(path), "--apply", "--json")
    assert out["status"] == "optimal"
    assert sorted(out["applied"]) == ["plan-alloc-roomy", "plan-alloc-tight"]
    allocated = {a["line"]: a["usd"] for a in out["allocation"]}
    deadline = time.monotonic() + 10  # the gateway follows budget changes within a second
    while True:
        listed = gateway.admin("GET", "/admin/budgets").json()["data"]
        budgets = {b["name"]: b for b in listed}
        if {"plan-alloc-tight", "plan-alloc-roomy"} <= set(budgets):
            break
        assert time.monotonic() < deadline, f"the budgets never appeared: {sorted(budgets)}"
        time.sleep(0.2)
    for line, usd in allocated.items():
        budget = budgets[f"plan-{line}"]
        assert Decimal(budget["limit_usd"]) == Decimal(usd), budget
        assert budget["scope"] == {"department": line} and budget["period"] == "month"
    assert Decimal(allocated["alloc-tight"]) < Decimal("0.03") < Decimal(allocated["alloc-roomy"])

    refused = gateway.chat(keys["alloc-tight"], body)  # the gateway now holds the budgets
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert "plan-alloc-tight" in refused.json()["error"]["message"]
    assert gateway.chat(keys["alloc-roomy"], body).status_code == 200


# -- the page in a browser --------------------------------------------------------------------


def shown_number(text: str) -> float:
    cleaned = "".join(ch for ch in text if ch.isdigit() or ch in ".-")
    return float(cleaned)


def test_planner_page_shows_what_the_cli_prints(
    page: Any, gateway: Gateway, ledger: dict[str, Any], tmp_path: Path
) -> None:
    expected = capacity_cli(CAPACITY)
    page.goto(f"{gateway.url}/ui#/planner")
    page.wait_for_selector("#capacity-out #cap-output_tokens_per_s")  # the default point
    form = "#capacity-form"
    for name, value in CAPACITY.items():
        selector = f"{form} [name={name}]"
        if page.eval_on_selector(selector, "node => node.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#cap-gpus_needed")  # only the filled form asks for GPUs needed
    # Each figure: the exact number the CLI prints, shown to its display precision.
    tolerance = {"output_tokens_per_s": 0.5, "ttft_ms": 0.05, "tpot_ms": 0.05,
                 "max_batch": 0, "usd_per_mtok": 5e-4 * expected["usd_per_mtok"],
                 "energy_kwh_per_mtok": 0.005, "gpus_needed": 0}  # fmt: skip
    for key, slack in tolerance.items():
        node = page.locator(f"#cap-{key}")
        assert float(node.get_attribute("data-value")) == expected[key], key
        shown = shown_number(node.locator(".kpi-value").inner_text())
        assert abs(shown - expected[key]) <= slack + 1e-9, (key, shown, expected[key])
    chart_drawn(page, "chart-capacity")
    pixels = painted(page, "chart-capacity")
    assert pixels["coloured"] > 300, pixels
    shot(page, "planner-capacity")

    # An infeasible allocation names the constraints that conflict, as the CLI does.
    plan_path = tmp_path / "infeasible.yaml"
    plan_path.write_text(yaml.safe_dump(INFEASIBLE))
    cli_out = plan_cli("allocate", *config(gateway), str(plan_path), "--json", code=2)
    page.goto(f"{gateway.url}/ui#/planner?tab=allocate")
    page.wait_for_selector("#alloc-form")
    page.wait_for_selector("#alloc-out .kpis, #alloc-out .error")  # the default plan ran
    rows = page.locator("#alloc-form tbody tr")
    while rows.count() < len(INFEASIBLE["lines"]):
        page.click("#alloc-add")
    while rows.count() > len(INFEASIBLE["lines"]):
        rows.nth(rows.count() - 1).locator("button").click()
    page.fill("#alloc-total", INFEASIBLE["total_usd"])
    for index, line in enumerate(INFEASIBLE["lines"]):
        row = f'#alloc-form tr[data-row="{index}"]'
        for key in ("name", "usd_per_mtok", "value_per_mtok", "min_usd", "max_usd", "demand_mtok"):
            page.fill(f"{row} [name={key}]", str(line.get(key, "")))
    page.click("#alloc-form button[type=submit]")
    conflict = page.wait_for_selector("#alloc-conflict")
    shown = sorted(
        chip.get_attribute("data-constraint")
        for chip in conflict.query_selector_all("[data-constraint]")
    )
    assert (
        shown
        == sorted(cli_out["conflicting_constraints"])
        == ["research.min", "support.min", "total"]
    )
    assert cli_out["explanation"] in conflict.inner_text()
    shot(page, "planner-allocation-infeasible")
    # Relaxing the conflict gives an allocation within the total.
    page.fill('#alloc-form tr[data-row="1"] [name=min_usd]', "100")
    page.click("#alloc-form button[type=submit]")
    page.wait_for_selector('#alloc-out tr[data-line="research"]')
    spent = sum(
        Decimal(str(row.get_attribute("data-usd")))
        for row in page.query_selector_all("#alloc-out tr[data-line]")
    )
    assert spent <= Decimal(INFEASIBLE["total_usd"])
    chart_drawn(page, "chart-allocation")
    shot(page, "planner-allocation")

    # Rent or buy: the API side is the ledger's spend; what-if re-prices its period.
    page.goto(f"{gateway.url}/ui#/planner?tab=tco")
    api = page.wait_for_selector("#tco-api")
    tco = plan_cli("tco", *config(gateway), "--model", "llama-3.1-70b", "--gpu", "h100-sxm",
                   "--gpus", "8", "--weights", "fp8", "--json")  # fmt: skip
    assert Decimal(str(api.get_attribute("data-value"))) == Decimal(tco["api_usd_per_month"])
    payback = page.get_attribute("#tco-payback", "data-value")
    assert (payback or None) == (
        None if tco["payback_months"] is None else str(tco["payback_months"])
    )
    chart_drawn(page, "chart-tco")
    page.fill("#tco-form [name=api_usd_per_mtok]", "5")
    page.fill("#tco-form [name=monthly_mtok]", "20000")
    page.click("#tco-form button[type=submit]")
    page.wait_for_selector('#tco-api .kpi-value:text-is("$100,000.00")')
    chart_drawn(page, "chart-tco")
    shot(page, "planner-tco")

    page.goto(f"{gateway.url}/ui#/planner?tab=whatif")
    page.wait_for_selector("#whatif-0")
    total = gateway.admin("GET", "/admin/spend").json()["total_cost_usd"]
    assert Decimal(str(page.get_attribute("#whatif-0", "data-value"))) == Decimal(total).quantize(
        Decimal("0.000001")
    )
    chart_drawn(page, "chart-whatif")
    shot(page, "planner-whatif")
