"""The web dashboard's routes: ``/ui`` (the page), ``/ui/static/...`` (its files),
``/ui/login``/``/ui/logout``, the page data under ``/ui/api/...`` and the live feed
``/ui/api/events`` (server-sent events).

Login: the admin key is posted once to ``/ui/login``, which answers with an HttpOnly,
SameSite=Strict session cookie (see ``tokenomy.dashboard.session``). A cookie rather than
a key kept in ``sessionStorage``: ``EventSource`` cannot send an Authorization header, CSV
downloads are plain links, and the page's scripts never hold the key. Requests that change
something must also carry ``x-tokenomy-ui: 1`` (a header a cross-site form cannot send).
The API also accepts ``Authorization: Bearer <admin key>`` like ``/admin``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from tokenomy.dashboard import (
    STATIC_DIR,
    budget_tree,
    explorer,
    overview,
    planner,
    ranges,
    session,
    tables,
)
from tokenomy.dashboard.forecast_slot import ForecastSource
from tokenomy.dashboard.live import EventStream
from tokenomy.dashboard.memo import RollupMemo
from tokenomy.database import Connection
from tokenomy.errors import AuthenticationFailed, InvalidRequest, PermissionDenied, TokenomyError
from tokenomy.gateway.admin import reader
from tokenomy.gateway.state import Gateway
from tokenomy.principals.keys import same_secret

log = logging.getLogger("tokenomy.dashboard")
_EXPLORER_PARAMS = {"range", "bucket", "group_by"}
# Everything the page loads is served from here: no CDN, nothing inline, no framing.
_PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


@dataclass
class DashboardState:
    forecast: ForecastSource | None = None
    gateway: Gateway | None = None
    memo: RollupMemo = field(default_factory=RollupMemo)


def _state(request: Request) -> DashboardState:
    state: DashboardState = request.app.state.dashboard
    return state


def _gateway(request: Request) -> Gateway:
    gateway: Gateway | None = request.app.state.owner.gateway
    if gateway is None:
        raise TokenomyError("the gateway is not started")
    return gateway


def _admin_key(gateway: Gateway) -> str:
    key = gateway.settings.admin_key
    if not key:
        raise PermissionDenied(
            "the dashboard is disabled: set admin_key in the config or TOKENOMY_ADMIN_KEY",
            code="admin_disabled",
        )
    return key


def require_ui_admin(request: Request) -> Gateway:
    """The session cookie or the admin key as a bearer token."""
    gateway = _gateway(request)
    key = _admin_key(gateway)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and same_secret(token.strip(), key):
        return gateway
    cookie = request.cookies.get(session.COOKIE)
    if cookie and session.valid(cookie, key):
        if request.method not in ("GET", "HEAD") and request.headers.get("x-tokenomy-ui") != "1":
            raise PermissionDenied("changes from the dashboard need x-tokenomy-ui: 1")
        return gateway
    raise AuthenticationFailed("log in with the admin key", code="login_required")


UiAdmin = Annotated[Gateway, Depends(require_ui_admin)]


def _live(request: Request, gateway: Gateway) -> DashboardState:
    """The dashboard state, following this gateway's ledger (a new gateway after a restart
    in the same process gets a fresh memo)."""
    state = _state(request)
    if state.gateway is not gateway:
        state.memo = RollupMemo()
        gateway.listeners.append(state.memo.observe)
        state.gateway = gateway
    return state


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _filters(request: Request, reserved: set[str]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if k not in reserved and v != ""}


def _forecast(source: ForecastSource | None, method: str, *args: Any) -> dict[str, Any] | None:
    if source is None:
        return None
    try:
        answer: dict[str, Any] | None = getattr(source, method)(*args)
        return answer
    except Exception:  # a forecast must never take a page down
        log.exception("forecast %s failed", method)
        return None


async def _budget_states(gateway: Gateway) -> list[dict[str, Any]]:
    return [await gateway.enforcer.state(budget) for budget in gateway.budgets.all()]


def _watched(gateway: Gateway, name: str) -> dict[str, Any] | None:
    """The spend watch's latest forecast of a budget, in the dashboard's shape (None until
    the watch has run, or while the budget has too little history)."""
    found = gateway.watch.forecasts.get(name) if gateway.watch else None
    if not found or found.get("method") == "none":
        return None
    return {
        "exhausts_at": found.get("exhausts_at"),
        "exhausted": bool(found.get("exhausted")),
        "period_end_usd": found.get("forecast_usd"),
        "low_usd": found.get("lower_usd"),
        "high_usd": found.get("upper_usd"),
        "basis": found.get("note") or found.get("method"),
    }


def _month_forecast(gateway: Gateway, states: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Spend to the end of the month: the forecast of a budget over everything, if any."""
    for budget in states:
        if not budget["scope"] and budget["period"] == "month" and budget.get("forecast"):
            return dict(budget["forecast"])
    return None


def _with_budget_forecasts(
    gateway: Gateway, state: DashboardState, states: list[dict[str, Any]], now_ms: int
) -> list[dict[str, Any]]:
    if state.forecast is None:
        return [{**s, "forecast": _watched(gateway, s["name"])} for s in states]
    with reader(gateway) as conn:
        return [
            {**s, "forecast": _forecast(state.forecast, "budget", conn, s, now_ms)} for s in states
        ]


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON", param="body") from None
    if not isinstance(body, dict):
        raise InvalidRequest("send a JSON object", param="body")
    return body


def register_dashboard(app: FastAPI, forecast: ForecastSource | None = None) -> None:
    app.state.dashboard = DashboardState(forecast=forecast)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    @app.post("/ui/login", tags=["dashboard"])
    async def login(request: Request) -> Response:
        """Trade the admin key for a session cookie: ``{"key": "..."}``."""
        key = _admin_key(_gateway(request))
        try:
            given = orjson.loads(await request.body()).get("key", "")
        except (orjson.JSONDecodeError, AttributeError):
            raise InvalidRequest('send {"key": "<admin key>"}', param="key") from None
        if not isinstance(given, str) or not same_secret(given.strip(), key):
            raise AuthenticationFailed("that is not the admin key", code="invalid_admin_key")
        response = JSONResponse({"ok": True})
        response.set_cookie(
            session.COOKIE,
            session.issue(key),
            max_age=session.LIFETIME_S,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/ui/logout", tags=["dashboard"])
    def logout() -> Response:
        response = JSONResponse({"ok": True})
        response.delete_cookie(session.COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    @app.get("/ui/api/session", tags=["dashboard"])
    def who(gw: UiAdmin) -> dict[str, Any]:
        return {"ok": True, "store_content": gw.settings.ledger.store_content}

    @app.get("/ui/api/overview", tags=["dashboard"])
    async def overview_data(request: Request, gw: UiAdmin) -> dict[str, Any]:
        state = _live(request, gw)
        now = _now_ms()
        budgets = _with_budget_forecasts(gw, state, await _budget_states(gw), now)
        budgets.sort(key=lambda b: -float(b["fraction_used"]))

        def build() -> dict[str, Any]:
            with reader(gw) as conn:
                month = _forecast(state.forecast, "month", conn, now)
                month = month or _month_forecast(gw, budgets)
                return overview.overview(conn, state.memo, now, budgets, month)

        return await run_in_threadpool(build)

    @app.get("/ui/api/budgets", tags=["dashboard"])
    async def budgets_data(request: Request, gw: UiAdmin) -> dict[str, Any]:
        state = _live(request, gw)
        now = _now_ms()
        states = _with_budget_forecasts(gw, state, await _budget_states(gw), now)

        def build() -> dict[str, Any]:
            with reader(gw) as conn:
                org = budget_tree.org_rows(conn)
            return {"budgets": budget_tree.arrange(states, org), "timezone": gw.settings.timezone}

        return await run_in_threadpool(build)

    @app.put("/ui/api/budgets/{name}", tags=["dashboard"])
    async def edit_budget(name: str, request: Request, gw: UiAdmin) -> dict[str, Any]:
        """Change a budget's limit or thresholds; it applies from the next request."""
        try:
            change = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise InvalidRequest("the request body is not valid JSON") from None
        if not isinstance(change, dict) or not change or set(change) - {"limit_usd", "thresholds"}:
            raise InvalidRequest("send limit_usd and/or thresholds", param="body")
        budget = gw.budgets.get(name)
        definition = {**budget.public(), "starts_at_ms": budget.starts_at_ms, **change}
        actor = request.headers.get("x-tokenomy-actor", "").strip()[:120]
        updated = gw.budgets.put(name, definition, f"dashboard:{actor}" if actor else "dashboard")
        return await gw.enforcer.state(updated)

    @app.get("/ui/api/explorer", tags=["dashboard"])
    async def explorer_data(
        request: Request,
        gw: UiAdmin,
        range_: Annotated[str, Query(alias="range")] = "30d",
        bucket: str | None = None,
        group_by: str | None = None,
    ) -> dict[str, Any]:
        state = _live(request, gw)
        window = ranges.window(range_, _now_ms(), bucket or None)
        filters = _filters(request, _EXPLORER_PARAMS)

        def build() -> dict[str, Any]:
            with reader(gw) as conn:
                return explorer.explore(conn, state.memo, window, group_by or None, filters)

        return await run_in_threadpool(build)

    @app.get("/ui/api/explorer.csv", tags=["dashboard"])
    def explorer_csv(
        request: Request,
        gw: UiAdmin,
        range_: Annotated[str, Query(alias="range")] = "30d",
        bucket: str | None = None,
        group_by: str | None = None,
    ) -> Response:
        window = ranges.window(range_, _now_ms(), bucket or None)
        filters = _filters(request, _EXPLORER_PARAMS)
        with reader(gw) as conn:
            body = explorer.explore_csv(conn, window, group_by or None, filters)
        name = f"tokenomy-spend-{range_}-{group_by or 'all'}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/ui/api/values", tags=["dashboard"])
    def values(gw: UiAdmin, dimension: str) -> dict[str, Any]:
        with reader(gw) as conn:
            return {"dimension": dimension, "values": explorer.distinct_values(conn, dimension)}

    @app.get("/ui/api/models", tags=["dashboard"])
    async def models_data(request: Request, gw: UiAdmin) -> dict[str, Any]:
        state = _live(request, gw)

        def build() -> dict[str, Any]:
            with reader(gw) as conn:
                return tables.models_page(conn, state.memo, gw.catalog, _now_ms())

        return await run_in_threadpool(build)

    @app.get("/ui/api/requests", tags=["dashboard"])
    def requests_data(request: Request, gw: UiAdmin, limit: int = 100) -> dict[str, Any]:
        filters = _filters(request, {"limit"})
        store = gw.settings.ledger.store_content
        with reader(gw) as conn:
            return tables.requests_page(conn, min(max(limit, 1), 1000), filters, store)

    @app.get("/ui/api/events", tags=["dashboard"])
    async def events(gw: UiAdmin) -> EventStream:
        """Committed ledger events as server-sent events (``event: usage``)."""
        return EventStream(gw.listeners)

    # -- the Planner: calculators over the planning modules (POST: inputs are documents) --

    @app.get("/ui/api/planner", tags=["dashboard"])
    def planner_setup(gw: UiAdmin) -> dict[str, Any]:
        """Catalog models and GPUs, the ledger's API spend, departments, priced models."""
        with reader(gw) as conn:
            return planner.setup(conn, gw.catalog)

    @app.post("/ui/api/planner/capacity", tags=["dashboard"])
    async def planner_capacity(request: Request, gw: UiAdmin) -> dict[str, Any]:
        """``tokenomy plan capacity`` plus throughput and TPOT over concurrency."""
        body = await _json_object(request)
        return await run_in_threadpool(planner.capacity, body)

    @app.post("/ui/api/planner/tco", tags=["dashboard"])
    async def planner_tco(request: Request, gw: UiAdmin) -> dict[str, Any]:
        """Rent and buy against the ledger's API spend; cumulative costs by month."""
        body = await _json_object(request)
        return await _on_ledger(gw, lambda conn: planner.tco(body, conn))

    @app.post("/ui/api/planner/allocate", tags=["dashboard"])
    async def planner_allocate(request: Request, gw: UiAdmin) -> dict[str, Any]:
        """The allocation LP on a plan (PLAN.yaml's shape); infeasible plans name the
        conflicting constraints (status ``infeasible``, still a 200: it is an answer)."""
        body = await _json_object(request)
        return await _on_ledger(gw, lambda conn: planner.allocation(body, conn))

    @app.post("/ui/api/planner/whatif", tags=["dashboard"])
    async def planner_whatif(request: Request, gw: UiAdmin) -> dict[str, Any]:
        """A ledger period re-priced under alternatives, side by side."""
        body = await _json_object(request)
        lookup = planner.price_lookup(gw.catalog)
        return await _on_ledger(gw, lambda conn: planner.whatif(body, conn, lookup))


async def _on_ledger(
    gateway: Gateway, compute: Callable[[Connection], dict[str, Any]]
) -> dict[str, Any]:
    """``compute`` on a read connection to the ledger, in a worker thread."""

    def run() -> dict[str, Any]:
        with reader(gateway) as conn:
            return compute(conn)

    return await run_in_threadpool(run)
