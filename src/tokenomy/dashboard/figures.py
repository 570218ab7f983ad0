"""Rollup sums turned into the rows pages show: money as exact decimal strings, unit
economics computed the way the reports compute them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tokenomy.dashboard.memo import Grouped, Sums
from tokenomy.money import from_pico, usd_str

_QUANTUM = Decimal("1e-12")


def usd(pico: int) -> str:
    return usd_str(from_pico(pico))


def _per(amount: Decimal, count: int) -> str:
    return usd_str((amount / count).quantize(_QUANTUM)) if count else "0"


def by_group(grouped: Grouped) -> dict[str, Sums]:
    """Sums per group over every bucket."""
    out: dict[str, Sums] = {}
    for groups in grouped.values():
        for value, sums in groups.items():
            found = out.get(value)
            if found is None:
                found = out[value] = Sums()
            found.add(sums)
    return out


def total(grouped: Grouped) -> Sums:
    out = Sums()
    for groups in grouped.values():
        for sums in groups.values():
            out.add(sums)
    return out


def ranked(groups: dict[str, Sums]) -> list[tuple[str, Sums]]:
    """Groups by spend, largest first (then by name, for a stable order)."""
    return sorted(groups.items(), key=lambda item: (-item[1].cost_pico, item[0]))


def row(sums: Sums, whole_pico: int = 0) -> dict[str, Any]:
    cost = from_pico(sums.cost_pico)
    return {
        "requests": sums.requests,
        "errors": sums.errors,
        "input_tokens": sums.input_tokens,
        "cached_input_tokens": sums.cached_tokens,
        "output_tokens": sums.output_tokens,
        "tokens": sums.tokens,
        "cost_usd": usd_str(cost),
        "cost_per_request_usd": _per(cost, sums.requests),
        "cost_per_1k_tokens_usd": _per(cost * 1000, sums.tokens),
        "avg_latency_ms": round(sums.latency_ms_sum / sums.requests, 1) if sums.requests else 0.0,
        "share": sums.cost_pico / whole_pico if whole_pico else 0.0,
    }
