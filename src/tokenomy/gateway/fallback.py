"""Retries and fallback chains: when a model's upstream fails before anything reached the
client, the call is retried on it (``retries`` times, exponential backoff with full jitter),
then the next model in its ``fallbacks`` serves; the request is charged once, to the model
that served it. Each upstream's circuit breaker skips a provider that keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tokenomy.config import UpstreamConfig
from tokenomy.errors import UpstreamError
from tokenomy.gateway.call import Call
from tokenomy.gateway.state import Gateway
from tokenomy.pricing import Model

T = TypeVar("T")
# The upstream's failures, worth another provider: its 5xx and 429 answers, timeouts and
# unreachable hosts. Its 4xx answers are the request's fault and go back to the client;
# a malformed 200 was probably billed, so it is not retried elsewhere.
_RETRIABLE_CODES = {"upstream_error", "upstream_timeout", "upstream_429"}


def retriable(error: UpstreamError) -> bool:
    code = error.code or ""
    return code in _RETRIABLE_CODES or code.startswith("upstream_5")


async def serve_with_fallbacks(
    gateway: Gateway, call: Call, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run ``attempt`` against the call's model, then its fallbacks, until one answers."""
    first = call.model
    chain: list[Model] = [first]
    chain += [m for name in first.fallbacks if (m := gateway.catalog.get(name)) is not None]
    last_error: UpstreamError | None = None
    for model in chain:
        breaker = gateway.upstreams[model.upstream].breaker
        if not breaker.allow():
            last_error = UpstreamError(
                f"upstream {model.upstream!r} keeps failing; it is skipped for now",
                code="circuit_open",
            )
            continue
        if model is not call.model:
            await _switch(gateway, call, model, f"fallback:{first.name}->{model.name}")
        config = gateway.settings.upstreams[model.upstream]
        for retry in range(config.retries + 1):
            if retry:
                await asyncio.sleep(backoff_s(retry, config, last_error))
                if not breaker.allow():
                    break
            try:
                result = await attempt()
            except UpstreamError as exc:
                if not retriable(exc):
                    raise
                breaker.failure()
                last_error = exc
                continue
            breaker.success()
            return result
    assert last_error is not None
    raise last_error


def backoff_s(retry: int, config: UpstreamConfig, error: UpstreamError | None) -> float:
    """Full jitter (a uniform wait up to an exponentially growing cap), or the provider's
    retry-after when it asks for longer; never more than retry_max_wait_s."""
    wait = random.uniform(0, config.retry_backoff_s * 2 ** (retry - 1))
    asked = error.headers.get("retry-after") if error is not None else None
    if asked:
        with contextlib.suppress(ValueError):  # an HTTP date: the jittered wait stands
            wait = max(wait, float(asked))
    return min(wait, config.retry_max_wait_s)


async def _switch(gateway: Gateway, call: Call, model: Model, reason: str) -> None:
    """Serve the call from another model: its budgets are checked and held afresh."""
    if call.admission is not None and call.budget_request is not None:
        await gateway.enforcer.release(call.admission)
        call.admission = await gateway.enforcer.admit(call.budget_request, model)
        model = call.admission.model
    call.reroute(model, reason, "fallback")
