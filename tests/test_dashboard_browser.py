"""The web dashboard (/ui) in a real browser: Debian's Chromium driven by Playwright, against
a real gateway with traffic sent through the openai SDK. Also the page-data API the browser
uses (login, auth, CSRF header, SSE), over plain HTTP, and the remembered rollup sums.

Screenshots land in tests/artifacts/. Without Chromium the browser tests skip, except
under CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import ADMIN_KEY, REPO, Gateway

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "tests" / "artifacts"
PROMPT = [{"role": "user", "content": "Summarize the quarterly report in two sentences."}]


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium; make test does it)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, gateway: Gateway) -> Iterator[Any]:
    """A fresh browser context (no cookies), logged in to the dashboard."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    errors = watch(tab)
    tab.goto(f"{gateway.url}/ui")
    tab.fill("#login-key", ADMIN_KEY)
    tab.click("#login-form button[type=submit]")
    tab.wait_for_selector("#total-spend")
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def watch(page: Any) -> list[str]:
    """Collect script errors and refused loads (e.g. by the page's content security policy)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "401" not in message.text
            else None
        ),
    )
    return errors


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def traffic(gateway: Gateway, team: str, models: tuple[str, ...], **principal: str) -> str:
    key = gateway.create_key(team=team, **principal)
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    for model in models:
        client.chat.completions.create(
            model=model,
            messages=PROMPT,
            max_tokens=40,
            extra_headers={"x-tokenomy-workflow": f"{team}-flow"},
        )
    return key


def spend_total(gateway: Gateway) -> str:
    response = gateway.admin("GET", "/admin/spend")
    assert response.status_code == 200, response.text
    return str(response.json()["total_cost_usd"])


def shown_close(text: str, exact: str) -> bool:
    """Whether the dashboard's text is the exact amount in its display format: two decimals
    from $1, four below, "<$0.0001" for smaller non-zero amounts."""
    amount = Decimal(exact)
    if amount == 0:
        return text == "$0.00"
    if amount < Decimal("0.0001"):
        return text == "<$0.0001"
    places = Decimal("0.01") if amount >= 1 else Decimal("0.0001")
    shown = Decimal(text.replace("$", "").replace(",", ""))
    same_places = shown.as_tuple().exponent == places.as_tuple().exponent
    return same_places and abs(shown - amount) <= places / 2


def chart_drawn(page: Any, canvas_id: str) -> None:
    page.wait_for_function(
        "(id) => window.Chart && Chart.getChart(document.getElementById(id))", arg=canvas_id
    )


def painted(page: Any, canvas_id: str) -> dict[str, int]:
    """Pixels of a chart: all non-transparent ones, and the coloured ones inside the plot
    area (bars and slices, not the grey axes or the legend)."""
    return dict(
        page.evaluate(
            """(id) => {
              const canvas = document.getElementById(id);
              const chart = window.Chart.getChart(canvas);
              const area = chart.chartArea;
              const ctx = canvas.getContext("2d");
              const all = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
              const ratio = canvas.width / canvas.clientWidth;
              const plot = ctx.getImageData(area.left * ratio, area.top * ratio,
                  (area.right - area.left) * ratio, (area.bottom - area.top) * ratio).data;
              let opaque = 0, coloured = 0;
              for (let i = 3; i < all.length; i += 4) if (all[i] > 0) opaque++;
              for (let i = 0; i < plot.length; i += 4) {
                const spread = Math.max(plot[i], plot[i + 1], plot[i + 2])
                    - Math.min(plot[i], plot[i + 1], plot[i + 2]);
                if (plot[i + 3] > 200 && spread > 60) coloured++;
              }
              return { opaque, coloured, width: canvas.width, height: canvas.height };
            }""",
            canvas_id,
        )
    )


# -- the browser ------------------------------------------------------------------------------


def test_overview_shows_total_spend_and_a_chart(browser: Any, gateway: Gateway) -> None:
    traffic(gateway, "search", ("premium-model", "gpt-4o-mini", "reasoner"), user="ann")
    traffic(gateway, "support", ("premium-model", "premium-model"), user="bob")
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors = watch(page)
    page.goto(f"{gateway.url}/ui")
    page.wait_for_selector("#login-key")
    shot(page, "login")
    page.fill("#login-key", "not-the-key")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:text('not the admin key')")
    page.fill("#login-key", ADMIN_KEY)
    page.click("#login-form button[type=submit]")

    total = spend_total(gateway)
    figure = page.wait_for_selector("#total-spend .kpi-value")
    assert figure.get_attribute("data-usd") == total
    assert shown_close(figure.inner_text(), total), (figure.inner_text(), total)
    chart_drawn(page, "chart-month")
    pixels = painted(page, "chart-month")
    assert pixels["opaque"] > 1000 and pixels["coloured"] > 100, pixels
    assert "search" in page.inner_text("#page") and "support" in page.inner_text("#page")
    shot(page, "overview")

    page.goto(f"{gateway.url}/ui#/explorer?range=24h&group_by=model")
    chart_drawn(page, "chart-explorer")
    assert painted(page, "chart-explorer")["coloured"] > 50
    assert page.locator("td", has_text="premium-model").count() == 1
    csv = httpx.get(
        f"{gateway.url}{page.get_attribute('#csv-link', 'href')}",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert csv.status_code == 200 and csv.text.startswith("hour,model,requests")
    shot(page, "explorer")

    page.goto(f"{gateway.url}/ui#/models")
    chart_drawn(page, "chart-models")
    assert painted(page, "chart-models")["coloured"] > 100
    shot(page, "models")

    page.goto(f"{gateway.url}/ui#/requests")
    page.wait_for_selector("#requests-table tr[data-id]")
    assert "not stored" in page.inner_text("#page")
    shot(page, "requests")
    context.close()
    assert not errors, errors


def test_budget_edit_in_the_ui_changes_enforcement(page: Any, gateway: Gateway) -> None:
    key = gateway.create_key(team="ui-capped", department="ui-dept")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    for name, scope, limit in (
        ("ui-dept-month", {"department": "ui-dept"}, "50.00"),
        ("ui-capped-day", {"team": "ui-capped"}, "10.00"),
    ):
        response = gateway.admin(
            "PUT",
            f"/admin/budgets/{name}",
            json={
                "scope": scope,
                "period": "day" if "day" in name else "month",
                "limit_usd": limit,
                "thresholds": [{"at": 0.5, "action": "alert"}, {"at": 1.0, "action": "block"}],
            },
        )
        assert response.status_code == 200, response.text
    client.chat.completions.create(model="premium-model", messages=PROMPT, max_tokens=40)

    def set_limit(value: str) -> None:
        page.goto(f"{gateway.url}/ui#/budgets")
        row = page.wait_for_selector('tr[data-budget="ui-capped-day"]')
        row.query_selector("button.edit").click()
        page.fill('tr[data-budget="ui-capped-day"] input.edit-limit', value)
        shot(page, f"budgets-editing-{value}")
        page.click('tr[data-budget="ui-capped-day"] button[type=submit]')
        page.wait_for_selector(f'tr[data-budget="ui-capped-day"] .limit[data-usd="{value}"]')

    set_limit("0.000001")
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="premium-model", messages=PROMPT, max_tokens=40)
    assert refused.value.code == "budget_exceeded"
    page.goto(f"{gateway.url}/ui#/budgets")
    # The hierarchy: the team's budget sits under its department's.
    page.wait_for_selector('tr[data-budget="ui-capped-day"] .tree-elbow')
    assert "block" in page.inner_text('tr[data-budget="ui-capped-day"]')
    shot(page, "budgets-blocked")

    set_limit("10")
    answer = client.chat.completions.create(model="premium-model", messages=PROMPT, max_tokens=40)
    assert answer.choices[0].message.content
    audit = gateway.admin("GET", "/admin/audit?budget=ui-capped-day").json()["data"]
    assert audit[0]["actor"] == "dashboard"
    shot(page, "budgets")


def test_requests_arrive_live_over_sse(page: Any, gateway: Gateway) -> None:
    key = gateway.create_key(team="live-team", user="lee")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    page.wait_for_selector('#live-state[data-state="on"]')
    before = page.get_attribute("#total-spend .kpi-value", "data-usd")
    raw = client.chat.completions.with_raw_response.create(
        model="premium-model", messages=PROMPT, max_tokens=40
    )
    request_id = raw.headers["x-request-id"]
    page.wait_for_selector(f'#live-feed li[data-id="{request_id}"]', timeout=10_000)
    assert "lee" in page.inner_text(f'#live-feed li[data-id="{request_id}"]')
    # The figures follow: the overview refreshes itself after live events.
    total = spend_total(gateway)
    assert total != before
    page.wait_for_selector(f'#total-spend .kpi-value[data-usd="{total}"]', timeout=10_000)
    shot(page, "overview-live")

    page.goto(f"{gateway.url}/ui#/requests?team=live-team")
    page.wait_for_selector(f'#requests-table tr[data-id="{request_id}"]')
    page.wait_for_selector('#live-state[data-state="on"]')
    second = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, max_tokens=40
    )
    page.wait_for_selector(f'#requests-table tr[data-id="{second.headers["x-request-id"]}"]')


# -- the page-data API over HTTP (no browser) ------------------------------------------------


def test_page_data_needs_the_admin_key_or_a_session(gateway: Gateway) -> None:
    url = gateway.url
    assert httpx.get(f"{url}/ui").status_code == 200
    assert httpx.get(f"{url}/ui/static/vendor/chart.umd.min.js").status_code == 200
    for path in ("overview", "budgets", "explorer", "models", "requests", "events"):
        assert httpx.get(f"{url}/ui/api/{path}").status_code == 401, path
    assert httpx.post(f"{url}/ui/login", json={"key": "wrong"}).status_code == 401
    with httpx.Client(base_url=url) as browser_like:
        login = browser_like.post("/ui/login", json={"key": ADMIN_KEY})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and ADMIN_KEY not in cookie
        assert browser_like.get("/ui/api/overview").status_code == 200
        # A change needs the dashboard's own header (a cross-site form cannot send it).
        change = {"limit_usd": "5"}
        gateway.admin("PUT", "/admin/budgets/csrf-probe", json={"limit_usd": "1"})
        assert browser_like.put("/ui/api/budgets/csrf-probe", json=change).status_code == 403
        ok = browser_like.put(
            "/ui/api/budgets/csrf-probe", json=change, headers={"x-tokenomy-ui": "1"}
        )
        assert ok.status_code == 200 and ok.json()["limit_usd"] == "5"
        browser_like.post("/ui/logout", headers={"x-tokenomy-ui": "1"})
        assert browser_like.get("/ui/api/overview").status_code == 401


def test_overview_total_matches_the_reports(gateway: Gateway) -> None:
    traffic(gateway, "reports", ("premium-model", "claude-sonnet", "llama-70b"))
    data = gateway.admin("GET", "/ui/api/overview").json()
    assert data["all_time"]["cost_usd"] == spend_total(gateway)
    month = gateway.admin("GET", "/admin/spend?period=this-month").json()
    assert data["month"]["cost_usd"] == month["total_cost_usd"]
    assert data["forecast"] is None and data["savings"]["total_usd"] == "0"
    explorer = gateway.admin("GET", "/ui/api/explorer?range=month&group_by=team").json()
    report = gateway.admin("GET", "/admin/spend?period=this-month&group_by=team").json()
    assert {r["team"]: r["cost_usd"] for r in explorer["rows"]} == {
        r["team"]: r["cost_usd"] for r in report["rows"]
    }


def test_sse_stream_carries_committed_events(gateway: Gateway) -> None:
    key = gateway.create_key(team="sse-team")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.stream("GET", f"{gateway.url}/ui/api/events", headers=headers, timeout=10) as feed:
        assert feed.headers["content-type"].startswith("text/event-stream")
        lines = feed.iter_lines()
        assert next(lines) == "retry: 1000"
        sent = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, max_tokens=10
        )
        deadline = time.monotonic() + 10
        for line in lines:
            if sent.headers["x-request-id"] in line:
                assert line.startswith("data: ") and "sse-team" in line and "prompt" not in line
                break
            assert time.monotonic() < deadline, "the event did not arrive"
        else:
            pytest.fail("the stream ended before the event arrived")


# -- remembered rollup sums ------------------------------------------------------------------


def _event(index: int, ts_ms: int, cost_pico: int) -> Any:
    from tokenomy.ledger.event import UsageEvent
    from tokenomy.usage import Usage

    return UsageEvent(
        id=f"req_memo_{index}",
        ts_ms=ts_ms,
        tenant="default",
        key_id="key_1",
        user="ann",
        team="search",
        department="eng",
        project="",
        environment="prod",
        workflow="",
        tags={},
        endpoint="chat.completions",
        requested_model="m",
        model="m",
        tier="mid",
        upstream="mock",
        route_reason="requested",
        usage=Usage(input_tokens=10, output_tokens=5),
        cost_pico=cost_pico,
        latency_ms=1.0,
        status=200,
    )


def test_remembered_sums_follow_late_events(tmp_path: Path) -> None:
    from tokenomy import database
    from tokenomy.dashboard.memo import RollupMemo
    from tokenomy.ledger.sqlite import SqliteLedgerStore

    day = 86_400_000
    now = (int(time.time() * 1000) // day) * day + day // 2
    conn = database.connect(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = SqliteLedgerStore(conn)
    store.write_batch([_event(1, now - day, 3_000), _event(2, now, 4_000)])
    memo = RollupMemo()

    def totals() -> dict[int, int]:
        grouped = memo.grouped(
            conn, "day", now - day - day // 2, now + day // 2, "team", now_ms=now
        )
        return {start: groups["search"].cost_pico for start, groups in grouped.items()}

    yesterday, today = (now - day - day // 2) // 1000, (now - day // 2) // 1000
    assert totals() == {yesterday: 3_000, today: 4_000}
    assert memo.misses == 1  # yesterday is over: read once, then remembered
    late = _event(3, now - day, 500)  # a long request recorded after its day ended
    store.write_batch([late])
    assert totals()[yesterday] == 3_000  # not seen yet: remembered
    memo.observe(late)  # what the gateway's listener does after the commit
    assert totals() == {yesterday: 3_500, today: 4_000}
    store.write_batch([_event(4, now, 1)])  # today is open: always read
    assert totals()[today] == 4_001
    conn.close()
