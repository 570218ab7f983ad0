"""Budget allocation as a linear program (SciPy's HiGHS).

Variables: millions of tokens ``x_i`` for each line (a department, or a department's use
case in one environment). Each line has a cost per million tokens ``c_i`` and a value per
million tokens ``v_i``. Maximise ``sum v_i x_i`` subject to

- the total: ``sum c_i x_i <= total``;
- per line: ``min_i <= c_i x_i <= max_i`` and ``x_i <= demand_i`` (the forecast: money
  beyond what a line will use buys nothing);
- per department: ``min_d <= sum_{i in d} c_i x_i <= max_d``;
- shares: dev spend ``<= dev_max_share x total spend``, prod spend ``>= prod_min_share x
  total spend``.

Every constraint is a named row, so the answer can name the binding ones with their shadow
prices (HiGHS marginals: value gained per extra dollar of that limit), and an infeasible
plan is explained by an irreducible set of conflicting rows (a deletion filter: drop each
row in turn and keep it only if the rest becomes feasible without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from scipy.optimize import linprog

from tokenomy.errors import InvalidRequest
from tokenomy.money import parse_usd, usd_str

_TOL = 1e-7
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    usd_per_mtok: Decimal
    value_per_mtok: float
    department: str = ""
    environment: str = "prod"
    min_usd: Decimal = Decimal(0)
    max_usd: Decimal | None = None
    demand_mtok: float | None = None
    scope: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Plan:
    total_usd: Decimal
    lines: list[Line]
    departments: dict[str, tuple[Decimal, Decimal | None]] = field(default_factory=dict)
    dev_max_share: float | None = None
    prod_min_share: float | None = None


@dataclass(frozen=True, slots=True)
class _Row:
    name: str
    coeffs: np.ndarray  # of A_ub, in USD (c_i per variable) or share-weighted USD
    rhs: float
    explain: str


def _rows(plan: Plan) -> list[_Row]:
    n = len(plan.lines)
    cost = np.array([float(line.usd_per_mtok) for line in plan.lines])
    rows = [_Row("total", cost.copy(), float(plan.total_usd), f"total <= ${plan.total_usd}")]
    for i, line in enumerate(plan.lines):
        unit = np.zeros(n)
        unit[i] = cost[i]
        if line.min_usd > 0:
            rows.append(
                _Row(
                    f"{line.name}.min",
                    -unit,
                    -float(line.min_usd),
                    f"{line.name} >= ${line.min_usd}",
                )
            )
        if line.max_usd is not None:
            rows.append(
                _Row(
                    f"{line.name}.max", unit, float(line.max_usd), f"{line.name} <= ${line.max_usd}"
                )
            )
        if line.demand_mtok is not None:
            demand_usd = line.demand_mtok * cost[i]
            rows.append(
                _Row(
                    f"{line.name}.demand",
                    unit,
                    demand_usd,
                    f"{line.name} <= forecast {line.demand_mtok:g} Mtok (${demand_usd:,.2f})",
                )
            )
    for department, (low, high) in sorted(plan.departments.items()):
        member = np.array(
            [cost[i] if ln.department == department else 0.0 for i, ln in enumerate(plan.lines)]
        )
        if low > 0:
            rows.append(_Row(f"{department}.min", -member, -float(low), f"{department} >= ${low}"))
        if high is not None:
            rows.append(_Row(f"{department}.max", member, float(high), f"{department} <= ${high}"))
    dev = np.array(
        [c if ln.environment == "dev" else 0.0 for c, ln in zip(cost, plan.lines, strict=True)]
    )
    prod = np.array(
        [c if ln.environment == "prod" else 0.0 for c, ln in zip(cost, plan.lines, strict=True)]
    )
    if plan.dev_max_share is not None:
        share = plan.dev_max_share
        rows.append(_Row("dev_share.max", dev - share * cost, 0.0, f"dev <= {share:.0%} of spend"))
    if plan.prod_min_share is not None:
        share = plan.prod_min_share
        rows.append(
            _Row("prod_share.min", share * cost - prod, 0.0, f"prod >= {share:.0%} of spend")
        )
    return rows


def _solve(plan: Plan, rows: list[_Row]) -> Any:
    values = np.array([line.value_per_mtok for line in plan.lines])
    a_ub = np.vstack([row.coeffs for row in rows]) if rows else None
    b_ub = np.array([row.rhs for row in rows]) if rows else None
    return linprog(-values, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")


def _conflict(plan: Plan, rows: list[_Row]) -> list[_Row]:
    """An irreducible infeasible subset of rows (deletion filter)."""
    kept = list(rows)
    for row in list(rows):
        trial = [r for r in kept if r is not row]
        if _solve(plan, trial).status == 2:  # still infeasible without it: not needed
            kept = trial
    return kept


def explain_conflict(conflict: list[_Row]) -> str:
    names = {row.name for row in conflict}
    minimums = [row for row in conflict if row.name.endswith(".min") and "share" not in row.name]
    if "total" in names and minimums and len(conflict) == len(minimums) + 1:
        floor = sum(-row.rhs for row in minimums)
        total = next(row.rhs for row in conflict if row.name == "total")
        return (
            f"the minimums add up to ${floor:,.2f}, more than the total ${total:,.2f}: "
            + "; ".join(row.explain for row in conflict)
        )
    return "these constraints cannot all hold together: " + "; ".join(r.explain for r in conflict)


def allocate(plan: Plan) -> dict[str, Any]:
    if not plan.lines:
        raise InvalidRequest("the plan has no lines to allocate to", param="lines")
    rows = _rows(plan)
    result = _solve(plan, rows)
    if result.status == 2:
        conflict = _conflict(plan, rows)
        return {
            "status": "infeasible",
            "conflicting_constraints": [row.name for row in conflict],
            "explanation": explain_conflict(conflict),
        }
    if result.status == 3:
        raise InvalidRequest("the plan is unbounded: give a total limit", param="total_usd")
    if result.status != 0:
        raise InvalidRequest(f"the solver failed: {result.message}")
    tokens = result.x
    allocation = []
    for i, line in enumerate(plan.lines):
        spend = Decimal(repr(float(tokens[i]))) * line.usd_per_mtok
        allocation.append(
            {
                "line": line.name,
                "department": line.department,
                "environment": line.environment,
                "mtok": round(float(tokens[i]), 6),
                "usd": usd_str(spend.quantize(_CENT)),
                "value": round(float(tokens[i]) * line.value_per_mtok, 6),
            }
        )
    slack = result.ineqlin.residual
    marginals = result.ineqlin.marginals
    binding = [
        {
            "constraint": row.name,
            "meaning": row.explain,
            # HiGHS marginals are d(-value)/d(rhs); a minimum is stored negated (-a.x <= -min).
            "shadow_price": round(
                float(marginals[k]) if row.name.endswith(".min") else -float(marginals[k]), 9
            ),
        }
        for k, row in enumerate(rows)
        if abs(slack[k]) <= _TOL * max(1.0, abs(row.rhs))
    ]
    total_spend = sum((Decimal(str(a["usd"])) for a in allocation), Decimal(0))
    return {
        "status": "optimal",
        "total_value": round(-float(result.fun), 6),
        "total_usd": usd_str(total_spend),
        "limit_usd": usd_str(plan.total_usd),
        "allocation": allocation,
        "binding": binding,
    }


def _optional_usd(raw: Any, key: str) -> Decimal | None:
    value = raw.get(key)
    return None if value is None else parse_usd(value)


def line_scope(item: dict[str, Any]) -> dict[str, str]:
    """Whose spend a line is: its ``scope``, or else its department and the environment
    if the line names one (an environment left to its default scopes nothing: traffic
    without an environment label must still count)."""
    if item.get("scope"):
        return {str(k): str(v) for k, v in item["scope"].items()}
    return {k: str(item[k]) for k in ("department", "environment") if item.get(k)}


def _share_or_none(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    share = float(value)
    if not 0 <= share <= 1:
        raise InvalidRequest(f"{key} must be between 0 and 1", param=key)
    return share


def parse_plan(raw: dict[str, Any]) -> Plan:
    """A plan from its YAML/JSON form (see the README's Planning section)."""
    if not isinstance(raw, dict) or "total_usd" not in raw:
        raise InvalidRequest("a plan needs total_usd and lines", param="total_usd")
    try:
        return _parse_plan(raw)
    except (ValueError, TypeError, AttributeError, ArithmeticError) as exc:
        raise InvalidRequest(f"the plan has a value that is not a number: {exc}") from None


def _parse_plan(raw: dict[str, Any]) -> Plan:
    lines = []
    for item in raw.get("lines") or []:
        if not isinstance(item, dict) or "name" not in item or "usd_per_mtok" not in item:
            raise InvalidRequest("every line needs a name and usd_per_mtok", param="lines")
        demand = item.get("demand_mtok")
        lines.append(
            Line(
                name=str(item["name"]),
                usd_per_mtok=parse_usd(item["usd_per_mtok"]),
                value_per_mtok=float(item.get("value_per_mtok", 1.0)),
                department=str(item.get("department", "")),
                environment=str(item.get("environment", "prod")),
                min_usd=_optional_usd(item, "min_usd") or Decimal(0),
                max_usd=_optional_usd(item, "max_usd"),
                demand_mtok=None if demand in (None, "forecast") else float(demand),
                scope=line_scope(item),
            )
        )
    for line in lines:
        if line.usd_per_mtok <= 0:
            raise InvalidRequest(f"line {line.name!r}: usd_per_mtok must be > 0", param="lines")
        if line.min_usd < 0 or (line.max_usd is not None and line.max_usd < 0):
            raise InvalidRequest(f"line {line.name!r}: limits must be >= 0", param="lines")
    departments = {
        str(name): (_optional_usd(spec, "min_usd") or Decimal(0), _optional_usd(spec, "max_usd"))
        for name, spec in (raw.get("departments") or {}).items()
    }
    return Plan(
        total_usd=parse_usd(raw["total_usd"]),
        lines=lines,
        departments=departments,
        dev_max_share=_share_or_none(raw, "dev_max_share"),
        prod_min_share=_share_or_none(raw, "prod_min_share"),
    )
