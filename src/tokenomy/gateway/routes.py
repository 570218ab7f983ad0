"""Route aliases at the gateway: pick the variant for the caller, then the model.

``learned`` routes embed the prompt (milliseconds of CPU), so the decision runs in a worker
thread; the tightest budget's fill level shifts its strong share (see
:mod:`tokenomy.routing.learned_route`).
"""

from __future__ import annotations

import asyncio

from tokenomy.budgets.enforcer import Request as BudgetRequest
from tokenomy.config import RouteConfig, Settings
from tokenomy.gateway.state import Gateway
from tokenomy.routing.aliases import (
    RouteChoice,
    capable,
    needs_of,
    no_capable_model,
    prompt_text,
    resolve_static,
    variant_for,
)
from tokenomy.routing.learned_route import LearnedRoute


def load_learned_routes(settings: Settings) -> dict[int, LearnedRoute]:
    """Every learned route variant's router, loaded at start (a bad router path is a
    config error now, not on the first request). Keyed by the variant's identity."""
    return {
        id(variant): LearnedRoute(variant)
        for route in settings.routes.values()
        for variant in route.variants()
        if variant.strategy == "learned"
    }


async def choose(
    gateway: Gateway, name: str, route: RouteConfig, request: BudgetRequest, kind: str
) -> RouteChoice:
    principal, payload = request.principal, request.payload
    variant = variant_for(route, principal, request.priority)
    needs = needs_of(payload)
    if variant.strategy != "learned":
        return resolve_static(name, variant, gateway.catalog, principal, needs, kind)
    assert variant.weak is not None and variant.strong is not None  # checked at load
    strong = gateway.catalog.get(variant.strong)
    baseline = gateway.catalog.get(variant.baseline) if variant.baseline else strong
    candidates, reasons = capable(
        [variant.weak, variant.strong], gateway.catalog, principal, needs, kind
    )
    if not candidates:
        raise no_capable_model(name, reasons)
    if len(candidates) == 1:  # only one of the two can serve this request: no choice
        return RouteChoice(candidates[0], f"route:{name}/learned:only-capable", "learned", baseline)
    weak_model, strong_model = candidates
    runtime = gateway.learned_routes[id(variant)]
    pressure = await gateway.enforcer.pressure(request, strong_model)
    loop = asyncio.get_running_loop()
    decision = await loop.run_in_executor(None, runtime.decide, prompt_text(payload), pressure)
    side = "strong" if decision.strong else "weak"
    headers = (
        (b"x-tokenomy-route-score", f"{decision.score:.4f}".encode()),
        (b"x-tokenomy-route-threshold", f"{decision.cut:.4f}".encode()),
        (b"x-tokenomy-route-strong-share", f"{decision.share:.4f}".encode()),
    )
    return RouteChoice(
        strong_model if decision.strong else weak_model,
        f"route:{name}/learned:{side}",
        "learned",
        baseline,
        headers=headers,
    )
