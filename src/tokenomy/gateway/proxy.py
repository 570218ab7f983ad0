"""The request path for proxied calls: auth → parse → model → upstream → settle → record.

Non-streaming answers are relayed here; streams in :mod:`tokenomy.gateway.stream`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import orjson

from tokenomy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    LedgerUnavailable,
    NotFound,
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
from tokenomy.gateway.call import Call, new_request_id
from tokenomy.gateway.endpoints import Endpoint
from tokenomy.gateway.state import Gateway
from tokenomy.principals import Principal
from tokenomy.principals.principal import parse_tags
from tokenomy.usage import Usage

MAX_WORKFLOW = 200


def authenticate(gateway: Gateway, scope: Scope) -> tuple[Principal, str, dict[str, str]]:
    """The key's principal, plus the workflow and tags the request adds by header."""
    authorization = workflow = tags = api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"x-api-key":
            api_key = value
        elif name == b"x-tokenomy-workflow":
            workflow = value
        elif name == b"x-tokenomy-tags":
            tags = value
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
    return principal, workflow_name, extra_tags


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return payload


async def handle(
    gateway: Gateway, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    started = time.perf_counter()
    ts_ms = time.time_ns() // 1_000_000
    request_id = new_request_id()
    id_header = [(b"x-request-id", request_id.encode())]
    try:
        principal, workflow, tags = authenticate(gateway, scope)
        raw = await read_body(receive, gateway.settings.server.max_body_bytes)
        payload = parse_json_object(raw)
        endpoint.validate(payload)
        model = gateway.catalog.get(payload["model"])
        if model is None or not principal.may_use(model.name):
            raise NotFound(
                f"The model '{payload['model']}' does not exist or this key may not use it.",
                param="model",
                code="model_not_found",
            )
        if model.kind != endpoint.model_kind:
            raise InvalidRequest(
                f"model {model.name!r} is a {model.kind} model; it cannot serve {endpoint.name}",
                param="model",
            )
    except ClientDisconnected:
        return
    except TokenomyError as exc:
        await send_error(send, exc, id_header)
        return
    call = Call(
        request_id=request_id,
        started=started,
        ts_ms=ts_ms,
        principal=principal,
        endpoint=endpoint,
        model=model,
        payload=payload,
        raw_body=raw,
        workflow=workflow,
        tags=tags,
        store_content=gateway.settings.ledger.store_content,
    )
    if payload.get("stream") is True:
        from tokenomy.gateway.stream import relay_stream

        await relay_stream(gateway, call, receive, send)
    else:
        await relay_plain(gateway, call, send)


async def relay_plain(gateway: Gateway, call: Call, send: Send) -> None:
    try:
        answer = await upstream_call.complete(gateway, call)
    except UpstreamError as exc:
        # Nothing usable came back; the provider reported no usage to bill.
        await record_failure(gateway, call, exc, Usage(), estimated=False)
        return await send_error(send, exc, call.headers("0"))
    except TokenomyError as exc:
        return await send_error(send, exc, call.headers("0"))
    if answer.failure is not None:
        await record_failure(gateway, call, answer.failure, answer.usage, answer.estimated)
        return await send_error(send, answer.failure, call.headers("0"))
    event, cost = call.event(answer.usage, status=200, estimated=answer.estimated)
    if not await commit(gateway, event, send, call):
        return
    headers = [JSON, *call.headers(cost)]
    if answer.estimated:
        headers.append((b"x-tokenomy-estimated", b"true"))
    await send_bytes(send, 200, answer.body, headers)


async def record_failure(
    gateway: Gateway, call: Call, error: TokenomyError, usage: Usage, estimated: bool
) -> None:
    event, _ = call.event(usage, status=error.status, estimated=estimated, error=error.message)
    # The error answer goes out anyway; the ledger writer has logged why it failed.
    with contextlib.suppress(Exception):
        await gateway.ledger.record(event)


async def commit(gateway: Gateway, event: Any, send: Send, call: Call) -> bool:
    """Wait until the event is durable; answer 503 instead of an unrecorded success."""
    try:
        await gateway.ledger.record(event)
    except Exception:
        error = LedgerUnavailable(
            "the gateway could not record this request's usage; the answer is withheld"
        )
        await send_error(send, error, call.headers("0"))
        return False
    return True
