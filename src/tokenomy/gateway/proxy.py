"""The request path for proxied calls: auth → parse → model → upstream → settle → record.

Non-streaming answers are relayed here; streams in :mod:`tokenomy.gateway.stream`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from tokenomy.budgets.bounds import byte_bound, output_limit
from tokenomy.budgets.enforcer import BudgetDeferred
from tokenomy.budgets.enforcer import Request as BudgetRequest
from tokenomy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    LedgerUnavailable,
    NotFound,
    RateLimited,
    TokenomyError,
    UpstreamError,
)
from tokenomy.gateway import upstream_call
from tokenomy.gateway.asgi import (
    JSON,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_error,
)
from tokenomy.gateway.caching import Directive, answer_from_cache, parse_directive
from tokenomy.gateway.call import Call, new_request_id
from tokenomy.gateway.endpoints import Endpoint, check_nesting
from tokenomy.gateway.fallback import retriable, serve_with_fallbacks
from tokenomy.gateway.routes import choose
from tokenomy.gateway.state import Gateway
from tokenomy.ledger import UsageEvent
from tokenomy.policy import PRIORITIES, Priority
from tokenomy.pricing import Model
from tokenomy.principals import Principal
from tokenomy.principals.principal import parse_tags
from tokenomy.routing.aliases import RouteChoice
from tokenomy.usage import Usage

MAX_WORKFLOW = 200


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, and what they said about it in headers."""

    principal: Principal
    workflow: str
    tags: dict[str, str]
    priority: Priority
    traceparent: str | None = None  # W3C trace context, so our spans join the caller's trace
    cache: Directive = "default"  # x-tokenomy-cache
    callback_url: str | None = None  # x-tokenomy-callback-url: told when a deferred job ends


def authenticate(gateway: Gateway, scope: Scope) -> Caller:
    """The key's principal, plus the workflow, tags and priority the request adds by header."""
    authorization = workflow = tags = api_key = priority = traceparent = cache = callback = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"x-api-key":
            api_key = value
        elif name == b"x-tokenomy-workflow":
            workflow = value
        elif name == b"x-tokenomy-tags":
            tags = value
        elif name == b"x-tokenomy-priority":
            priority = value
        elif name == b"traceparent":
            traceparent = value
        elif name == b"x-tokenomy-cache":
            cache = value
        elif name == b"x-tokenomy-callback-url":
            callback = value
    key: str | None = None
    if authorization is not None:
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            key = token.strip()
    elif api_key is not None:
        key = api_key.decode("latin-1").strip()
    if not key:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer tk-...'."
        )
    principal = gateway.keys.authenticate(key)
    if principal is None:
        shown = key[:6] + "..." if len(key) > 8 else "***"
        raise AuthenticationFailed(
            f"Incorrect API key provided: {shown}. It is unknown or revoked."
        )
    workflow_name = workflow.decode("utf-8", "replace").strip()[:MAX_WORKFLOW] if workflow else ""
    extra_tags = parse_tags(tags.decode("utf-8", "replace"), "x-tokenomy-tags") if tags else {}
    return Caller(
        principal,
        workflow_name,
        extra_tags,
        _priority(priority),
        traceparent.decode("latin-1")[:128] if traceparent else None,
        parse_directive(cache),
        _callback_url(callback),
    )


def _callback_url(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    url = raw.decode("latin-1").strip()
    if not url.startswith(("http://", "https://")) or len(url) > 2048:
        raise InvalidRequest(
            "x-tokenomy-callback-url must be an http(s) URL of at most 2048 characters",
            param="x-tokenomy-callback-url",
        )
    return url


def _priority(raw: bytes | None) -> Priority:
    if raw is None:
        return "realtime"
    value = raw.decode("latin-1").strip().lower()
    if value not in PRIORITIES:
        raise InvalidRequest(
            f"x-tokenomy-priority must be one of {', '.join(PRIORITIES)}, not {value!r}",
            param="x-tokenomy-priority",
        )
    return value


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    check_nesting(payload, body)
    return payload


async def handle(
    gateway: Gateway, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    started = time.perf_counter()
    ts_ms = time.time_ns() // 1_000_000
    request_id = new_request_id()
    id_header = [(b"x-request-id", request_id.encode())]
    try:
        caller = authenticate(gateway, scope)
        raw = await read_body(receive, gateway.settings.server.max_body_bytes)
        payload = parse_json_object(raw)
        endpoint.validate(payload)
        budget_request = budget_request_for(caller, endpoint, payload)
        model, choice = await resolve_model(gateway, caller.principal, endpoint, budget_request)
    except ClientDisconnected:
        return
    except TokenomyError as exc:
        await send_error(send, exc, id_header)
        return
    call = Call(
        request_id=request_id,
        started=started,
        ts_ms=ts_ms,
        principal=caller.principal,
        endpoint=endpoint,
        model=model,
        payload=payload,
        raw_body=raw,
        workflow=caller.workflow,
        tags=caller.tags,
        store_content=gateway.settings.ledger.store_content,
        traceparent=caller.traceparent,
        budget_request=budget_request,
    )
    if choice is not None:
        apply_choice(call, choice)
    if gateway.cache is not None:
        hit = await gateway.cache.lookup(call, caller.cache)
        if hit is not None:
            return await answer_from_cache(gateway, call, hit, send)
    try:
        if caller.priority == "deferrable" and gateway.batch.defers_always:
            return await gateway.batch.queue_job(call, caller, send, reason="deferrable")
        await admit(gateway, call)
    except BudgetDeferred as exc:
        if gateway.batch.defers:
            return await gateway.batch.queue_job(call, caller, send, reason=exc.message)
        await send_error(send, exc, [*id_header, *call.extra_headers])
        return
    except TokenomyError as exc:
        await send_error(send, exc, [*id_header, *call.extra_headers])
        return
    try:
        if call.escalation:
            from tokenomy.gateway.cascade import relay_cascade

            await relay_cascade(gateway, call, send)
        elif payload.get("stream") is True:
            from tokenomy.gateway.stream import relay_stream

            await relay_stream(gateway, call, receive, send)
        else:
            await relay_plain(gateway, call, send)
    finally:
        await release_hold(gateway, call)


async def release_hold(gateway: Gateway, call: Call) -> None:
    """Whatever happened, no hold outlives its request (a settled one is left as it is)."""
    if call.admission is not None and not call.admission.settled:
        await gateway.enforcer.release(call.admission)


async def resolve_model(
    gateway: Gateway, principal: Principal, endpoint: Endpoint, request: BudgetRequest
) -> tuple[Model, RouteChoice | None]:
    """The catalog model a request names, or the one its route alias chooses now."""
    payload = request.payload
    model = gateway.catalog.get(payload["model"])
    choice: RouteChoice | None = None
    route = gateway.settings.routes.get(payload["model"])
    if model is None and route is not None and principal.may_use(payload["model"]):
        choice = await choose(gateway, payload["model"], route, request, endpoint.model_kind)
        model = choice.model
    if model is None or not principal.may_use(model.name):
        raise model_not_found(payload["model"])
    check_kind(model, endpoint)
    return model, choice


def model_not_found(name: str) -> NotFound:
    return NotFound(
        f"The model '{name}' does not exist or this key may not use it.",
        param="model",
        code="model_not_found",
    )


def check_kind(model: Model, endpoint: Endpoint) -> None:
    """A chat model cannot serve embeddings, nor an embedding model chat."""
    if model.kind != endpoint.model_kind:
        raise InvalidRequest(
            f"model {model.name!r} is a {model.kind} model; it cannot serve {endpoint.name}",
            param="model",
        )


def apply_choice(call: Call, choice: RouteChoice) -> None:
    call.route_reason, call.strategy, call.baseline = (
        choice.reason,
        choice.strategy,
        choice.baseline,
    )
    call.escalation, call.cascade_check = choice.escalation, choice.check
    call.extra_headers.extend(choice.headers)


def budget_request_for(
    caller: Caller, endpoint: Endpoint, payload: dict[str, Any]
) -> BudgetRequest:
    principal = caller.principal
    return BudgetRequest(
        principal=principal,
        tags={**principal.tags, **caller.tags},
        priority=caller.priority,
        payload=payload,
        output_field=endpoint.output_limit_field,
        produces_output=endpoint.model_kind == "chat",
    )


async def admit(gateway: Gateway, call: Call) -> None:
    """Budgets (which may downgrade the model and inject an output limit), then the key's
    rate limits. Raises the 429 to answer."""
    principal = call.principal
    assert call.budget_request is not None
    admission = await gateway.enforcer.admit(call.budget_request, call.model)
    call.admission = admission
    if admission.model is not call.model:
        call.reroute(admission.model, admission.route_reason, "budget_downgrade")
    if admission.injected_max_tokens is not None:
        call.rewritten = True
        call.extra_headers.append(
            (b"x-tokenomy-max-tokens-injected", str(admission.injected_max_tokens).encode())
        )
    if principal.rpm is None and principal.tpm is None:
        return
    estimate = 0
    if principal.tpm is not None:
        estimate = byte_bound(call.payload) + (output_limit(call.payload) or 0)
    decision = await gateway.rate_limiter.check(
        principal.key_id, principal.rpm, principal.tpm, estimate
    )
    call.extra_headers.extend((k.encode(), v.encode()) for k, v in decision.headers.items())
    if not decision.allowed:
        await gateway.enforcer.release(admission)
        raise RateLimited(
            f"rate limit of {principal.rpm if decision.limit_hit == 'requests' else principal.tpm} "
            f"{decision.limit_hit} per minute reached for this key; retry after "
            f"{decision.retry_after_s:.1f} s",
            headers={"retry-after": str(max(1, math.ceil(decision.retry_after_s)))},
        )
    call.rate_tokens = estimate


async def fail(
    gateway: Gateway,
    call: Call,
    send: Send,
    error: TokenomyError,
    usage: Usage | None = None,
    estimated: bool = False,
) -> None:
    """Answer an error. Upstream failures are recorded (with what the provider probably
    billed, or nothing); requests refused before reaching it are not."""
    if isinstance(error, UpstreamError):
        await record_failure(gateway, call, error, usage or Usage(), estimated)
    await send_error(send, error, call.headers("0"))


async def upstream_answer(gateway: Gateway, call: Call) -> upstream_call.Answer:
    """The upstream's whole answer after retries and fallbacks (``failure`` set when none
    could give one)."""

    async def attempt() -> upstream_call.Answer:
        answer = await upstream_call.complete(gateway, call)
        failure = answer.failure
        if isinstance(failure, UpstreamError) and retriable(failure):
            raise failure  # nothing was billed: retry, or let a fallback model serve
        return answer

    try:
        return await serve_with_fallbacks(gateway, call, attempt)
    except TokenomyError as exc:
        return upstream_call.Answer(b"", Usage(), failure=exc)


async def answer_or_fail(gateway: Gateway, call: Call, send: Send) -> upstream_call.Answer | None:
    """The upstream's whole answer, or None once the client has been sent the failure."""
    answer = await upstream_answer(gateway, call)
    if answer.failure is not None:
        await fail(gateway, call, send, answer.failure, answer.usage, answer.estimated)
        return None
    return answer


async def relay_plain(gateway: Gateway, call: Call, send: Send) -> None:
    answer = await answer_or_fail(gateway, call, send)
    if answer is None:
        return
    event, cost = call.event(answer.usage, status=200, estimated=answer.estimated)
    if not await commit(gateway, event, send, call):
        return
    headers = [JSON, *call.headers(cost)]
    if answer.estimated:
        headers.append((b"x-tokenomy-estimated", b"true"))
    elif call.cache_write is not None:
        headers.append((b"x-tokenomy-cache", b"miss"))
    await send_bytes(send, 200, answer.body, headers)
    if call.cache_write is not None and gateway.cache is not None and not answer.estimated:
        await gateway.cache.store(call, answer.body, answer.usage)


async def record(gateway: Gateway, call: Call, event: UsageEvent) -> None:
    """Settle the request's budget hold and rate count to its actual usage, then make its
    ledger event durable (raises if the ledger cannot record it)."""
    tokens = event.usage.total_tokens
    if call.admission is not None:
        await gateway.enforcer.settle(call.admission, event.cost_pico, tokens)
    if call.rate_tokens:
        await gateway.rate_limiter.adjust(call.principal.key_id, tokens - call.rate_tokens)
        call.rate_tokens = 0
    await gateway.ledger.record(event)
    if gateway.listeners:
        gateway.publish(event)


async def record_failure(
    gateway: Gateway, call: Call, error: TokenomyError, usage: Usage, estimated: bool
) -> None:
    event, _ = call.event(usage, status=error.status, estimated=estimated, error=error.message)
    # The error answer goes out anyway; the ledger writer has logged why it failed.
    with contextlib.suppress(Exception):
        await record(gateway, call, event)


async def commit(gateway: Gateway, event: UsageEvent, send: Send, call: Call) -> bool:
    """Wait until the event is durable; answer 503 instead of an unrecorded success."""
    try:
        await record(gateway, call, event)
    except Exception:
        error = LedgerUnavailable(
            "the gateway could not record this request's usage; the answer is withheld"
        )
        await send_error(send, error, call.headers("0"))
        return False
    return True
