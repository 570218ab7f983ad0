"""``tokenomy export focus`` on a real gateway's ledger, checked by a validator written from
the FOCUS 1.2 specification (independent of the exporter) and against ``/admin/spend``."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from click.testing import CliRunner

from conftest import Gateway
from tokenomy.cli.main import cli

# -- a FOCUS 1.2 validator ---------------------------------------------------------------
# Every column of FOCUS 1.2: (data type, allows nulls, feature level), from the column
# definitions of the specification (specification/columns/*.md at tag v1.2).
M, C, R = "Mandatory", "Conditional", "Recommended"
SPEC: dict[str, tuple[str, bool, str]] = {
    "AvailabilityZone": ("String", True, R),
    "BilledCost": ("Decimal", False, M),
    "BillingAccountId": ("String", False, M),
    "BillingAccountName": ("String", True, M),
    "BillingAccountType": ("String", False, C),
    "BillingCurrency": ("Currency", False, M),
    "BillingPeriodEnd": ("DateTime", False, M),
    "BillingPeriodStart": ("DateTime", False, M),
    "CapacityReservationId": ("String", True, C),
    "CapacityReservationStatus": ("String", True, C),
    "ChargeCategory": ("String", False, M),
    "ChargeClass": ("String", True, M),
    "ChargeDescription": ("String", True, M),
    "ChargeFrequency": ("String", False, R),
    "ChargePeriodEnd": ("DateTime", False, M),
    "ChargePeriodStart": ("DateTime", False, M),
    "CommitmentDiscountCategory": ("String", True, C),
    "CommitmentDiscountId": ("String", True, C),
    "CommitmentDiscountName": ("String", True, C),
    "CommitmentDiscountQuantity": ("Decimal", True, C),
    "CommitmentDiscountStatus": ("String", True, C),
    "CommitmentDiscountType": ("String", True, C),
    "CommitmentDiscountUnit": ("Unit", True, C),
    "ConsumedQuantity": ("Decimal", True, C),
    "ConsumedUnit": ("Unit", True, C),
    "ContractedCost": ("Decimal", False, M),
    "ContractedUnitPrice": ("Decimal", True, C),
    "EffectiveCost": ("Decimal", False, M),
    "InvoiceId": ("String", True, R),
    "InvoiceIssuerName": ("String", False, M),
    "ListCost": ("Decimal", False, M),
    "ListUnitPrice": ("Decimal", True, C),
    "PricingCategory": ("String", True, C),
    "PricingCurrency": ("Currency", True, C),
    "PricingCurrencyContractedUnitPrice": ("Decimal", True, C),
    "PricingCurrencyEffectiveCost": ("Decimal", True, C),
    "PricingCurrencyListUnitPrice": ("Decimal", True, C),
    "PricingQuantity": ("Decimal", True, M),
    "PricingUnit": ("Unit", True, M),
    "ProviderName": ("String", False, M),
    "PublisherName": ("String", False, M),
    "RegionId": ("String", True, C),
    "RegionName": ("String", True, C),
    "ResourceId": ("String", True, C),
    "ResourceName": ("String", True, C),
    "ResourceType": ("String", True, C),
    "ServiceCategory": ("String", False, M),
    "ServiceName": ("String", False, M),
    "ServiceSubcategory": ("String", False, R),
    "SkuId": ("String", True, C),
    "SkuMeter": ("String", True, C),
    "SkuPriceDetails": ("JSON", True, C),
    "SkuPriceId": ("String", True, C),
    "SubAccountId": ("String", True, C),
    "SubAccountName": ("String", True, C),
    "SubAccountType": ("String", True, C),
    "Tags": ("JSON", True, C),
}
MANDATORY = {name for name, (_, _, level) in SPEC.items() if level == M}
# Conditional columns whose condition holds for an LLM gateway: it measures usage, prices
# per unit from price lists, has tags, sub accounts (teams) and resources (models).
CONDITIONAL_THAT_APPLY = {
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
}
ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {"Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "ServiceCategory": {
        "AI and Machine Learning", "Analytics", "Business Applications", "Compute",
        "Databases", "Developer Tools", "Multicloud", "Identity", "Integration",
        "Internet of Things", "Management and Governance", "Media", "Migration", "Mobile",
        "Networking", "Security", "Storage", "Web", "Other",
    },
}  # fmt: skip
AI_SUBCATEGORIES = {
    "AI Platforms", "Bots", "Generative AI", "Machine Learning", "Natural Language Processing",
    "Other (AI and Machine Learning)",
}  # fmt: skip
FOCUS_SKU_PRICE_PROPERTIES = {
    "CoreCount", "DiskMaxIops", "DiskSpace", "DiskType", "GpuCount", "InstanceType",
    "InstanceSeries", "MemorySize", "NetworkMaxIops", "NetworkMaxThroughput",
    "OperatingSystem", "Redundancy", "StorageClass",
}  # fmt: skip
# Numeric Format: an integer, a decimal or E notation; no "+" sign, no commas or units.
NUMERIC = re.compile(r"^-?(\d+(\.\d+)?|\.\d+)(E-?\d+)?$", re.IGNORECASE)
# Date/Time Format: extended ISO 8601 in UTC, YYYY-MM-DDTHH:mm:ssZ.
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CURRENCY = re.compile(r"^[A-Z]{3}$")  # ISO 4217 (national currency)
# Unit Format: [quantity ]Units, Unit-TimeUnits or Units/TimeUnit, capitalized words.
_WORD = r"(?:[1-9]\d* )?(?:[A-Z][A-Za-z]*|[KMGTPE]i?[bB]|[bB])"
UNIT = re.compile(rf"^{_WORD}(?:[-/]{_WORD})?$")
PASCAL = re.compile(r"^[A-Z][a-z0-9]*(?:[A-Z][a-z0-9]*)*$")
CUSTOM = re.compile(r"^x_[A-Za-z0-9]+$")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate keys {keys}")
    return dict(pairs)


def key_values(text: str) -> dict[str, Any]:
    """Key-Value Format: a JSON object, unique keys, scalar values only."""
    value = json.loads(text, object_pairs_hook=_unique_keys)
    assert isinstance(value, dict), text
    for item in value.values():
        assert not isinstance(item, dict | list), f"{text}: values must not be objects/arrays"
    return value


def moment(text: str) -> datetime:
    assert DATETIME.match(text), f"not YYYY-MM-DDTHH:mm:ssZ: {text!r}"
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def number(text: str) -> Decimal:
    assert NUMERIC.match(text), f"not in the Numeric Format: {text!r}"
    try:
        return Decimal(text)
    except InvalidOperation:
        raise AssertionError(f"not a valid decimal: {text!r}") from None


def validate_columns(header: list[str]) -> None:
    assert len(header) == len(set(header)), "duplicate column"
    focus = [c for c in header if not c.startswith("x_")]
    custom = [c for c in header if c.startswith("x_")]
    for column in focus:
        assert column in SPEC, f"{column!r} is neither a FOCUS 1.2 column nor x_-prefixed"
        assert PASCAL.match(column) and len(column) <= 50, column
    for column in custom:
        assert CUSTOM.match(column), f"custom column {column!r}: x_ then alphanumerics"
    assert header == focus + custom, "custom columns come after all FOCUS columns"
    missing = (MANDATORY | CONDITIONAL_THAT_APPLY) - set(header)
    assert not missing, f"required columns missing: {sorted(missing)}"


def validate_row(row: dict[str, str | None]) -> None:
    def value(column: str) -> str | None:
        return row.get(column)

    for column, (kind, nullable, _) in SPEC.items():
        if column not in row:
            continue
        text = row[column]
        if text is None:
            assert nullable, f"{column} must not be null"
            continue
        assert text.strip(), f"{column}: an empty or blank string is not a value"
        if kind == "Decimal":
            number(text)
        elif kind == "DateTime":
            moment(text)
        elif kind == "Currency":
            assert CURRENCY.match(text), f"{column}: not ISO 4217: {text!r}"
        elif kind == "Unit":
            assert UNIT.match(text), f"{column}: not in the Unit Format: {text!r}"
        elif kind == "JSON":
            key_values(text)
        if column in ALLOWED:
            assert text in ALLOWED[column], f"{column}: {text!r} is not an allowed value"
    # Periods: inclusive start before exclusive end; a charge period inside its billing period.
    charge = moment(value("ChargePeriodStart") or ""), moment(value("ChargePeriodEnd") or "")
    billing = moment(value("BillingPeriodStart") or ""), moment(value("BillingPeriodEnd") or "")
    assert charge[0] < charge[1] and billing[0] < billing[1]
    assert billing[0] <= charge[0] and charge[1] <= billing[1]
    assert value("BillingCurrency") == "USD"
    category, correction = value("ChargeCategory"), value("ChargeClass") == "Correction"
    if value("ServiceCategory") == "AI and Machine Learning" and value("ServiceSubcategory"):
        assert value("ServiceSubcategory") in AI_SUBCATEGORIES
    if category == "Purchase":
        assert value("ChargeFrequency") != "Usage-Based"
    if category in ("Usage", "Purchase") and not correction:
        for column in ("ListUnitPrice", "ContractedUnitPrice", "PricingCategory", "SkuId"):
            assert value(column) is not None, f"{column} must not be null for {category}"
        for column in ("PricingQuantity", "SkuPriceId"):
            assert value(column) is not None, f"{column} must not be null for {category}"
    if category == "Usage" and not correction:
        assert value("ConsumedQuantity") is not None
    # Pairs that are null together.
    for quantity, unit in (
        ("ConsumedQuantity", "ConsumedUnit"),
        ("PricingQuantity", "PricingUnit"),
    ):
        assert (value(quantity) is None) == (value(unit) is None), (quantity, unit)
    assert (value("ResourceId") is None) == (value("ResourceType") is None)
    if value("SkuId") is None:
        assert value("SkuMeter") is None
    if value("SkuPriceId") is None:
        assert value("SkuPriceDetails") is None
    details = value("SkuPriceDetails")
    if details is not None:
        for key in key_values(details):
            assert key in FOCUS_SKU_PRICE_PROPERTIES or key.startswith("x_"), key
    # Unit prices are non-negative and price x quantity is the cost, exactly.
    quantity = value("PricingQuantity")
    for price_column, cost_column in (
        ("ListUnitPrice", "ListCost"),
        ("ContractedUnitPrice", "ContractedCost"),
    ):
        price = value(price_column)
        if price is not None and quantity is not None and not correction:
            assert number(price) >= 0
            assert number(price) * number(quantity) == number(value(cost_column) or ""), row
    if category == "Usage":
        assert value("ChargeFrequency") in (None, "Usage-Based")


def read_focus_csv(text: str) -> list[dict[str, str | None]]:
    """Rows of a FOCUS CSV; an empty field is NULL."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    validate_columns(header)
    rows = [
        {c: (v if v != "" else None) for c, v in zip(header, line, strict=True)} for line in reader
    ]
    for row in rows:
        validate_row(row)
    return rows


# -- traffic and exports -----------------------------------------------------------------

LONG = " ".join(["ledger invoice forecast"] * 500)  # >= 1024 tokens: cache reads


@pytest.fixture(scope="module")
def traffic(gateway: Gateway) -> Gateway:
    for team, project in (("support", "helpdesk"), ("research", "agents")):
        key = gateway.create_key(team=team, project=project, environment="prod", user=f"{team}-1")
        client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        headers = {"x-tokenomy-workflow": "triage"}
        for model in ("premium-model", "gpt-4o-mini", "llama-70b", "claude-sonnet", "reasoner"):
            for content in ("hello", LONG):
                client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": f"{content} {team}"}],
                    max_tokens=10,
                    extra_headers=headers,
                )
        client.embeddings.create(model="embed-small", input="a few words")
        stream = client.chat.completions.create(
            model="premium-model",
            messages=[{"role": "user", "content": "stream"}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert sum(1 for _ in stream)
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(
                model="broken-model", messages=[{"role": "user", "content": "x"}], max_tokens=5
            )
    return gateway


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def export(gateway: Gateway, *args: str, config: Path | None = None) -> str:
    result = CliRunner().invoke(
        cli, ["export", "focus", "--config", str(config or gateway.config_path), *args]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def spend(gateway: Gateway, **query: str) -> dict[str, Any]:
    response = gateway.admin("GET", "/admin/spend", params=query)
    assert response.status_code == 200, response.text
    return dict(response.json())


def billed(rows: list[dict[str, str | None]]) -> Decimal:
    return sum((Decimal(row["BilledCost"] or "") for row in rows), Decimal(0))


def test_contract_command_writes_a_valid_export_equal_to_the_ledger(
    traffic: Gateway, tmp_path: Path
) -> None:
    out = tmp_path / "focus.csv"
    command = [sys.executable, "-m", "tokenomy", "export", "focus", "--period", month()]
    command += ["--format", "csv", "--out", str(out), "--config", str(traffic.config_path)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    rows = read_focus_csv(out.read_text())
    assert billed(rows) == Decimal(spend(traffic, period=month())["total_cost_usd"])
    assert billed(rows) > 0
    for row in rows:
        assert row["BilledCost"] == row["EffectiveCost"]
        assert row["ServiceCategory"] == "AI and Machine Learning"
        assert row["ConsumedUnit"] == "Tokens" and row["PricingUnit"] == "1000000 Tokens"
        assert Decimal(row["PricingQuantity"] or "") * 1_000_000 == Decimal(
            row["ConsumedQuantity"] or ""
        )
        assert (moment(row["ChargePeriodEnd"] or "") - moment(row["ChargePeriodStart"] or "")) == (
            timedelta(days=1)
        )


def test_costs_by_team_and_model_and_tokens_by_class_equal_the_ledger(traffic: Gateway) -> None:
    rows = read_focus_csv(export(traffic, "--period", month()))
    by_team_model: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    tokens: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        tags = key_values(row["Tags"] or "{}")
        assert row["SubAccountId"] == tags["team"]
        assert tags["project"] in ("helpdesk", "agents") and tags["environment"] == "prod"
        assert tags.get("workflow") in (None, "triage")
        by_team_model[(tags["team"], row["SkuId"] or "")] += Decimal(row["BilledCost"] or "")
        tokens[(row["SkuId"] or "", row["SkuMeter"] or "")] += int(row["ConsumedQuantity"] or "")
    report = spend(traffic, period=month(), group_by="team,model")
    expected = {(r["team"], r["model"]): Decimal(r["cost_usd"]) for r in report["rows"]}
    assert by_team_model == {k: v for k, v in expected.items() if v}
    ledger: dict[tuple[str, str], int] = defaultdict(int)
    for event in traffic.events():
        model = event["model"]
        fresh = event["input_tokens"] - event["cache_read_tokens"] - event["cache_write_tokens"]
        ledger[(model, "Input Tokens")] += fresh
        ledger[(model, "Cached Input Tokens")] += event["cache_read_tokens"]
        ledger[(model, "Cache Write Tokens")] += event["cache_write_tokens"]
        ledger[(model, "Output Tokens")] += event["output_tokens"]
    # Models whose failures cost nothing and carried no tokens have no rows.
    assert tokens == {k: v for k, v in ledger.items() if v}
    assert tokens[("premium-model", "Cached Input Tokens")] > 0
    # Flat prices: each token class is billed exactly its list cost.
    for row in rows:
        if row["SkuId"] in ("premium-model", "reasoner", "llama-70b"):
            assert row["BilledCost"] == row["ListCost"]
            assert row["x_PriceSource"] in ("config", "self-hosted")
    reasoning = [r for r in rows if r["SkuId"] == "reasoner" and r["SkuMeter"] == "Output Tokens"]
    assert reasoning and all(int(r["x_ReasoningTokens"] or "0") > 0 for r in reasoning)


def test_hourly_charge_periods_and_unaligned_ranges(traffic: Gateway) -> None:
    hourly = read_focus_csv(export(traffic, "--period", month(), "--granularity", "hour"))
    assert billed(hourly) == Decimal(spend(traffic, period=month())["total_cost_usd"])
    for row in hourly:
        start = moment(row["ChargePeriodStart"] or "")
        assert moment(row["ChargePeriodEnd"] or "") - start == timedelta(hours=1)
        assert start.minute == start.second == 0
    # A range on no rollup's boundary is read from the raw events, charge periods clipped.
    events = traffic.events()
    first = datetime.fromtimestamp(events[0]["ts_ms"] // 1000 - 1, UTC)
    last = datetime.fromtimestamp(events[-1]["ts_ms"] // 1000 + 2, UTC)
    bounds = [moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment in (first, last)]
    clipped = read_focus_csv(export(traffic, "--from", bounds[0], "--to", bounds[1]))
    expected = spend(traffic, **{"from": bounds[0], "to": bounds[1]})
    assert expected["source"] == "events"
    assert billed(clipped) == Decimal(expected["total_cost_usd"]) == billed(hourly)
    assert min(r["ChargePeriodStart"] or "" for r in clipped) == bounds[0]
    assert max(r["ChargePeriodEnd"] or "" for r in clipped) == bounds[1]


def test_changed_and_removed_prices_still_bill_the_ledger(traffic: Gateway, tmp_path: Path) -> None:
    config = yaml.safe_load(traffic.config_path.read_text())
    for model in config["models"]:
        if model["name"] == "premium-model":
            model["price"] = {"input_per_mtok": "7.00", "output_per_mtok": "21.00"}
    config["models"] = [m for m in config["models"] if m["name"] != "reasoner"]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    rows = read_focus_csv(export(traffic, "--period", month(), config=changed))
    assert billed(rows) == Decimal(spend(traffic, period=month())["total_cost_usd"])
    premium = [r for r in rows if r["SkuId"] == "premium-model"]
    assert premium and all(r["ListUnitPrice"] in ("7", "21") for r in premium)
    assert sum(Decimal(r["ListCost"] or "") for r in premium) > billed(premium)
    gone = [r for r in rows if r["SkuId"] == "reasoner"]
    assert gone and {r["x_PriceSource"] for r in gone} == {"ledger"}


def test_parquet_export_has_typed_columns_and_the_same_rows(
    traffic: Gateway, tmp_path: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the parquet extra (pyarrow) is needed")
    import pyarrow as pa

    out = tmp_path / "focus.parquet"
    export(traffic, "--period", month(), "--format", "parquet", "--out", str(out))
    table = pq.read_table(out)
    schema = table.schema
    validate_columns(schema.names)
    for name, (kind, _, _) in SPEC.items():
        if name not in schema.names:
            continue
        field_type = schema.field(name).type
        if kind == "Decimal":
            assert pa.types.is_decimal(field_type), name
        elif kind == "DateTime":
            assert pa.types.is_timestamp(field_type) and field_type.tz == "UTC", name
        else:
            assert pa.types.is_string(field_type), name
    csv_rows = read_focus_csv(export(traffic, "--period", month()))
    assert table.num_rows == len(csv_rows)
    assert sum(table.column("BilledCost").to_pylist()) == billed(csv_rows)


def test_parquet_without_pyarrow_fails_clearly(
    traffic: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = CliRunner().invoke(
        cli,
        [
            *("export", "focus", "--config", str(traffic.config_path), "--period", month()),
            *("--format", "parquet", "--out", str(tmp_path / "x.parquet")),
        ],
    )
    assert result.exit_code == 1
    assert "pip install 'tokenomy[parquet]'" in result.output


def test_the_validator_rejects_what_the_specification_forbids() -> None:
    read_focus_csv(sample_csv())
    for column, bad in (
        ("ChargePeriodStart", "2026-11-01 00:00:00"),  # not ISO 8601 with T and Z
        ("BilledCost", "1,5"),
        ("BilledCost", "35.2E+7"),
        ("BillingCurrency", "usd"),
        ("Tags", '{"team": {"nested": 1}}'),
        ("Tags", '{"a": 1, "a": 2}'),
        ("ChargeCategory", "Spend"),
        ("ListCost", "999"),  # not ListUnitPrice x PricingQuantity
        ("ChargePeriodEnd", "2026-11-01T00:00:00Z"),  # not after the start
        ("ProviderName", ""),  # null in a column that allows none
    ):
        with pytest.raises((AssertionError, ValueError)):
            read_focus_csv(sample_csv(**{column: bad}))
    with pytest.raises(AssertionError):
        validate_columns(["BilledCost", "MyColumn"])
    with pytest.raises(AssertionError):
        validate_columns([*sorted(MANDATORY | CONDITIONAL_THAT_APPLY), "x_Team", "Tags"])


SAMPLE = {
    "BilledCost": "0.000123",
    "BillingAccountId": "default",
    "BillingAccountName": "default",
    "BillingCurrency": "USD",
    "BillingPeriodEnd": "2026-12-01T00:00:00Z",
    "BillingPeriodStart": "2026-11-01T00:00:00Z",
    "ChargeCategory": "Usage",
    "ChargeClass": "",
    "ChargeDescription": "m input tokens",
    "ChargePeriodEnd": "2026-11-03T00:00:00Z",
    "ChargePeriodStart": "2026-11-02T00:00:00Z",
    "ConsumedQuantity": "41",
    "ConsumedUnit": "Tokens",
    "ContractedCost": "0.000205",
    "ContractedUnitPrice": "5",
    "EffectiveCost": "0.000123",
    "InvoiceIssuerName": "mock",
    "ListCost": "0.000205",
    "ListUnitPrice": "5",
    "PricingCategory": "Standard",
    "PricingQuantity": "0.000041",
    "PricingUnit": "1000000 Tokens",
    "ProviderName": "mock",
    "PublisherName": "mock",
    "ResourceId": "m",
    "ResourceName": "m",
    "ResourceType": "Language Model",
    "ServiceCategory": "AI and Machine Learning",
    "ServiceName": "LLM Inference",
    "SkuId": "m",
    "SkuMeter": "Input Tokens",
    "SkuPriceDetails": '{"x_TokenClass": "input"}',
    "SkuPriceId": "m:input",
    "SubAccountId": "support",
    "SubAccountName": "support",
    "Tags": '{"team": "support"}',
    "x_KeyId": "key_1",
}


def sample_csv(**changes: str) -> str:
    """A hand-written valid FOCUS row, with some fields changed."""
    row = {**SAMPLE, **changes}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(row)
    writer.writerow(row.values())
    return out.getvalue()
