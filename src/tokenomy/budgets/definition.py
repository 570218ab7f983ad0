"""What a budget is: a scope over principals (and optionally models), a period, a limit in
USD (and optionally tokens), and ordered thresholds that act.

Parsed from the config file and the admin API alike, with errors that name the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from tokenomy.config import TIERS
from tokenomy.errors import InvalidRequest
from tokenomy.money import parse_usd, to_pico, usd_str

Period = Literal["day", "week", "month", "total"]
Action = Literal["alert", "downgrade", "defer", "block"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "total")
ACTIONS: tuple[Action, ...] = ("alert", "downgrade", "defer", "block")
# Scope selectors and the ledger column each one matches.
SCOPE_FIELDS = {
    "tenant": "tenant",
    "department": "department",
    "team": "team",
    "user": "user",
    "key": "key_id",
    "project": "project",
    "environment": "environment",
    "model": "model",
    "tier": "tier",
}
MAX_NAME = 120


@dataclass(frozen=True, slots=True)
class Threshold:
    at: Decimal  # fraction of the limit, e.g. 0.8
    action: Action
    from_tier: str | None = None  # downgrade: requests for this tier ...
    to_tier: str | None = None  # ... are served by this tier's equivalent model
    to_model: str | None = None  # ... or by this model
    webhook: str | None = None  # alert: POSTed once per period
    slack: bool = False  # alert: Slack-compatible payload

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": float(self.at), "action": self.action}
        for name in ("from_tier", "to_tier", "to_model", "webhook"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.slack:
            out["slack"] = True
        return out


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    scope: dict[str, str]  # selector → value; "tag:NAME" selects a tag
    period: Period
    limit_usd: Decimal
    limit_tokens: int | None = None
    thresholds: tuple[Threshold, ...] = ()
    starts_at_ms: int | None = None  # for "total": count spend from here (default: all)
    created_by: str = ""
    # Derived once, for the request path: the limit and each threshold in pico-dollars.
    limit_pico: int = field(init=False, default=0)
    cutoffs_pico: tuple[int, ...] = field(init=False, default=())
    has_alerts: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        limit = to_pico(self.limit_usd)
        object.__setattr__(self, "limit_pico", limit)
        cutoffs = tuple(math.ceil(t.at * limit) for t in self.thresholds)
        object.__setattr__(self, "cutoffs_pico", cutoffs)
        object.__setattr__(self, "has_alerts", any(t.action == "alert" for t in self.thresholds))

    def matches(self, fields: dict[str, str], tags: dict[str, str]) -> bool:
        for selector, wanted in self.scope.items():
            if selector.startswith("tag:"):
                if tags.get(selector[4:]) != wanted:
                    return False
            elif fields.get(selector) != wanted:
                return False
        return True

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": dict(self.scope),
            "period": self.period,
            "limit_usd": usd_str(self.limit_usd),
            "limit_tokens": self.limit_tokens,
            "thresholds": [t.public() for t in self.thresholds],
        }


def _fraction(value: Any, param: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"{param} must be a number between 0 and 1", param=param)
    try:
        fraction = Decimal(str(value))
    except ArithmeticError:
        raise InvalidRequest(f"{param} must be a number between 0 and 1", param=param) from None
    if not fraction.is_finite() or not 0 < fraction <= 1:
        raise InvalidRequest(f"{param} must be a number in (0, 1], got {value!r}", param=param)
    return fraction


def _threshold(raw: Any, index: int) -> Threshold:
    param = f"thresholds[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{param} must be an object", param=param)
    known = {"at", "action", "from_tier", "to_tier", "to_model", "webhook", "slack"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidRequest(
            f"{param}: unknown field {unknown[0]!r}", param=f"{param}.{unknown[0]}"
        )
    action = raw.get("action")
    if action not in ACTIONS:
        raise InvalidRequest(
            f"{param}.action must be one of {', '.join(ACTIONS)}", param=f"{param}.action"
        )
    threshold = Threshold(
        at=_fraction(raw.get("at"), f"{param}.at"),
        action=action,
        from_tier=_optional_str(raw, "from_tier", param),
        to_tier=_optional_str(raw, "to_tier", param),
        to_model=_optional_str(raw, "to_model", param),
        webhook=_optional_str(raw, "webhook", param),
        slack=bool(raw.get("slack", False)),
    )
    if action == "downgrade":
        for name in ("from_tier", "to_tier"):
            value = getattr(threshold, name)
            if name == "to_tier" and value is None and threshold.to_model is not None:
                continue
            if value not in TIERS:
                raise InvalidRequest(
                    f"{param}.{name} must be one of {', '.join(TIERS)} for a downgrade",
                    param=f"{param}.{name}",
                )
    if threshold.webhook is not None and not threshold.webhook.startswith(("http://", "https://")):
        raise InvalidRequest(f"{param}.webhook must be an http(s) URL", param=f"{param}.webhook")
    return threshold


def _optional_str(raw: dict[str, Any], name: str, param: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{param}.{name} must be a non-empty string", param=f"{param}.{name}")
    return value


def parse_budget(name: str, raw: Any, created_by: str = "") -> Budget:
    """A budget from JSON/YAML, validated; every error names the field."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or "/" in name:
        raise InvalidRequest(
            f"a budget name must be 1-{MAX_NAME} characters without '/'", param="name"
        )
    if not isinstance(raw, dict):
        raise InvalidRequest("the budget must be a JSON object")
    known = {"scope", "period", "limit_usd", "limit_tokens", "thresholds", "starts_at_ms", "name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})", param=unknown[0]
        )
    scope = raw.get("scope") or {}
    if not isinstance(scope, dict):
        raise InvalidRequest('scope must be an object such as {"team": "support"}', param="scope")
    for selector, value in scope.items():
        if selector not in SCOPE_FIELDS and not (selector.startswith("tag:") and len(selector) > 4):
            raise InvalidRequest(
                f"scope.{selector}: unknown selector (use {', '.join(SCOPE_FIELDS)} or tag:NAME)",
                param=f"scope.{selector}",
            )
        if not isinstance(value, str):
            raise InvalidRequest(f"scope.{selector} must be a string", param=f"scope.{selector}")
    period = raw.get("period", "month")
    if period not in PERIODS:
        raise InvalidRequest(f"period must be one of {', '.join(PERIODS)}", param="period")
    try:
        limit = parse_usd(raw.get("limit_usd"))
    except ValueError as exc:
        raise InvalidRequest(f"limit_usd: {exc}", param="limit_usd") from None
    if limit < 0:
        raise InvalidRequest("limit_usd must not be negative", param="limit_usd")
    limit_tokens = raw.get("limit_tokens")
    if limit_tokens is not None and (
        not isinstance(limit_tokens, int) or isinstance(limit_tokens, bool) or limit_tokens < 0
    ):
        raise InvalidRequest("limit_tokens must be a non-negative integer", param="limit_tokens")
    thresholds_raw = raw.get("thresholds") or []
    if not isinstance(thresholds_raw, list):
        raise InvalidRequest("thresholds must be a list", param="thresholds")
    thresholds = tuple(
        sorted((_threshold(t, i) for i, t in enumerate(thresholds_raw)), key=lambda t: t.at)
    )
    starts_at = raw.get("starts_at_ms")
    if starts_at is not None and (not isinstance(starts_at, int) or isinstance(starts_at, bool)):
        raise InvalidRequest(
            "starts_at_ms must be an integer (epoch milliseconds)", param="starts_at_ms"
        )
    return Budget(
        name=name,
        scope={str(k): str(v) for k, v in scope.items()},
        period=period,
        limit_usd=limit,
        limit_tokens=limit_tokens,
        thresholds=thresholds,
        starts_at_ms=starts_at,
        created_by=created_by,
    )
