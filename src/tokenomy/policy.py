"""The cost-control agent's rule: budget thresholds reached → one action for a request.

Severity orders the actions: block > defer > downgrade > allow. Alerts do not change the
request; they fire when spend crosses them (see :mod:`tokenomy.budgets.enforcer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from tokenomy.budgets.definition import Budget, Threshold

Priority = Literal["critical", "realtime", "deferrable"]
PRIORITIES: tuple[Priority, ...] = ("critical", "realtime", "deferrable")


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Literal["allow", "downgrade", "defer", "block"]
    budget: Budget | None = None
    threshold: Threshold | None = None


ALLOW = Decision("allow")
_SEVERITY = {"allow": 0, "downgrade": 1, "defer": 2, "block": 3}


def decide(
    usage: list[tuple[Budget, int]], tier: str, priority: Priority, may_skip_downgrade: bool
) -> Decision:
    """The most severe action among the thresholds each budget has reached.

    ``usage`` pairs each budget in scope with its spend this period (pico-dollars). A
    downgrade applies only to requests for its ``from_tier``; a critical request from a key
    allowed to mark requests critical skips downgrades (never a block); deferral applies to
    deferrable requests.
    """
    best = ALLOW
    for budget, spent_pico in usage:
        for threshold, cutoff in zip(budget.thresholds, budget.cutoffs_pico, strict=True):
            if spent_pico < cutoff:
                break  # thresholds are sorted by `at`
            candidate = _action(budget, threshold, tier, priority, may_skip_downgrade)
            if candidate is not None and _SEVERITY[candidate.kind] > _SEVERITY[best.kind]:
                best = candidate
    return best


def _action(
    budget: Budget, threshold: Threshold, tier: str, priority: Priority, may_skip: bool
) -> Decision | None:
    if threshold.action == "block":
        return Decision("block", budget, threshold)
    if threshold.action == "defer" and priority == "deferrable":
        return Decision("defer", budget, threshold)
    if threshold.action == "downgrade" and threshold.from_tier == tier:
        if priority == "critical" and may_skip:
            return None
        return Decision("downgrade", budget, threshold)
    return None


def active_action(budget: Budget, fraction: Decimal) -> str | None:
    """What the budget does now (for its state): the last reached threshold's action, or
    ``block`` once the limit itself is reached."""
    if fraction >= 1:
        return "block"
    reached = [t.action for t in budget.thresholds if t.at <= fraction]
    return reached[-1] if reached else None
