"""Where each budget is heading: spend at the end of its period, with a prediction
interval, and when the limit will be reached.

The ledger's rollups give the scope's spend per bucket. With a day of history or more the
hourly series is modelled by ETS (AICc-selected; a daily season from three days on), and
the interval of the *sum* to period end comes from sample paths that redraw the model's
own residuals: per-hour intervals cannot simply be added, and spend is skewed. With less
history the daily cycle is unknown, so the forecast is the average rate so far per minute,
with a normal interval that also carries the uncertainty of that average; with under ten
minutes of history there is no projection at all. Every forecast says which case it is.

Exhaustion times: ``exhausts_at`` is when the point forecast reaches the limit;
``exhausts_at_earliest`` when the upper bound of the interval does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tokenomy.analytics.spend import SpendQuery, query_spend
from tokenomy.budgets.book import scope_filters
from tokenomy.budgets.definition import Budget
from tokenomy.budgets.periods import FOREVER_MS, iso_utc, window
from tokenomy.database import Connection
from tokenomy.forecast.models import EtsFit, statsmodels_available
from tokenomy.forecast.series import Series, ledger_series
from tokenomy.money import to_pico, usd_micro, usd_str

LEVEL = 0.9  # central prediction interval: 5th to 95th percentile
LOOKBACK_DAYS = 14  # two weeks of hours: a fit takes well under a second
HOURLY_FROM = 24  # hours of history before hourly ETS
DAILY_SEASON_FROM = 72  # hours of history before a daily season
MIN_MINUTES = 10  # minutes of history before any projection
TOTAL_HORIZON_MS = 30 * 86_400_000  # a total budget never resets: look this far ahead
REPETITIONS = 500


@dataclass(frozen=True, slots=True)
class BudgetForecast:
    budget: Budget
    now_ms: int
    period_start_ms: int
    period_end_ms: int  # FOREVER_MS for a total budget
    horizon_end_ms: int  # the period end, or now + 30 days for a total budget
    spent_pico: int
    forecast_pico: int  # spent + expected spend to the horizon
    lower_pico: int
    upper_pico: int
    exhausts_at_ms: int | None
    exhausts_at_earliest_ms: int | None
    method: str  # ets_ann, ets_aadn, ets_ana, ets_aada, mean_rate, none
    bucket_s: int
    history_buckets: int
    note: str
    level: float = LEVEL

    @property
    def exhausted(self) -> bool:
        return self.spent_pico >= self.budget.limit_pico

    @property
    def will_exceed(self) -> bool:
        """The point forecast reaches the limit before the horizon."""
        return self.exhausts_at_ms is not None and not self.exhausted

    def public(self) -> dict[str, Any]:
        limit = self.budget.limit_pico
        return {
            "budget": self.budget.name,
            "scope": dict(self.budget.scope),
            "period": self.budget.period,
            "period_start": iso_utc(self.period_start_ms),
            "period_end": iso_utc(self.period_end_ms),
            "horizon_end": iso_utc(self.horizon_end_ms),
            "limit_usd": usd_str(self.budget.limit_usd),
            "spent_usd": usd_micro(self.spent_pico),
            "forecast_usd": usd_micro(self.forecast_pico),
            "lower_usd": usd_micro(self.lower_pico),
            "upper_usd": usd_micro(self.upper_pico),
            "level": self.level,
            "forecast_fraction": round(self.forecast_pico / limit, 4) if limit else None,
            "exhausted": self.exhausted,
            "will_exceed": self.will_exceed,
            "exhausts_at": iso_utc(self.exhausts_at_ms),
            "exhausts_at_earliest": iso_utc(self.exhausts_at_earliest_ms),
            "method": self.method,
            "bucket": "hour" if self.bucket_s == 3600 else "minute",
            "history_buckets": self.history_buckets,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class _Projection:
    """Expected spend from now to the horizon: total, interval, crossing times."""

    expected: float
    lower: float
    upper: float
    point_ms: int | None
    earliest_ms: int | None


def forecast_budgets(
    conn: Connection, budgets: Sequence[Budget], zone: ZoneInfo, now_ms: int
) -> list[BudgetForecast]:
    return [forecast_budget(conn, budget, zone, now_ms) for budget in budgets]


def forecast_budget(
    conn: Connection, budget: Budget, zone: ZoneInfo, now_ms: int, seed: int = 0
) -> BudgetForecast:
    start, end = window(budget.period, zone, now_ms, budget.starts_at_ms)
    horizon = min(end, now_ms + TOTAL_HORIZON_MS)
    filters = scope_filters(budget)
    total = query_spend(conn, SpendQuery([], start, None if end >= FOREVER_MS else end, filters))
    spent = to_pico(Decimal(total["total_cost_usd"]))
    remaining = budget.limit_pico - spent
    note = "a total budget never resets: projected over the next 30 days; " if end > horizon else ""
    series, method, why, projection = _project(conn, filters, now_ms, horizon, remaining, seed)
    note += why
    if projection is None:
        projection = _Projection(0.0, 0.0, 0.0, None, None)
    return BudgetForecast(
        budget=budget,
        now_ms=now_ms,
        period_start_ms=start,
        period_end_ms=end,
        horizon_end_ms=horizon,
        spent_pico=spent,
        forecast_pico=spent + round(projection.expected),
        lower_pico=spent + round(projection.lower),
        upper_pico=spent + round(projection.upper),
        exhausts_at_ms=projection.point_ms if remaining > 0 else None,
        exhausts_at_earliest_ms=projection.earliest_ms if remaining > 0 else None,
        method=method,
        bucket_s=series.bucket_s,
        history_buckets=len(series.values),
        note=note,
    )


def _project(
    conn: Connection,
    filters: dict[str, str],
    now_ms: int,
    horizon: int,
    remaining: int,
    seed: int,
) -> tuple[Series, str, str, _Projection | None]:
    """The history used, the method, why, and the projection (None: too little history)."""
    now_s = now_ms // 1000
    series = ledger_series(conn, filters, now_s - LOOKBACK_DAYS * 86400, now_s, 3600).trimmed()
    hours = len(series.values)
    why = "statsmodels is not installed (pip install 'tokenomy[forecast]')"
    if hours >= HOURLY_FROM and statsmodels_available():
        try:
            fit = EtsFit(series.values, 24 if hours >= DAILY_SEASON_FROM else 1)
        except ArithmeticError:
            why = "no ETS model could be fitted"
        else:
            season = " with a daily season" if fit.name.endswith("a") else ""
            note = f"ETS ({fit.result.model.short_name}) on {hours} hours of spend{season}"
            return series, fit.name, note, _ets(fit, 3600, now_ms, horizon, remaining, seed)
    if hours < HOURLY_FROM:
        series = ledger_series(conn, filters, now_s - 86400, now_s, 60).trimmed()
        why = "less than a day of history, so no daily cycle is known"
        if not series.values:
            return series, "none", "no spend in this scope yet", None
        if len(series.values) < MIN_MINUTES:
            note = f"only {len(series.values)} minutes of history: no projection yet"
            return series, "none", note, None
    unit = "hours" if series.bucket_s == 3600 else "minutes"
    note = f"average rate of {len(series.values)} {unit} of spend ({why})"
    return series, "mean_rate", note, _mean_rate(series, now_ms, horizon, remaining)


def _steps(bucket_s: int, now_ms: int, horizon_ms: int) -> list[tuple[int, int]]:
    """[start, end) in ms of each future bucket's part inside [now, horizon), from the
    bucket holding ``now`` (its spend so far is already in ``spent``)."""
    bucket_ms = bucket_s * 1000
    first = now_ms - now_ms % bucket_ms
    count = max(math.ceil((horizon_ms - first) / bucket_ms), 0)
    return [
        (max(first + k * bucket_ms, now_ms), min(first + (k + 1) * bucket_ms, horizon_ms))
        for k in range(count)
    ]


def _crossing(
    cumulative: Sequence[float], steps: list[tuple[int, int]], remaining: float
) -> int | None:
    """When a cumulative spend path (one value at the end of each step) reaches
    ``remaining``, interpolated linearly inside the step."""
    before = 0.0
    for total, (start, end) in zip(cumulative, steps, strict=True):
        if total >= remaining and total > before:
            return start + round((remaining - before) / (total - before) * (end - start))
        before = total
    return None


def _ets(
    fit: EtsFit, bucket_s: int, now_ms: int, horizon_ms: int, remaining: float, seed: int
) -> _Projection:
    import numpy as np

    steps = _steps(bucket_s, now_ms, horizon_ms)
    if not steps:
        return _Projection(0.0, 0.0, 0.0, None, None)
    weights = np.array([(end - start) / (bucket_s * 1000) for start, end in steps])
    # Paths are summed as simulated: clipping each hour at zero would bias every quiet
    # hour upwards; only the totals are kept non-negative.
    paths = fit.simulate(len(steps), REPETITIONS, seed) * weights[:, None]
    cumulative = np.maximum(np.cumsum(paths, axis=0), 0)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(cumulative[-1], [tail, 1 - tail])
    mean_path = cumulative.mean(axis=1)
    upper_path = np.quantile(cumulative, 1 - tail, axis=1)
    return _Projection(
        float(mean_path[-1]),
        float(low),
        float(high),
        _crossing(mean_path.tolist(), steps, remaining),
        _crossing(upper_path.tolist(), steps, remaining),
    )


def _mean_rate(series: Series, now_ms: int, horizon_ms: int, remaining: float) -> _Projection:
    """Buckets as independent draws around an unknown mean: the sum of ``f`` future
    buckets has variance ``f s^2 + f^2 s^2 / n`` (the noise of each bucket plus the
    uncertainty of the mean itself)."""
    values = series.values
    n = len(values)
    mean = statistics.fmean(values)
    var = statistics.variance(values) if n > 1 else mean**2
    z = statistics.NormalDist().inv_cdf(0.5 + LEVEL / 2)
    bucket_ms = series.bucket_s * 1000
    buckets = max(horizon_ms - now_ms, 0) / bucket_ms

    def upper(f: float) -> float:
        return mean * f + z * math.sqrt(f * var + f * f * var / n)

    expected = mean * buckets
    spread = z * math.sqrt(buckets * var + buckets**2 * var / n)
    point = None
    if 0 < remaining <= expected:
        point = now_ms + round(remaining / mean * bucket_ms)
    earliest = None
    if 0 < remaining <= upper(buckets):
        low, high = 0.0, buckets
        for _ in range(60):  # bisection: upper() increases with f
            middle = (low + high) / 2
            low, high = (middle, high) if upper(middle) < remaining else (low, middle)
        earliest = now_ms + round(high * bucket_ms)
    return _Projection(expected, max(expected - spread, 0.0), expected + spread, point, earliest)
