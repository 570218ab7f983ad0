"""Route aliases: virtual models (``auto``, ``fast``, ...) whose strategy picks the model.

- ``fixed``: always the configured model (a stable name for clients while owners swap it);
- ``cheapest-capable``: the cheapest candidate (blended price) that can serve this very
  request: tools, images and JSON mode need the matching capability, and the prompt plus
  the output limit must fit the model's context window and output limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenomy.budgets.bounds import byte_bound, output_limit
from tokenomy.config import CascadeCheck, RouteConfig
from tokenomy.errors import InvalidRequest
from tokenomy.pricing import Catalog, Model
from tokenomy.principals import Principal


@dataclass(frozen=True, slots=True)
class Needs:
    capabilities: frozenset[str]
    input_bound: int
    output_tokens: int | None


def needs_of(payload: dict[str, Any]) -> Needs:
    """What a request asks of the model that serves it."""
    wanted = set()
    if payload.get("tools") or payload.get("functions"):
        wanted.add("tools")
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        wanted.add("json_mode")
    if _has_image(payload.get("messages")) or _has_image(payload.get("input")):
        wanted.add("vision")
    return Needs(frozenset(wanted), byte_bound(payload), output_limit(payload))


def _has_image(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_image(item) for item in value)
    if isinstance(value, dict):
        if value.get("type") in ("image_url", "input_image", "image"):
            return True
        return _has_image(value.get("content"))
    return False


def _fits(model: Model, needs: Needs) -> list[str]:
    """Why this model cannot serve the request (empty: it can)."""
    missing = sorted(needs.capabilities - model.capabilities)
    limit = model.max_output_tokens
    if needs.output_tokens is not None and limit is not None and needs.output_tokens > limit:
        missing.append(f"{needs.output_tokens} output tokens")
    if model.context_window is not None:
        total = needs.input_bound + (needs.output_tokens or 0)
        if total > model.context_window:
            missing.append(f"a context of up to {total} tokens")
    return missing


@dataclass(frozen=True, slots=True)
class RouteChoice:
    model: Model
    reason: str
    strategy: str
    baseline: Model | None = None  # savings are measured against it (None: no claim)
    escalation: tuple[Model, ...] = ()  # cascade: the models to try next, cheap to dear
    check: CascadeCheck | None = None  # cascade: when to escalate
    headers: tuple[tuple[bytes, bytes], ...] = ()


def variant_for(route: RouteConfig, principal: Principal, priority: str) -> RouteConfig:
    """The route that applies to this caller: a matching override, then a priority's own."""
    for override in route.overrides:
        if all(getattr(principal, name) == value for name, value in override.match.items()):
            return variant_for(override.route, principal, priority)
    by_priority = route.by_priority.get(priority)  # type: ignore[call-overload]
    return variant_for(by_priority, principal, priority) if by_priority else route


def capable(
    names: list[str], catalog: Catalog, principal: Principal, needs: Needs, kind: str
) -> tuple[list[Model], set[str]]:
    """The models among ``names`` that can serve the request, and what the others lack."""
    candidates = []
    reasons: set[str] = set()
    for model_name in names:
        model = catalog.get(model_name)
        if model is None or model.kind != kind or not principal.may_use(model.name):
            continue
        missing = _fits(model, needs)
        if missing:
            reasons.update(missing)
        else:
            candidates.append(model)
    return candidates, reasons


def no_capable_model(name: str, reasons: set[str]) -> InvalidRequest:
    detail = f" (the request needs {', '.join(sorted(reasons))})" if reasons else ""
    return InvalidRequest(
        f"no model behind route {name!r} can serve this request{detail}", param="model"
    )


def resolve_static(
    name: str, route: RouteConfig, catalog: Catalog, principal: Principal, needs: Needs, kind: str
) -> RouteChoice:
    """``fixed``, ``cheapest-capable`` and ``cascade``: no prompt scoring needed."""
    baseline = catalog.get(route.baseline) if route.baseline else None
    if route.strategy == "fixed":
        assert route.model is not None  # checked when the config is loaded
        model = catalog.get(route.model)
        assert model is not None
        return RouteChoice(model, f"route:{name}/fixed", "fixed", baseline)
    names = route.models if route.models is not None else catalog.names()
    candidates, reasons = capable(names, catalog, principal, needs, kind)
    if not candidates:
        raise no_capable_model(name, reasons)
    if route.strategy == "cascade":
        chain = tuple(candidates)  # in the configured order, cheap to dear
        return RouteChoice(
            chain[0],
            f"route:{name}/cascade",
            "cascade",
            baseline or chain[-1],
            chain[1:],
            route.check,
        )
    best = min(candidates, key=lambda m: (m.price.blended_per_mtok, m.name))
    return RouteChoice(best, f"route:{name}/cheapest-capable", "cheapest-capable", baseline)


def prompt_text(payload: dict[str, Any], limit: int = 4000) -> str:
    """What the learned router reads: the last user turn's text (or the prompt/input)."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text(message.get("content"))[-limit:]
    for field_name in ("input", "prompt"):
        if field_name in payload:
            return _text(payload[field_name])[-limit:]
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in (_text(part) for part in content) if t)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        return _text(content.get("content"))
    return ""
