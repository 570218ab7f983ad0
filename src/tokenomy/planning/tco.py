"""Self-hosting versus paying per token: monthly cost, cost per million tokens, break-even
volume and payback.

All money is Decimal. A month is 730 hours (8,760 / 12). Buying GPUs is straight-line
depreciation of the capital (GPUs plus the server around them) over its life, plus power
(board power x load x PUE x electricity price) and operations; renting is the hourly price
for every hour of the month (reserved capacity is paid whether used or not), plus
operations. The API side is priced at the ledger's (or a given) blended price per million
tokens, so both sides are compared on the same monthly token volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal

from tokenomy.errors import InvalidRequest
from tokenomy.money import MILLION, ZERO, usd_str
from tokenomy.planning.catalog import GpuSpec

HOURS_PER_MONTH = Decimal(730)
_CENT = Decimal("0.01")
_TENTH = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class SelfHosting:
    mode: Literal["rent", "buy"]
    gpus: int
    tokens_per_s: Decimal  # whole-deployment token throughput at full load
    gpu_hour_usd: Decimal = ZERO  # rent
    gpu_price_usd: Decimal = ZERO  # buy: per GPU
    server_overhead: Decimal = Decimal("0.25")  # buy: chassis, CPUs, network per GPU dollar
    depreciation_months: int = 36
    gpu_power_kw: Decimal = Decimal("0.7")
    power_load: Decimal = Decimal("0.8")  # average draw over board power while serving
    pue: Decimal = Decimal("1.3")
    kwh_usd: Decimal = Decimal("0.10")
    ops_usd_per_month: Decimal = ZERO
    utilization: Decimal = Decimal("0.6")  # share of capacity that real traffic fills

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise InvalidRequest("gpus must be >= 1", param="gpus")
        if self.tokens_per_s <= 0:
            raise InvalidRequest("throughput must be > 0", param="tokens_per_s")
        if not ZERO < self.utilization <= 1:
            raise InvalidRequest("utilization must be in (0, 1]", param="utilization")
        if self.depreciation_months < 1:
            raise InvalidRequest("depreciation must be >= 1 month", param="depreciation")

    @property
    def capex_usd(self) -> Decimal:
        if self.mode == "rent":
            return ZERO
        return self.gpus * self.gpu_price_usd * (1 + self.server_overhead)

    @property
    def power_usd_per_month(self) -> Decimal:
        if self.mode == "rent":
            return ZERO  # in the hourly price
        kw = self.gpus * self.gpu_power_kw * self.power_load * self.pue
        return kw * HOURS_PER_MONTH * self.kwh_usd

    @property
    def cash_usd_per_month(self) -> Decimal:
        """Money out each month, capital aside."""
        rent = self.gpus * self.gpu_hour_usd * HOURS_PER_MONTH if self.mode == "rent" else ZERO
        return rent + self.power_usd_per_month + self.ops_usd_per_month

    @property
    def cost_usd_per_month(self) -> Decimal:
        """Cash plus depreciation: the monthly cost of owning the capacity."""
        return self.cash_usd_per_month + self.capex_usd / self.depreciation_months

    @property
    def capacity_tokens_per_month(self) -> Decimal:
        return self.tokens_per_s * 3600 * HOURS_PER_MONTH

    @property
    def served_tokens_per_month(self) -> Decimal:
        return self.capacity_tokens_per_month * self.utilization

    @property
    def usd_per_mtok(self) -> Decimal:
        return self.cost_usd_per_month * MILLION / self.served_tokens_per_month


def compare(
    hosting: SelfHosting, api_usd_per_mtok: Decimal, monthly_tokens: Decimal
) -> dict[str, Any]:
    """Self-hosting against the API at ``monthly_tokens`` a month."""
    if api_usd_per_mtok <= 0:
        raise InvalidRequest("the API price must be > 0", param="api_usd_per_mtok")
    api_monthly = monthly_tokens * api_usd_per_mtok / MILLION
    deployments = max(
        1, int((monthly_tokens / hosting.served_tokens_per_month).to_integral(ROUND_CEILING))
    )
    fits = monthly_tokens <= hosting.served_tokens_per_month
    # Break-even: the volume at which the API bill equals the monthly cost of this deployment.
    break_even = hosting.cost_usd_per_month * MILLION / api_usd_per_mtok
    saving_cash = api_monthly - hosting.cash_usd_per_month
    payback: Decimal | None = None
    if hosting.mode == "buy" and saving_cash > 0:
        payback = hosting.capex_usd / saving_cash
    return {
        "mode": hosting.mode,
        "gpus": hosting.gpus,
        "capex_usd": usd_str(hosting.capex_usd.quantize(_CENT)),
        "power_usd_per_month": usd_str(hosting.power_usd_per_month.quantize(_CENT)),
        "cash_usd_per_month": usd_str(hosting.cash_usd_per_month.quantize(_CENT)),
        "cost_usd_per_month": usd_str(hosting.cost_usd_per_month.quantize(_CENT)),
        "capacity_mtok_per_month": float(hosting.capacity_tokens_per_month / MILLION),
        "utilization": float(hosting.utilization),
        "self_hosted_usd_per_mtok": usd_str(hosting.usd_per_mtok.quantize(Decimal("0.0001"))),
        "api_usd_per_mtok": usd_str(api_usd_per_mtok),
        "monthly_mtok": float(monthly_tokens / MILLION),
        "api_usd_per_month": usd_str(api_monthly.quantize(_CENT)),
        "volume_fits_deployment": fits,
        "deployments_needed": deployments,
        "break_even_mtok_per_month": float((break_even / MILLION).quantize(_TENTH)),
        "monthly_saving_usd": usd_str((api_monthly - hosting.cost_usd_per_month).quantize(_CENT)),
        "payback_months": None if payback is None else float(payback.quantize(Decimal("0.01"))),
        "payback_note": _payback_note(hosting, payback, fits),
    }


def _payback_note(hosting: SelfHosting, payback: Decimal | None, fits: bool) -> str:
    if hosting.mode == "rent":
        return "renting has no capital to pay back; compare monthly costs"
    if payback is None:
        return "never: the API costs less each month than power and operations"
    if not fits:
        return "the volume needs more than this deployment; payback assumes it all fits"
    if payback > hosting.depreciation_months:
        return "pays back only after the hardware is written off"
    return "pays back within the depreciation period"


def hosting_for(
    mode: str,
    gpus: int,
    tokens_per_s: Decimal,
    gpu: GpuSpec | None = None,
    *,
    gpu_hour_usd: Decimal | None = None,
    gpu_price_usd: Decimal | None = None,
    gpu_power_kw: Decimal | None = None,
    **rest: Any,
) -> SelfHosting:
    """A deployment with a catalog GPU's indicative prices and board power as defaults;
    ``rest`` are the other :class:`SelfHosting` fields."""
    if mode not in ("rent", "buy"):
        raise InvalidRequest(f"mode {mode!r}: choose rent or buy", param="mode")
    hour = gpu_hour_usd if gpu_hour_usd is not None else (gpu.hour_usd if gpu else ZERO)
    price = gpu_price_usd if gpu_price_usd is not None else (gpu.price_usd if gpu else ZERO)
    if gpu_power_kw is None:
        gpu_power_kw = Decimal(repr(gpu.tdp_w)) / 1000 if gpu else Decimal("0.7")
    if mode == "rent" and hour <= 0:
        raise InvalidRequest(
            "renting needs a GPU-hour price (or a catalog GPU)", param="gpu_hour_usd"
        )
    if mode == "buy" and price <= 0:
        raise InvalidRequest("buying needs a GPU price (or a catalog GPU)", param="gpu_price_usd")
    return SelfHosting(
        mode="rent" if mode == "rent" else "buy",
        gpus=gpus,
        tokens_per_s=tokens_per_s,
        gpu_hour_usd=hour,
        gpu_price_usd=price,
        gpu_power_kw=gpu_power_kw,
        **rest,
    )


def timeline(
    hostings: list[SelfHosting], api_usd_per_month: Decimal, months: int
) -> dict[str, Any]:
    """Cumulative cost month by month: the API at ``api_usd_per_month``, and each way of
    self-hosting (capital on day one, then cash each month: depreciation is how the capital
    is spread in the accounts, not money out)."""
    if not 1 <= months <= 240:
        raise InvalidRequest("the horizon must be 1 to 240 months", param="months")
    axis = list(range(months + 1))
    lines: dict[str, list[str]] = {
        "api": [usd_str((api_usd_per_month * m).quantize(_CENT)) for m in axis]
    }
    for hosting in hostings:
        lines[hosting.mode] = [
            usd_str((hosting.capex_usd + hosting.cash_usd_per_month * m).quantize(_CENT))
            for m in axis
        ]
    return {"months": axis, "cumulative_usd": lines}
