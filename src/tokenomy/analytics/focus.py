"""FinOps FOCUS 1.2 cost and usage rows from the ledger.

One row per charge period (an hour or a UTC day), principal (tenant, key, team, ...),
model and token class: ``input`` (uncached prompt tokens), ``cached_input`` (cache reads),
``cache_write`` and ``output`` (reasoning included). Rows are read from the hourly or
daily rollups (the raw events when the range is not aligned to them).

Money:

- ListCost = ListUnitPrice x PricingQuantity, exactly: the model's current price sheet per
  million tokens (``PricingUnit`` "1000000 Tokens"); no negotiated prices, so the
  contracted columns equal the list ones.
- BilledCost = EffectiveCost is the ledger's cost (integer pico-dollars), split over the
  token classes of the row group. When the list costs add up to the ledger's cost (flat
  prices, the common case) each class gets exactly its list cost; otherwise (tiered
  genai-prices, batch discounts, cache hits at no cost, prices changed since) the ledger's
  cost is shared in proportion to the list costs (to the token counts when those are
  zero), to the pico-dollar, largest remainders first. Either way a charge period's rows
  sum to the ledger's cost exactly.

A model no longer in the configuration has no price sheet: its unit price is the billed
price per million tokens (to 1e-12 USD) and ``x_PriceSource`` says ``ledger``.
"""

from __future__ import annotations

import calendar
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import IO, Any, Literal

import orjson

from tokenomy.database import Connection
from tokenomy.ledger.sqlite import ROLLUPS
from tokenomy.money import ZERO, from_pico, normalize
from tokenomy.pricing import Catalog, Model

Granularity = Literal["hour", "day"]
GRANULARITY_SECONDS: dict[str, int] = {"hour": 3600, "day": 86400}
TOKEN_CLASSES = ("input", "cached_input", "cache_write", "output")
METERS = {
    "input": "Input Tokens",
    "cached_input": "Cached Input Tokens",
    "cache_write": "Cache Write Tokens",
    "output": "Output Tokens",
}
PRICING_UNIT = "1000000 Tokens"
TAG_DIMENSIONS = ("department", "team", "project", "environment", "user", "workflow")
DECIMAL_COLUMNS = frozenset(
    {
        "BilledCost",
        "ConsumedQuantity",
        "ContractedCost",
        "ContractedUnitPrice",
        "EffectiveCost",
        "ListCost",
        "ListUnitPrice",
        "PricingQuantity",
    }
)
DATETIME_COLUMNS = frozenset(
    {"BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart"}
)
JSON_COLUMNS = frozenset({"SkuPriceDetails", "Tags"})
INTEGER_COLUMNS = frozenset({"x_ReasoningTokens"})
FOCUS_COLUMNS = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)
CUSTOM_COLUMNS = ("x_KeyId", "x_ModelTier", "x_PriceSource", "x_ReasoningTokens")
COLUMNS = FOCUS_COLUMNS + CUSTOM_COLUMNS

_DIMENSIONS = (
    "tenant, key_id, user, team, department, project, environment, workflow, model, tier, upstream"
)
_SUMS = (
    "SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), "
    "SUM(reasoning_tokens), SUM(cost_pico / 1000000), SUM(cost_pico % 1000000)"
)
_MILLION = Decimal(1_000_000)
_PICO = Decimal(1).scaleb(-12)

FocusRow = dict[str, Any]


def _source(start_ms: int, end_ms: int, seconds: int) -> tuple[str, str, int]:
    """(table, its time column, how many of that column's units per second): the coarsest
    rollup whose buckets fit the charge periods and the range bounds, else the events."""
    for table, column, bucket in reversed(ROLLUPS):
        if seconds % bucket == 0 and start_ms % (bucket * 1000) == end_ms % (bucket * 1000) == 0:
            return table, column, 1
    return "events", "ts_ms", 1000


def _groups(
    conn: Connection, start_ms: int, end_ms: int, seconds: int
) -> Iterator[tuple[Any, ...]]:
    table, column, per_second = _source(start_ms, end_ms, seconds)
    bucket = f"{column} / {per_second * seconds} * {seconds}"
    sql = (
        f"SELECT {bucket} AS bucket, {_DIMENSIONS}, {_SUMS} FROM {table} "
        f"WHERE {column} >= ? AND {column} < ? GROUP BY bucket, {_DIMENSIONS} "
        f"ORDER BY bucket, {_DIMENSIONS}"
    )
    scale = 1000 // per_second  # milliseconds per unit of the time column
    yield from conn.execute(sql, (start_ms // scale, end_ms // scale))


def focus_rows(
    conn: Connection,
    catalog: Catalog,
    start_ms: int,
    end_ms: int,
    granularity: Granularity = "day",
) -> Generator[FocusRow, None, None]:
    """The FOCUS rows of charges in ``[start_ms, end_ms)``, in charge period order."""
    seconds = GRANULARITY_SECONDS[granularity]
    for group in _groups(conn, start_ms, end_ms, seconds):
        bucket, tenant, key_id, user, team, department, project, environment = group[:8]
        workflow, model_name, tier, upstream = group[8:12]
        input_tokens, cache_read, cache_write, output, reasoning, micro, pico = (
            int(value or 0) for value in group[12:19]
        )
        tokens = {
            "input": input_tokens - cache_read - cache_write,
            "cached_input": cache_read,
            "cache_write": cache_write,
            "output": output,
        }
        cost_pico = micro * 1_000_000 + pico
        period_start = max(bucket * 1000, start_ms)
        period_end = min((bucket + seconds) * 1000, end_ms)
        principal = {
            "department": department,
            "team": team,
            "project": project,
            "environment": environment,
            "user": user,
            "workflow": workflow,
        }
        base = _base_row(tenant, key_id, principal, tier, upstream, period_start, period_end)
        model = catalog.get(model_name)
        for token_class, billed, unit_price, source in _split(model, tokens, cost_pico):
            row = dict(base)
            row.update(_charge(model_name, model, token_class, tokens[token_class], unit_price))
            row.update(BilledCost=billed, EffectiveCost=billed, x_PriceSource=source)
            row["x_ReasoningTokens"] = reasoning if token_class == "output" else None
            yield row


def _split(
    model: Model | None, tokens: dict[str, int], cost_pico: int
) -> list[tuple[str, Decimal, Decimal, str]]:
    """(token class, billed cost, list unit price per million tokens, price source) for every
    class with tokens; the billed costs sum to ``cost_pico`` exactly."""
    classes = [c for c in TOKEN_CLASSES if tokens[c] > 0]
    if not classes:
        if cost_pico == 0:
            return []
        classes = ["input"]  # a cost without tokens: still exported, so sums stay exact
    prices = _unit_prices(model)
    list_costs = {c: prices[c] * tokens[c] / _MILLION for c in classes} if prices else {}
    total = from_pico(cost_pico)
    if list_costs and sum(list_costs.values(), ZERO) == total:
        billed = {c: normalize(list_costs[c]) for c in classes}
    else:
        weights = {c: list_costs.get(c, ZERO) for c in classes}
        if not any(weights.values()):
            weights = {c: Decimal(tokens[c]) for c in classes}
        if not any(weights.values()):
            weights = {c: Decimal(1) for c in classes}
        billed = {c: from_pico(share) for c, share in _apportion(cost_pico, weights).items()}
    if prices:
        return [(c, billed[c], prices[c], _price_source(model)) for c in classes]
    return [(c, billed[c], _billed_unit_price(billed[c], tokens[c]), "ledger") for c in classes]


def _price_source(model: Model | None) -> str:
    return "ledger" if model is None else model.price.source


def _apportion(total: int, weights: dict[str, Decimal]) -> dict[str, int]:
    """Integer shares of ``total`` in proportion to ``weights`` (largest remainders)."""
    whole = sum((Fraction(w) for w in weights.values()), Fraction(0))
    exact = {name: Fraction(total) * Fraction(w) / whole for name, w in weights.items()}
    shares = {name: int(value // 1) for name, value in exact.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(exact, key=lambda name: exact[name] - shares[name], reverse=True)
    for name in by_remainder[:left]:
        shares[name] += 1
    return shares


def _unit_prices(model: Model | None) -> dict[str, Decimal]:
    if model is None:
        return {}
    sheet = model.price
    cached, write = sheet.cached_input_per_mtok, sheet.cache_write_per_mtok
    return {
        "input": sheet.input_per_mtok,
        "cached_input": sheet.input_per_mtok if cached is None else cached,
        "cache_write": sheet.input_per_mtok if write is None else write,
        "output": sheet.output_per_mtok,
    }


def _billed_unit_price(billed: Decimal, tokens: int) -> Decimal:
    if tokens <= 0:
        return ZERO
    return normalize((billed * _MILLION / tokens).quantize(_PICO))


def _base_row(
    tenant: str,
    key_id: str,
    principal: dict[str, str],
    tier: str,
    upstream: str,
    period_start_ms: int,
    period_end_ms: int,
) -> FocusRow:
    start = datetime.fromtimestamp(period_start_ms / 1000, UTC)
    billing_start = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    billing_end = datetime.fromtimestamp(billing_start.timestamp() + days * 86400, UTC)
    tags = {name: value for name, value in principal.items() if value}
    team = principal["team"] or None
    return {
        "AvailabilityZone": None,
        "BillingAccountId": tenant,
        "BillingAccountName": tenant,
        "BillingCurrency": "USD",
        "BillingPeriodEnd": billing_end,
        "BillingPeriodStart": billing_start,
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": datetime.fromtimestamp(period_end_ms / 1000, UTC),
        "ChargePeriodStart": start,
        "InvoiceId": None,
        "InvoiceIssuerName": upstream,
        "PricingCategory": "Standard",
        "ProviderName": upstream,
        "PublisherName": upstream,
        "RegionId": None,
        "RegionName": None,
        "ServiceCategory": "AI and Machine Learning",
        "SubAccountId": team,
        "SubAccountName": team,
        "Tags": orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode() if tags else None,
        "x_KeyId": key_id or None,
        "x_ModelTier": tier or None,
    }


def _charge(
    model_name: str, model: Model | None, token_class: str, tokens: int, unit_price: Decimal
) -> FocusRow:
    quantity = Decimal(tokens).scaleb(-6)
    list_cost = normalize(unit_price * quantity)
    embedding = model is not None and model.kind == "embedding"
    meter = METERS[token_class]
    return {
        "ChargeDescription": (
            f"{model_name} {meter.lower()} at {_plain(unit_price)} USD per million tokens"
        ),
        "ConsumedQuantity": Decimal(tokens),
        "ConsumedUnit": "Tokens",
        "ContractedCost": list_cost,
        "ContractedUnitPrice": unit_price,
        "ListCost": list_cost,
        "ListUnitPrice": unit_price,
        "PricingQuantity": normalize(quantity),
        "PricingUnit": PRICING_UNIT,
        "ResourceId": model_name,
        "ResourceName": model_name,
        "ResourceType": "Embedding Model" if embedding else "Language Model",
        "ServiceName": "Embeddings" if embedding else "LLM Inference",
        "ServiceSubcategory": "Natural Language Processing" if embedding else "Generative AI",
        "SkuId": model_name,
        "SkuMeter": meter,
        "SkuPriceDetails": orjson.dumps({"x_TokenClass": token_class}).decode(),
        "SkuPriceId": f"{model_name}:{token_class}",
    }


# -- files ------------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    return format(normalize(value), "f")


def cell(column: str, value: Any) -> str:
    """One CSV field: NULL is an empty field, decimals in plain notation, date/times in
    ISO 8601 UTC with a Z (``2026-11-01T00:00:00Z``)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def write_csv(rows: Iterable[FocusRow], out: IO[str]) -> int:
    """Write the header and ``rows``; returns the number of rows written."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([cell(column, row.get(column)) for column in COLUMNS])
        count += 1
    return count


def write_parquet(rows: Iterable[FocusRow], path: str) -> int:
    """Write ``rows`` as Parquet (needs the ``parquet`` extra: pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetUnavailable(
            "--format parquet needs pyarrow: pip install 'tokenomy[parquet]'"
        ) from None
    decimal = pa.decimal128(38, 18)
    quantum = Decimal(1).scaleb(-18)

    def arrow_type(column: str) -> Any:
        if column in DECIMAL_COLUMNS:
            return decimal
        if column in DATETIME_COLUMNS:
            return pa.timestamp("s", tz="UTC")
        if column in INTEGER_COLUMNS:
            return pa.int64()
        return pa.string()

    table_rows = list(rows)
    arrays = []
    for column in COLUMNS:
        values = [row.get(column) for row in table_rows]
        if column in DECIMAL_COLUMNS:
            values = [None if v is None else v.quantize(quantum) for v in values]
        arrays.append(pa.array(values, type=arrow_type(column)))
    pq.write_table(pa.Table.from_arrays(arrays, names=list(COLUMNS)), path)
    return len(table_rows)


class ParquetUnavailable(RuntimeError):
    """pyarrow is not installed."""
