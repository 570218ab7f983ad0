"""What-if: re-price recorded usage under alternatives, side by side.

The usage is a list of :class:`Slice` (tokens by group and model), from the ledger (a
period grouped by any dimension and model, through the spend analytics) or from a trace
file (one row per request: context and generated tokens, all sent to one model). Each
scenario is a list of changes applied in order to every slice:

- ``switch``: a group's traffic (``team=support``) goes to another model;
- ``price``: a model's price changes (input/output per million tokens);
- ``cache``: a share of requests is answered by the cache (no model cost);
- ``route``: a share of traffic goes to a cheaper model (a router);
- ``growth``: volume multiplied by a factor.

Prices come from the deployment's price book; a model it does not know must be given a
price with ``price``. Money stays Decimal.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenomy.errors import InvalidRequest
from tokenomy.money import MILLION, ZERO, usd_str
from tokenomy.pricing import PriceSheet

PriceLookup = Callable[[str], PriceSheet | None]
_PLACES = Decimal("0.000001")  # to the micro-dollar: small ledgers are not all $0.00


@dataclass(frozen=True, slots=True)
class Slice:
    group: str
    model: str
    requests: Decimal
    input_tokens: Decimal
    cached_input_tokens: Decimal
    output_tokens: Decimal
    cost_usd: Decimal | None = None  # as recorded (ledger); None for traces


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # switch | price | cache | route | growth
    match: tuple[str, str] | None = None  # (field, value) for switch: group or model
    model: str = ""
    share: Decimal = ZERO
    factor: Decimal = Decimal(1)
    price: PriceSheet | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    changes: tuple[Change, ...]


def _scaled(s: Slice, factor: Decimal, model: str | None = None) -> Slice:
    return replace(
        s,
        model=model or s.model,
        requests=s.requests * factor,
        input_tokens=s.input_tokens * factor,
        cached_input_tokens=s.cached_input_tokens * factor,
        output_tokens=s.output_tokens * factor,
        cost_usd=None,
    )


def _apply(change: Change, slices: list[Slice], prices: dict[str, PriceSheet]) -> list[Slice]:
    if change.kind == "price":
        assert change.price is not None
        prices[change.model] = change.price
        return [replace(s, cost_usd=None) if s.model == change.model else s for s in slices]
    out: list[Slice] = []
    for s in slices:
        if change.kind == "growth":
            out.append(_scaled(s, change.factor))
        elif change.kind == "switch":
            field, value = change.match or ("", "")
            hit = s.group == value if field == "group" else s.model == value
            out.append(_scaled(s, Decimal(1), change.model) if hit else s)
        elif change.kind == "cache":
            out.append(_scaled(s, 1 - change.share))
        elif change.kind == "route":
            if s.model == change.model:
                out.append(s)
                continue
            out.append(_scaled(s, 1 - change.share))
            out.append(_scaled(s, change.share, change.model))
        else:
            raise InvalidRequest(f"unknown change {change.kind!r}", param="scenario")
    return out


def _cost(s: Slice, prices: dict[str, PriceSheet], lookup: PriceLookup) -> Decimal:
    if s.cost_usd is not None:
        return s.cost_usd
    sheet = prices.get(s.model) or lookup(s.model)
    if sheet is None:
        raise InvalidRequest(
            f"no price for model {s.model!r}: add it to the config or give --price", param="model"
        )
    cached_price = sheet.cached_input_per_mtok
    if cached_price is None:
        cached_price = sheet.input_per_mtok
    uncached = s.input_tokens - s.cached_input_tokens
    return (
        uncached * sheet.input_per_mtok
        + s.cached_input_tokens * cached_price
        + s.output_tokens * sheet.output_per_mtok
    ) / MILLION


def run(slices: list[Slice], scenarios: list[Scenario], lookup: PriceLookup) -> dict[str, Any]:
    """Baseline and every scenario: cost per group and in total."""
    columns: dict[str, dict[str, Decimal]] = {}
    base_prices: dict[str, PriceSheet] = {}
    columns["baseline"] = _by_group(slices, base_prices, lookup)
    for scenario in scenarios:
        prices: dict[str, PriceSheet] = {}
        current = list(slices)
        for change in scenario.changes:
            current = _apply(change, current, prices)
        columns[scenario.name] = _by_group(current, prices, lookup)
    groups = sorted({g for column in columns.values() for g in column})
    baseline_total = sum(columns["baseline"].values(), ZERO)
    totals = {name: sum(column.values(), ZERO) for name, column in columns.items()}
    return {
        "scenarios": list(columns),
        "rows": [
            {
                "group": g,
                **{n: usd_str(c.get(g, ZERO).quantize(_PLACES)) for n, c in columns.items()},
            }
            for g in groups
        ],
        "total": {name: usd_str(total.quantize(_PLACES)) for name, total in totals.items()},
        "change_vs_baseline": {
            name: (
                round(float((total - baseline_total) / baseline_total), 4)
                if baseline_total
                else None
            )
            for name, total in totals.items()
        },
    }


def _by_group(
    slices: list[Slice], prices: dict[str, PriceSheet], lookup: PriceLookup
) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for s in slices:
        out[s.group] = out.get(s.group, ZERO) + _cost(s, prices, lookup)
    return out


def slices_from_spend(rows: list[dict[str, Any]], group_by: str) -> list[Slice]:
    """Rows of the spend analytics grouped by ``group_by`` and ``model``."""
    return [
        Slice(
            group=str(row.get(group_by) or "(none)"),
            model=str(row["model"]),
            requests=Decimal(row["requests"]),
            input_tokens=Decimal(row["input_tokens"]),
            cached_input_tokens=Decimal(row["cached_input_tokens"]),
            output_tokens=Decimal(row["output_tokens"]),
            cost_usd=Decimal(row["cost_usd"]),
        )
        for row in rows
    ]


def slices_from_trace(path: str | Path, model: str) -> list[Slice]:
    """An Azure LLM inference trace (TIMESTAMP, ContextTokens, GeneratedTokens) as one slice
    per hour, all sent to ``model``."""
    buckets: dict[str, list[int]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            hour = row["TIMESTAMP"].strip()[:13] + ":00"
            bucket = buckets.setdefault(hour, [0, 0, 0])
            bucket[0] += 1
            bucket[1] += int(row["ContextTokens"])
            bucket[2] += int(row["GeneratedTokens"])
    if not buckets:
        raise InvalidRequest(f"{path}: the trace has no requests", param="trace")
    return [
        Slice(hour, model, Decimal(n), Decimal(i), ZERO, Decimal(o))
        for hour, (n, i, o) in sorted(buckets.items())
    ]


def parse_change(kind: str, text: str) -> Change:
    """The CLI forms: ``switch team=support:gpt-4o-mini``, ``price gpt-4o:2.5:10``,
    ``cache 0.3``, ``route 0.4:gpt-4o-mini``, ``growth 2``."""
    try:
        if kind == "growth":
            return Change("growth", factor=Decimal(text))
        if kind == "cache":
            return Change("cache", share=_share(text))
        if kind == "route":
            share, _, model = text.partition(":")
            return Change("route", share=_share(share), model=model)
        if kind == "switch":
            scope, _, model = text.rpartition(":")
            field, _, value = scope.partition("=")
            if not model or not value:
                raise ValueError
            return Change(
                "switch", match=("model" if field == "model" else "group", value), model=model
            )
        if kind == "price":
            model, input_price, output_price = text.split(":")
            sheet = PriceSheet(Decimal(input_price), Decimal(output_price))
            return Change("price", model=model, price=sheet)
    except (ValueError, ArithmeticError):
        pass
    raise InvalidRequest(f"cannot read --{kind} {text!r}", param=kind)


def _share(text: str) -> Decimal:
    share = Decimal(text)
    if not ZERO <= share <= 1:
        raise ValueError(text)
    return share


KINDS = ("price", "switch", "route", "cache", "growth")


def scenarios(changes: list[tuple[str, str]], combined: bool = True) -> list[Scenario]:
    """One scenario per change (``(kind, text)`` in the CLI forms), named ``"kind text"``,
    plus ``all`` of them together when there are several and ``combined``."""
    parsed = []
    for kind, text in changes:
        if kind not in KINDS:
            raise InvalidRequest(f"change {kind!r}: choose from {', '.join(KINDS)}", param=kind)
        parsed.append((f"{kind} {text}", parse_change(kind, text)))
    if not parsed:
        raise InvalidRequest(
            "give at least one change: switch, price, cache, route or growth", param="changes"
        )
    out = [Scenario(name, (change,)) for name, change in parsed]
    if combined and len(parsed) > 1:
        out.append(Scenario("all", tuple(change for _, change in parsed)))
    return out
