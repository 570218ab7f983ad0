"""Cascade routes: ask the cheapest model first, return its answer when the route's check
passes, else escalate to the next model (FrugalGPT). Every model asked is charged: an
escalated attempt is its own ledger event (``<request id>-<n>``) whose savings are minus
its cost, so the savings report nets out what cascading cost.

The cheap answer must be judged before the client sees any of it, so a streaming request
is asked without streaming upstream and its final answer is replayed as a stream.
"""

from __future__ import annotations

from typing import Literal

import orjson

from tokenomy.errors import InvalidRequest, TokenomyError
from tokenomy.gateway.asgi import JSON, Send, send_bytes, send_error
from tokenomy.gateway.call import Call
from tokenomy.gateway.proxy import answer_or_fail, commit
from tokenomy.gateway.replay import send_as_stream
from tokenomy.gateway.state import Gateway
from tokenomy.gateway.upstream_call import Answer, client_wants_usage
from tokenomy.routing.cascade import escalation_reason


async def relay_cascade(gateway: Gateway, call: Call, send: Send) -> None:
    if call.endpoint.name != "chat.completions":
        error = InvalidRequest(
            f"route {call.payload.get('model')!r} cascades, which serves /v1/chat/completions only",
            param="model",
        )
        return await send_error(send, error, call.headers("0"))
    streamed = call.payload.get("stream") is True
    include_usage = client_wants_usage(call)
    if streamed:
        call.payload = {
            k: v for k, v in call.payload.items() if k not in ("stream", "stream_options")
        }
        call.rewritten = True
    route_reason = call.route_reason
    step = 0
    while True:
        answer = await answer_or_fail(gateway, call, send)
        if answer is None:
            return
        why = _escalation(call, answer) if call.escalation else None
        if why is None:
            break
        step += 1
        outcome = await _escalate(gateway, call, send, answer, why, step)
        if outcome == "failed":
            return  # the attempt could not be recorded: the client has its 503
        if outcome == "stopped":
            break  # no budget room for the next model: the cheap answer stands
        call.route_reason = f"{route_reason}:escalated->{call.model.name}"
    call.extra_headers.append((b"x-tokenomy-cascade-steps", str(step).encode()))
    event, cost = call.event(answer.usage, status=200, estimated=answer.estimated, stream=streamed)
    if not await commit(gateway, event, send, call):
        return
    if not streamed:
        return await send_bytes(send, 200, answer.body, [JSON, *call.headers(cost)])
    await send_as_stream(send, orjson.loads(answer.body), include_usage, cost, call.headers(cost))


def _escalation(call: Call, answer: Answer) -> str | None:
    assert call.cascade_check is not None  # set with the escalation chain
    try:
        data = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "unreadable answer"
    return escalation_reason(data, call.payload, answer.usage, call.cascade_check)


async def _escalate(
    gateway: Gateway, call: Call, send: Send, answer: Answer, why: str, step: int
) -> Literal["escalated", "stopped", "failed"]:
    """Hold budget for the next model, then record the rejected attempt (charged, savings
    minus its cost). Stopped: no budget has room for the next model."""
    following, call.escalation = call.escalation[0], call.escalation[1:]
    admission = None
    if call.budget_request is not None:
        try:
            admission = await gateway.enforcer.admit(call.budget_request, following)
        except TokenomyError:
            call.extra_headers.append((b"x-tokenomy-cascade-stopped", b"budget"))
            return "stopped"
    attempt, _ = call.event(answer.usage, status=200, estimated=answer.estimated)
    attempt.id = f"{call.request_id}-{step}"
    attempt.route_reason = f"{call.route_reason}:rejected({why})"
    attempt.baseline_model = call.baseline.name if call.baseline else None
    attempt.saved_pico = -attempt.cost_pico
    if not await commit(gateway, attempt, send, call):
        if admission is not None:
            await gateway.enforcer.release(admission)
        return "failed"
    call.admission = admission
    call.model = admission.model if admission is not None else following
    return "escalated"
