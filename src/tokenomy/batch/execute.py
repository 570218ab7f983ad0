"""One batch line (or deferred job) through the gateway's own request path.

The line runs as the key that queued it: the same model resolution and routes, budgets
(reserving the line's worst case before it runs), rate limits, retries, fallbacks and
ledger as a real-time request, but charged at the model's batch price. What cannot run
*now* (no budget room, the key's rate limit) pauses the batch instead of failing the line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tokenomy.batch.store import LineResult
from tokenomy.budgets.enforcer import Request as BudgetRequest
from tokenomy.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    RateLimited,
    TokenomyError,
    UpstreamError,
)
from tokenomy.gateway.endpoints import ROUTES

if TYPE_CHECKING:
    from tokenomy.batch.store import ActiveBatch, Line
    from tokenomy.gateway.call import Call
    from tokenomy.gateway.state import Gateway
    from tokenomy.principals import Principal
    from tokenomy.usage import Usage


@dataclass(frozen=True, slots=True)
class Outcome:
    # done/failed: the line has its answer; pause: try the batch again after wait_s;
    # retry: a transient upstream failure (the line counts an attempt)
    kind: Literal["done", "failed", "pause", "retry"]
    status_code: int = 0
    body: bytes = b""
    cost_pico: int = 0
    tokens: tuple[int, int] = (0, 0)  # input, output
    reason: str = ""
    wait_s: float = 0.0


def failed(error: TokenomyError) -> Outcome:
    return Outcome("failed", error.status, error.json(), reason=error.message)


def ending(line: Line, outcome: Outcome) -> LineResult:
    """What the store records of a run: the line's answer, or the line back in the
    queue (counting an attempt only after a transient failure)."""
    if outcome.kind in ("done", "failed"):
        return LineResult(
            line,
            outcome.kind,
            outcome.status_code,
            outcome.body,
            outcome.cost_pico,
            tokens=outcome.tokens,
        )
    return LineResult(line, "pending", count_attempt=outcome.kind == "retry")


def queued_by(gateway: Gateway, batch: ActiveBatch, *, live: bool = True) -> Principal:
    """The key that queued the batch; a revoked one (``live``) is refused."""
    principal = gateway.keys.principal(batch.key_id, live=live)
    if principal is None:
        raise AuthenticationFailed(f"the key that queued this request ({batch.key_id}) is revoked")
    return principal


async def line_call(
    gateway: Gateway, batch: ActiveBatch, principal: Principal, request_id: str, raw: bytes
) -> Call:
    """The line as a call of the key that queued it (raises the 4xx its body deserves)."""
    from tokenomy.gateway.call import Call
    from tokenomy.gateway.proxy import apply_choice, parse_json_object, resolve_model

    endpoint = ROUTES[batch.endpoint]
    started, ts_ms = time.perf_counter(), time.time_ns() // 1_000_000
    payload = parse_json_object(raw)
    endpoint.validate(payload)
    streamed = payload.pop("stream", None) is not None  # a job answers as a whole
    payload.pop("stream_options", None)
    budget_request = BudgetRequest(
        principal=principal,
        tags={**principal.tags, **batch.tags},
        priority="realtime",  # already deferred: a defer threshold must not hold it again
        payload=payload,
        output_field=endpoint.output_limit_field,
        produces_output=endpoint.model_kind == "chat",
    )
    model, choice = await resolve_model(gateway, principal, endpoint, budget_request)
    call = Call(
        request_id=request_id,
        started=started,
        ts_ms=ts_ms,
        principal=principal,
        endpoint=endpoint,
        model=model,
        payload=payload,
        raw_body=raw,
        workflow=batch.workflow,
        tags=batch.tags,
        store_content=gateway.settings.ledger.store_content,
        budget_request=budget_request,
        rewritten=streamed,
        batch=True,
    )
    if choice is not None:
        apply_choice(call, choice)
        call.escalation = ()  # a cascade's checks need a client; its first model answers
    return call


async def hold_budget(gateway: Gateway, call: Call, retry_s: float) -> Outcome | None:
    """Reserve the line's worst case (budgets, then the key's rate limit); the outcome
    that ends this run when there is no room now."""
    from tokenomy.gateway.proxy import admit

    try:
        await admit(gateway, call)
    except RateLimited as exc:
        return Outcome(
            "pause", reason=exc.message, wait_s=float(exc.headers.get("retry-after", retry_s))
        )
    except BudgetExceeded as exc:
        return Outcome("pause", reason=exc.message, wait_s=retry_s)
    except TokenomyError as exc:
        return failed(exc)
    return None


async def run_line(
    gateway: Gateway,
    batch: ActiveBatch,
    principal: Principal,
    request_id: str,
    raw: bytes,
    *,
    last_attempt: bool,
    retry_s: float,
) -> Outcome:
    from tokenomy.gateway.fallback import retriable
    from tokenomy.gateway.proxy import record_failure, release_hold, upstream_answer

    try:
        call = await line_call(gateway, batch, principal, request_id, raw)
    except TokenomyError as exc:
        return failed(exc)
    try:
        refused = await hold_budget(gateway, call, retry_s)
        if refused is not None:
            return refused
        answer = await upstream_answer(gateway, call)
        failure = answer.failure
        if failure is not None:
            if isinstance(failure, UpstreamError) and retriable(failure) and not last_attempt:
                return Outcome("retry", reason=failure.message, wait_s=retry_s)
            await record_failure(gateway, call, failure, answer.usage, answer.estimated)
            return failed(failure)
        return await record_answer(
            gateway, call, answer.body, answer.usage, answer.estimated, retry_s
        )
    finally:
        await release_hold(gateway, call)


async def record_answer(
    gateway: Gateway, call: Call, body: bytes, usage: Usage, estimated: bool, retry_s: float
) -> Outcome:
    """Charge the line (at the batch price) and settle its hold: the line is done."""
    from tokenomy.gateway.proxy import record

    event, _ = call.event(usage, status=200, estimated=estimated)
    try:
        await record(gateway, call, event)
    except Exception as exc:  # the ledger cannot record it now: run the line again later
        return Outcome("retry", reason=f"ledger unavailable: {exc}", wait_s=retry_s)
    return Outcome(
        "done", 200, body, event.cost_pico, tokens=(usage.input_tokens, usage.output_tokens)
    )
