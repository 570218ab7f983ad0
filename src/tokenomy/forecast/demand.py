"""Demand: tokens per minute (context + generated), from a trace or the ledger, its
forecast, and how forecasts of it are scored.

MASE (mean absolute scaled error, Hyndman & Koehler 2006) is the mean absolute error of a
forecast divided by the mean absolute error that the seasonal-naive forecast makes one step
ahead *inside the training data*: ``mean |y_t - y_{t-m}|`` over the history the model saw,
with ``m`` the seasonal period in buckets. Below 1.0 the forecast beats that in-sample
benchmark; it is scale-free, so series of different sizes can be averaged.

The seasonal period. Minute buckets over about an hour (the Azure traces) show no cycle
that can be identified: a daily cycle needs at least two days of data to be seen once and
repeated, and nothing in an LLM service makes an hour or ten minutes a natural cycle. So
``m`` is 1: the seasonal-naive forecast of a series without a season is the naive one
(the last value), exactly the scaling Hyndman & Koehler prescribe for non-seasonal data.
From three days of minutes on, ``m`` is a day (1440) and the baseline repeats yesterday.

The model. ETS with its form (level only, or a damped trend) selected by AICc at every
origin: an automatic, likelihood-based method with honest prediction intervals, the
standard benchmark of the M3/M4 competitions. The backtest compares it with the mean,
Theta and ARIMA on every run; it was chosen on principle and on development data, never
re-picked per evaluated file (that would overstate its skill on held-out data).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from tokenomy.database import Connection
from tokenomy.forecast.models import MODELS, Prediction, seasonal_naive, statsmodels_available
from tokenomy.forecast.series import Series, ledger_series, read_trace

CHOSEN_MODEL = "ets"
DAY_MINUTES = 1440
DAILY_SEASON_FROM = 3 * DAY_MINUTES  # minutes of history before a daily season is assumed


def demand_from_trace(path: str | Path) -> Series:
    return read_trace(path, 60)


def demand_from_ledger(
    conn: Connection, start_ms: int, end_ms: int, filters: dict[str, str] | None = None
) -> Series:
    """Tokens per minute served through the gateway over [start_ms, end_ms)."""
    return ledger_series(conn, filters or {}, start_ms // 1000, end_ms // 1000, 60, "tokens")


def baseline_season(minutes: int) -> int:
    """The seasonal period of the baseline, in minute buckets (see the module docstring)."""
    return DAY_MINUTES if minutes >= DAILY_SEASON_FROM else 1


def mase_scale(history: Sequence[float], season: int) -> float:
    """Mean absolute in-sample error of the seasonal-naive forecast (the MASE denominator)."""
    changes = [abs(history[i] - history[i - season]) for i in range(season, len(history))]
    if not changes:
        raise ValueError(f"MASE needs more than {season} values of history")
    return statistics.fmean(changes)


def mase(actual: Sequence[float], forecast: Sequence[float], scale: float) -> float:
    errors = [abs(a - f) for a, f in zip(actual, forecast, strict=False)]
    return statistics.fmean(errors) / scale if scale > 0 else float("inf")


def forecast_demand(
    series: Series, horizon: int, level: float = 0.9, model: str = CHOSEN_MODEL
) -> Prediction:
    """The next ``horizon`` minutes of demand; the mean when statsmodels is missing."""
    if model in MODELS and (model == "mean" or statsmodels_available()):
        return MODELS[model][1](series.values, horizon, level)
    if model == "seasonal_naive":
        return seasonal_naive(series.values, horizon, level, baseline_season(len(series.values)))
    return MODELS["mean"][1](series.values, horizon, level)
