"""What the planners read from the ledger (through the spend analytics): the blended API
price and monthly volume, per-line run rates for an allocation plan, and a period's usage
as what-if slices. Shared by ``tokenomy plan`` and the dashboard's Planner page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tokenomy.analytics.spend import SpendQuery, query_spend, spend_query
from tokenomy.database import Connection
from tokenomy.errors import InvalidRequest
from tokenomy.money import MILLION
from tokenomy.planning.allocate import line_scope
from tokenomy.planning.whatif import Slice, slices_from_spend

_PRICE_PLACES = Decimal("0.000001")


def _since(days: int, now: datetime | None = None) -> int:
    if days < 1:
        raise InvalidRequest("the ledger window must be at least 1 day", param="days")
    now = now or datetime.now(UTC)
    return int((now - timedelta(days=days)).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class ApiSpend:
    """The last ``days`` of the ledger: spend, tokens, and both scaled to 30 days."""

    days: int
    cost_usd: Decimal
    tokens: int
    requests: int

    @property
    def usd_per_mtok(self) -> Decimal:
        return (self.cost_usd * MILLION / self.tokens).quantize(_PRICE_PLACES)

    @property
    def monthly_tokens(self) -> Decimal:
        return Decimal(self.tokens) * 30 / self.days

    @property
    def monthly_usd(self) -> Decimal:
        return self.cost_usd * 30 / self.days

    def public(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "cost_usd": str(self.cost_usd),
            "tokens": self.tokens,
            "requests": self.requests,
            "usd_per_mtok": str(self.usd_per_mtok),
            "monthly_mtok": float(self.monthly_tokens / MILLION),
            "monthly_usd": str(self.monthly_usd.quantize(Decimal("0.000001"))),
        }


def api_spend(conn: Connection, days: int, now: datetime | None = None) -> ApiSpend | None:
    """The ledger's API spend over the last ``days``; None when it recorded no tokens."""
    result = query_spend(conn, SpendQuery([], _since(days, now), None))
    tokens = sum(r["input_tokens"] + r["output_tokens"] for r in result["rows"])
    if not tokens:
        return None
    return ApiSpend(days, Decimal(result["total_cost_usd"]), tokens, result["total_requests"])


def fill_plan(raw: dict[str, Any], conn: Connection, days: int) -> None:
    """``usd_per_mtok: ledger`` and ``demand_mtok: forecast`` in an allocation plan → the
    line's blended price and run rate over the last ``days`` (scaled to 30 days, times the
    line's ``growth``), by the line's scope (the one ``--apply`` gives its budget)."""
    start = _since(days)
    for item in raw.get("lines") or []:
        if not isinstance(item, dict):
            continue
        if item.get("usd_per_mtok") != "ledger" and item.get("demand_mtok") != "forecast":
            continue
        scope = line_scope(item)
        result = query_spend(conn, SpendQuery([], start, None, scope))
        tokens = sum(r["input_tokens"] + r["output_tokens"] for r in result["rows"])
        if not tokens:
            raise InvalidRequest(
                f"line {item.get('name')!r}: no usage in the ledger for {scope}", param="lines"
            )
        if item.get("usd_per_mtok") == "ledger":
            per_mtok = Decimal(result["total_cost_usd"]) * MILLION / tokens
            item["usd_per_mtok"] = str(per_mtok.quantize(_PRICE_PLACES))
        if item.get("demand_mtok") == "forecast":
            try:
                growth = float(item.get("growth", 1.0))
            except (TypeError, ValueError):
                raise InvalidRequest(f"line {item.get('name')!r}: growth", param="lines") from None
            item["demand_mtok"] = tokens / 1e6 * 30 / days * growth


def departments(conn: Connection, days: int) -> list[dict[str, Any]]:
    """Each department's spend, tokens and blended price over the last ``days``."""
    result = query_spend(conn, SpendQuery(["department"], _since(days), None))
    out = []
    for row in result["rows"]:
        tokens = row["input_tokens"] + row["output_tokens"]
        if not tokens:
            continue
        cost = Decimal(row["cost_usd"])
        out.append(
            {
                "department": row["department"] or "(none)",
                "cost_usd": row["cost_usd"],
                "monthly_mtok": tokens / 1e6 * 30 / days,
                "usd_per_mtok": str((cost * MILLION / tokens).quantize(_PRICE_PLACES)),
            }
        )
    return out


def period_slices(conn: Connection, period: str | None, days: int, group_by: str) -> list[Slice]:
    """A ledger period (``2026-11``, ``last-month`` ...) or the last ``days``, as what-if
    slices by ``group_by`` and model."""
    if period:
        query = spend_query(f"{group_by},model", period, None, None, {})
    else:
        query = SpendQuery([group_by, "model"], _since(days), None)
    rows = query_spend(conn, query)["rows"]
    if not rows:
        raise InvalidRequest("the ledger has no usage in that period", param="period")
    return slices_from_spend(rows, group_by)
