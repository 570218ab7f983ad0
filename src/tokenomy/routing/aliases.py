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
from tokenomy.config import RouteConfig
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


def resolve_route(
    name: str,
    route: RouteConfig,
    catalog: Catalog,
    principal: Principal,
    payload: dict[str, Any],
    kind: str,
) -> tuple[Model, str]:
    """The model that serves a request for route ``name``, and the route reason."""
    if route.strategy == "fixed":
        assert route.model is not None  # checked when the config is loaded
        model = catalog.get(route.model)
        assert model is not None
        return model, f"route:{name}/fixed"
    names = route.models if route.models is not None else catalog.names()
    needs = needs_of(payload)
    candidates = []
    reasons = set()
    for model_name in names:
        model = catalog.get(model_name)
        if model is None or model.kind != kind or not principal.may_use(model.name):
            continue
        missing = _fits(model, needs)
        if missing:
            reasons.update(missing)
        else:
            candidates.append(model)
    if not candidates:
        detail = f" (the request needs {', '.join(sorted(reasons))})" if reasons else ""
        raise InvalidRequest(
            f"no model behind route {name!r} can serve this request{detail}", param="model"
        )
    best = min(candidates, key=lambda m: (m.price.blended_per_mtok, m.name))
    return best, f"route:{name}/cheapest-capable"
