"""The admin API under ``/admin`` (FastAPI, for its OpenAPI document), behind the admin key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokenomy import database
from tokenomy.analytics.requests import latest_requests, request_detail
from tokenomy.analytics.spend import query_spend, spend_query
from tokenomy.database import Connection
from tokenomy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    TokenomyError,
    error_body,
)
from tokenomy.gateway.state import Gateway
from tokenomy.principals.keys import same_secret

if TYPE_CHECKING:
    from tokenomy.gateway.app import TokenomyApp

RESERVED_PARAMS = {"group_by", "from", "to", "period", "limit"}


class KeyCreate(BaseModel):
    """A new virtual key's principal. Every field is optional."""

    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=200)
    project: str | None = Field(default=None, max_length=200)
    environment: str | None = Field(default=None, max_length=200, examples=["prod"])
    tenant: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    tags: dict[str, str] | list[str] | None = None
    allowed_models: list[str] | None = None
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute.")
    allow_critical: bool | None = Field(
        default=None,
        description="May mark requests critical (x-tokenomy-priority) to skip downgrades.",
    )
    cache_opt_out: bool | None = Field(
        default=None, description="Never answered from, nor stored in, the response cache."
    )


class ThresholdBody(BaseModel):
    at: float = Field(gt=0, le=1, description="Fraction of the limit, e.g. 0.8.")
    action: str = Field(description="alert, downgrade, defer or block")
    from_tier: str | None = None
    to_tier: str | None = None
    to_model: str | None = None
    webhook: str | None = None
    slack: bool = False


class BudgetBody(BaseModel):
    """A budget definition (documentation of PUT /admin/budgets/{name})."""

    model_config = ConfigDict(extra="forbid")
    scope: dict[str, str] = Field(
        default_factory=dict,
        description="Selectors: tenant, department, team, user, key, project, environment, "
        "model, tier, tag:NAME.",
        examples=[{"team": "support"}],
    )
    period: str = Field(default="month", description="day, week, month or total")
    limit_usd: str = Field(description='Decimal string, e.g. "10.00".')
    limit_tokens: int | None = None
    thresholds: list[ThresholdBody] = Field(default_factory=list)
    starts_at_ms: int | None = None


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its $defs inlined (OpenAPI has no local $defs)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_BUDGET_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline_schema(BudgetBody)}},
    }
}


class KeyCreated(BaseModel):
    id: str
    key: str = Field(description="The secret key; shown once, stored only as a hash.")
    principal: dict[str, Any]


def _gateway(request: Request) -> Gateway:
    gateway: Gateway | None = request.app.state.owner.gateway
    if gateway is None:
        raise TokenomyError("the gateway is not started")
    return gateway


def require_admin(request: Request) -> Gateway:
    gateway = _gateway(request)
    expected = gateway.settings.admin_key
    if not expected:
        raise PermissionDenied(
            "the admin API is disabled: set admin_key in the config or TOKENOMY_ADMIN_KEY",
            code="admin_disabled",
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not same_secret(token.strip(), expected):
        raise AuthenticationFailed("admin key missing or wrong", code="invalid_admin_key")
    return gateway


Admin = Annotated[Gateway, Depends(require_admin)]


@contextmanager
def reader(gateway: Gateway) -> Iterator[Connection]:
    """A connection of its own per admin query: reads never queue behind the writer."""
    conn = database.connect(gateway.settings.database)
    try:
        yield conn
    finally:
        conn.close()


def create_admin_app(owner: TokenomyApp) -> FastAPI:
    app = FastAPI(
        title="tokenomy admin API",
        version="0.1.0",
        openapi_url="/admin/openapi.json",
        docs_url="/admin/docs",
        redoc_url=None,
    )

    app.state.owner = owner

    @app.exception_handler(TokenomyError)
    async def _tokenomy_error(_: Request, exc: TokenomyError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [
            str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")
        ]
        param = ".".join(location) or None
        message = (
            f"{param}: {first.get('msg', 'invalid')}"
            if param
            else str(first.get("msg", "invalid request"))
        )
        return JSONResponse(
            error_body(message, "invalid_request_error", param, "invalid_value"), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 413: "request_too_large"}.get(exc.status_code)
        return JSONResponse(
            error_body(str(exc.detail), type_, None, code), status_code=exc.status_code
        )

    from tokenomy.batch.api import router as batch_router

    app.include_router(batch_router)

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request) -> dict[str, Any]:
        gw = _gateway(request)
        return {"status": "ok", "models": len(gw.catalog), "ledger_committed": gw.ledger.committed}

    @app.post("/admin/keys", response_model=KeyCreated, tags=["keys"], status_code=200)
    def create_key(body: KeyCreate, gw: Admin) -> dict[str, Any]:
        record, key = gw.keys.create(body.model_dump(exclude_none=True))
        return {"id": record["id"], "key": key, "principal": record}

    @app.get("/admin/keys", tags=["keys"])
    def list_keys(gw: Admin, include_revoked: bool = False) -> dict[str, Any]:
        return {"data": gw.keys.list(include_revoked)}

    @app.get("/admin/keys/{key_id}", tags=["keys"])
    def get_key(key_id: str, gw: Admin) -> dict[str, Any]:
        return gw.keys.get(key_id)

    @app.delete("/admin/keys/{key_id}", tags=["keys"])
    def revoke_key(key_id: str, gw: Admin) -> dict[str, Any]:
        return gw.keys.revoke(key_id)

    @app.put("/admin/budgets/{name}", tags=["budgets"], openapi_extra=_BUDGET_BODY)
    async def put_budget(name: str, request: Request, gw: Admin) -> dict[str, Any]:
        """Create or replace a budget; it applies from the next request."""
        definition = await _json_body(request)
        budget = gw.budgets.put(name, definition, _actor(request))
        return await gw.enforcer.state(budget)

    @app.get("/admin/budgets", tags=["budgets"])
    async def list_budgets(gw: Admin) -> dict[str, Any]:
        return {"data": [await gw.enforcer.state(b) for b in gw.budgets.all()]}

    @app.get("/admin/budgets/{name}", tags=["budgets"])
    async def get_budget(name: str, gw: Admin) -> dict[str, Any]:
        """Limit, spent, reserved, remaining, fraction used, active action, period, reset,
        and the latest forecast to period end (null until the spend watch has run)."""
        state = await gw.enforcer.state(gw.budgets.get(name))
        state["forecast"] = gw.watch.forecasts.get(name) if gw.watch else None
        return state

    @app.get("/admin/anomalies", tags=["reports"])
    async def anomalies(gw: Admin) -> dict[str, Any]:
        """The spend watch's latest scan for spikes per principal and workflow."""
        if gw.watch is None:
            return {"enabled": False, "scan": None}
        return {"enabled": True, "last_run_ms": gw.watch.last_run_ms, "scan": gw.watch.anomalies}

    @app.delete("/admin/budgets/{name}", tags=["budgets"])
    def delete_budget(name: str, request: Request, gw: Admin) -> dict[str, Any]:
        gw.budgets.delete(name, _actor(request))
        return {"name": name, "deleted": True}

    @app.get("/admin/audit", tags=["budgets"])
    def audit(gw: Admin, budget: str | None = None, limit: int = 100) -> dict[str, Any]:
        """Who changed which budget when, with the old and new definitions."""
        return {"data": gw.budgets.audit(budget, min(max(limit, 1), 1000))}

    @app.get("/admin/cache", tags=["cache"])
    async def cache_stats(gw: Admin) -> dict[str, Any]:
        if gw.cache is None:
            return {"enabled": False}
        return await gw.cache.stats()

    @app.delete("/admin/cache", tags=["cache"])
    async def cache_purge(
        gw: Admin,
        tenant: str | None = None,
        model: str | None = None,
        older_than_s: float | None = Query(default=None, ge=0),
    ) -> dict[str, Any]:
        """Remove cached answers of a tenant, a model and/or older than some seconds
        (no filter: everything)."""
        if gw.cache is None:
            return {"removed": 0, "enabled": False}
        return {"removed": await gw.cache.purge(tenant, model, older_than_s)}

    @app.get("/admin/models", tags=["models"])
    def models(gw: Admin) -> dict[str, Any]:
        return {"data": [model.public() for model in gw.catalog]}

    @app.get("/admin/spend", tags=["reports"])
    def spend(
        request: Request,
        gw: Admin,
        group_by: str = "",
        period: str | None = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
    ) -> dict[str, Any]:
        """Spend and unit economics grouped by any dimension; other query parameters
        filter (``?team=support``, ``?tag:feature=search``)."""
        query = spend_query(group_by, period, from_, to, _filters(request))
        with reader(gw) as conn:
            return query_spend(conn, query)

    @app.get("/admin/requests", tags=["reports"])
    def requests(request: Request, gw: Admin, limit: int = 100) -> dict[str, Any]:
        with reader(gw) as conn:
            return {"data": latest_requests(conn, min(max(limit, 1), 1000), _filters(request))}

    @app.get("/admin/requests/{request_id}", tags=["reports"])
    def request_by_id(request_id: str, gw: Admin) -> dict[str, Any]:
        with reader(gw) as conn:
            return request_detail(conn, request_id)

    from tokenomy.gateway.dashboard import register_dashboard  # /ui (imports this module)

    register_dashboard(app)
    return app


async def _json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def _actor(request: Request) -> str:
    """Who made a change, for the audit log (the admin key is shared, so callers may name
    themselves with x-tokenomy-actor)."""
    named = request.headers.get("x-tokenomy-actor", "").strip()[:120]
    return f"admin-api:{named}" if named else "admin-api"


def _filters(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if k not in RESERVED_PARAMS}
