"""The Planner page's data: the capacity, TCO, allocation and what-if calculators.

Each takes the JSON the page posts, checks it (a bad field is an :class:`InvalidRequest`
naming it: a 400 in the dashboard's error format) and calls the planning modules, the
same functions ``tokenomy plan`` calls; the page only draws what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from tokenomy.database import Connection
from tokenomy.errors import InvalidRequest
from tokenomy.money import MILLION, parse_usd
from tokenomy.planning import ledger
from tokenomy.planning.allocate import allocate as solve
from tokenomy.planning.allocate import parse_plan
from tokenomy.planning.capacity import Deployment, Target, Workload
from tokenomy.planning.catalog import BYTES_PER_VALUE, Catalogs, load_catalogs
from tokenomy.planning.sizing import all_tokens_per_s, capacity_report, concurrency_sweep
from tokenomy.planning.tco import SelfHosting, compare, hosting_for, timeline
from tokenomy.planning.whatif import KINDS, PriceLookup, run, scenarios
from tokenomy.pricing import Catalog

LEDGER_DAYS = 30
GROUPS = ("team", "department", "project", "environment", "workflow", "user", "model")


@lru_cache(maxsize=1)
def catalogs() -> Catalogs:
    return load_catalogs(None)


# -- reading the posted JSON -----------------------------------------------------------------


def _present(body: dict[str, Any], key: str) -> bool:
    return body.get(key) not in (None, "")


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float:
    value = body.get(key)
    try:
        number = float(value) if isinstance(value, int | float | str) else float("nan")
    except ValueError:
        number = float("nan")
    if isinstance(value, bool) or not low <= number <= high:
        raise InvalidRequest(f"{key} must be a number from {low:g} to {high:g}", param=key)
    return number


def _int(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    if not _present(body, key):
        return default
    number = _number(body, key, low, high)
    if number != int(number):
        raise InvalidRequest(f"{key} must be a whole number", param=key)
    return int(number)


def _required_int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = _int(body, key, default, low, high)
    assert value is not None
    return value


def _float(body: dict[str, Any], key: str, default: float | None, low: float, high: float) -> Any:
    return _number(body, key, low, high) if _present(body, key) else default


def _decimal(body: dict[str, Any], key: str, default: str, low: str, high: str) -> Decimal:
    value = _float(body, key, None, float(low), float(high))
    return Decimal(default) if value is None else Decimal(str(body[key]).strip())


def _usd(body: dict[str, Any], key: str) -> Decimal | None:
    if not _present(body, key):
        return None
    try:
        amount = parse_usd(str(body[key]).strip())
    except ValueError:
        raise InvalidRequest(f"{key} must be an amount in USD, e.g. 2.50", param=key) from None
    if amount < 0:
        raise InvalidRequest(f"{key} must not be negative", param=key)
    return amount


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{key} is required", param=key)
    return value.strip()


def _precision(body: dict[str, Any], key: str, default: str | None) -> str | None:
    if not _present(body, key):
        return default
    value = _text(body, key)
    if value not in BYTES_PER_VALUE:
        choices = ", ".join(BYTES_PER_VALUE)
        raise InvalidRequest(f"{key} {value!r}: choose from {choices}", param=key)
    return value


def _deployment(body: dict[str, Any]) -> tuple[Deployment, Workload]:
    found = catalogs()
    model = found.model(_text(body, "model"))
    gpu = found.gpu(_text(body, "gpu"))
    gpus = _required_int(body, "gpus", 1, 1, 4096)
    weights = _precision(body, "weights", "bf16") or "bf16"
    deployment = Deployment(
        model,
        gpu,
        gpus,
        weights,
        _precision(body, "kv_cache", None),
        _int(body, "tp", None, 1, 4096),
    )
    workload = Workload(
        _required_int(body, "isl", 1024, 1, 1_000_000),
        _required_int(body, "osl", 256, 1, 1_000_000),
    )
    return deployment, workload


# -- the calculators -------------------------------------------------------------------------


def setup(conn: Connection, prices: Catalog) -> dict[str, Any]:
    """What the forms offer: catalog models and GPUs, precisions, the ledger's API spend,
    departments and priced models."""
    found = catalogs()
    spend = ledger.api_spend(conn, LEDGER_DAYS)
    return {
        "models": [m.public() for m in found.models.values()],
        "gpus": [g.public() for g in found.gpus.values()],
        "precisions": list(BYTES_PER_VALUE),
        "ledger": None if spend is None else spend.public(),
        "departments": ledger.departments(conn, LEDGER_DAYS),
        "priced_models": sorted(m.name for m in prices if m.kind != "embedding"),
        "groups": list(GROUPS),
        "change_kinds": list(KINDS),
    }


def capacity(body: dict[str, Any]) -> dict[str, Any]:
    """``tokenomy plan capacity`` and the throughput/latency curve over concurrency."""
    deployment, workload = _deployment(body)
    target = Target(
        _int(body, "concurrency", None, 1, 10_000_000),
        _float(body, "max_tpot_ms", None, 0.001, 1e7),
        _float(body, "max_ttft_ms", None, 0.001, 1e8),
    )
    report = capacity_report(
        deployment,
        workload,
        target,
        _usd(body, "gpu_hour_usd"),
        _float(body, "utilization", 1.0, 0.01, 1.0),
        _float(body, "traffic", None, 0.001, 1e12),
    )
    served = report.get("concurrency_served") or report["batch_per_replica"] * report["replicas"]
    return {
        "report": report,
        "operating_concurrency": served,
        "sweep": concurrency_sweep(deployment, workload, include=(int(served),)),
    }


def tco(body: dict[str, Any], conn: Connection) -> dict[str, Any]:
    """Renting and buying the same deployment against the API, and the cumulative costs
    (either way is left out when it has no price: no catalog GPU and none given)."""
    gpus = _required_int(body, "gpus", 8, 1, 100_000)
    gpu = catalogs().gpu(_text(body, "gpu")) if _present(body, "gpu") else None
    if _present(body, "tokens_per_s"):
        tokens_per_s = _number(body, "tokens_per_s", 0.001, 1e12)
        throughput_from = "given"
    else:
        if gpu is None or not _present(body, "model"):
            raise InvalidRequest("give tokens_per_s, or a model and a GPU to predict it")
        deployment, workload = _deployment({**body, "gpus": gpus})
        tokens_per_s = all_tokens_per_s(deployment, workload)
        throughput_from = "capacity model"
    common: dict[str, Any] = {
        "gpu_hour_usd": _usd(body, "gpu_hour_usd"),
        "gpu_price_usd": _usd(body, "gpu_price_usd"),
        "server_overhead": _decimal(body, "server_overhead", "0.25", "0", "10"),
        "depreciation_months": _required_int(body, "depreciation_months", 36, 1, 240),
        "power_load": _decimal(body, "power_load", "0.8", "0", "1"),
        "pue": _decimal(body, "pue", "1.3", "1", "5"),
        "kwh_usd": _usd(body, "kwh_usd") if _present(body, "kwh_usd") else Decimal("0.10"),
        "ops_usd_per_month": _usd(body, "ops_usd_per_month") or Decimal(0),
        "utilization": _decimal(body, "utilization", "0.6", "0.01", "1"),
    }
    if _present(body, "power_kw"):
        common["gpu_power_kw"] = _decimal(body, "power_kw", "0.7", "0", "100")
    months = _required_int(body, "months", common["depreciation_months"], 1, 240)
    api_price = _usd(body, "api_usd_per_mtok")
    monthly_mtok = _float(body, "monthly_mtok", None, 0.0, 1e12)
    spend = None
    if api_price is None or monthly_mtok is None:
        spend = ledger.api_spend(conn, LEDGER_DAYS)
        if spend is None:
            raise InvalidRequest(
                f"the ledger has no usage in the last {LEDGER_DAYS} days: give the API price "
                "per million tokens and the monthly volume",
                param="api_usd_per_mtok" if api_price is None else "monthly_mtok",
            )
    price = api_price if api_price is not None or spend is None else spend.usd_per_mtok
    if monthly_mtok is not None or spend is None:
        volume = Decimal(str(monthly_mtok or 0)) * MILLION
    else:
        volume = spend.monthly_tokens
    if price is None or price <= 0:
        raise InvalidRequest("the API price must be > 0", param="api_usd_per_mtok")
    throughput = Decimal(repr(float(tokens_per_s)))
    hostings: list[SelfHosting] = []
    refusals: list[InvalidRequest] = []
    for mode in ("rent", "buy"):  # either may lack a price; one of them is enough
        try:
            hostings.append(hosting_for(mode, gpus, throughput, gpu, **common))
        except InvalidRequest as refused:
            refusals.append(refused)
    if not hostings:
        raise refusals[0]
    results: dict[str, Any] = {str(h.mode): compare(h, price, volume) for h in hostings}
    api_monthly = volume * price / MILLION
    return {
        **results,
        "tokens_per_s": float(throughput),
        "throughput_from": throughput_from,
        "api": {
            "usd_per_mtok": str(price),
            "monthly_mtok": float(volume / MILLION),
            "usd_per_month": str(api_monthly.quantize(Decimal("0.01"))),
            "from_ledger": spend is not None,
            "ledger": None if spend is None else spend.public(),
        },
        "timeline": timeline(hostings, api_monthly, months),
        "payback": _payback_point(results["buy"], api_monthly) if "buy" in results else None,
    }


def _payback_point(buy: dict[str, Any], api_monthly: Decimal) -> dict[str, Any] | None:
    """Where buying meets the API on the cumulative chart: the payback month, and what
    the API would have cost by then (equal to the capital plus cash spent so far)."""
    months = buy["payback_months"]
    if months is None:
        return None
    spent = api_monthly * Decimal(str(months))
    return {"months": months, "usd": str(spent.quantize(Decimal("0.01")))}


def allocation(body: dict[str, Any], conn: Connection) -> dict[str, Any]:
    """A plan in the same shape as ``tokenomy plan allocate``'s PLAN.yaml."""
    if not isinstance(body.get("lines"), list):
        raise InvalidRequest("a plan needs total_usd and a list of lines", param="lines")
    days = _required_int(body, "days", LEDGER_DAYS, 1, 3660)
    raw = {k: v for k, v in body.items() if k != "days"}
    raw["lines"] = [dict(line) if isinstance(line, dict) else line for line in body["lines"]]
    ledger.fill_plan(raw, conn, days)
    return {**solve(parse_plan(raw)), "lines": raw["lines"]}


def whatif(body: dict[str, Any], conn: Connection, prices: PriceLookup) -> dict[str, Any]:
    """A ledger period re-priced under each change and all together."""
    group_by = _text(body, "group_by", "team")
    if group_by not in GROUPS:
        raise InvalidRequest(
            f"group_by {group_by!r}: choose from {', '.join(GROUPS)}", param="group_by"
        )
    changes = body.get("changes")
    if not isinstance(changes, list) or not all(
        isinstance(c, dict) and isinstance(c.get("kind"), str) and isinstance(c.get("text"), str)
        for c in changes
    ):
        raise InvalidRequest('changes: a list of {"kind": ..., "text": ...}', param="changes")
    the_scenarios = scenarios(
        [(c["kind"], c["text"].strip()) for c in changes], body.get("combined", True) is not False
    )
    period = body.get("period") or None
    if period is not None and not isinstance(period, str):
        raise InvalidRequest("period must be text, e.g. 2026-11 or last-month", param="period")
    days = _required_int(body, "days", LEDGER_DAYS, 1, 3660)
    slices = ledger.period_slices(conn, period, days, group_by)
    result = run(slices, the_scenarios, prices)
    return {**result, "group_by": group_by, "period": period or f"last {days} days"}


def price_lookup(prices: Catalog) -> Callable[[str], Any]:
    def lookup(name: str) -> Any:
        model = prices.get(name)
        return None if model is None else model.price

    return lookup
