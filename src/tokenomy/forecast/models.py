"""Forecasting models over one regular series: simple baselines in pure Python and
statsmodels' ETS, Theta and ARIMA (the ``forecast`` extra).

Every model answers the same question: given the history ``y`` (oldest first), the mean of
the next ``h`` values and, when asked, a central prediction interval at ``level``. The
statsmodels fits run on the series divided by its mean absolute value, so that token counts
in the millions and pico-dollar sums in the billions meet the optimizers at the same scale.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MIN_FIT = 10  # fewer points than this: the statsmodels models answer with the mean


@dataclass(frozen=True, slots=True)
class Prediction:
    method: str
    mean: list[float]
    lower: list[float] | None = None
    upper: list[float] | None = None


Model = Callable[[Sequence[float], int, float | None], Prediction]


def statsmodels_available() -> bool:
    try:
        return importlib.util.find_spec("statsmodels") is not None
    except (ImportError, ValueError):  # a stub or a blocked module
        return False


def _z(level: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + level / 2)


def _band(method: str, mean: list[float], sds: list[float], level: float | None) -> Prediction:
    if level is None:
        return Prediction(method, mean)
    z = _z(level)
    return Prediction(
        method,
        mean,
        [m - z * s for m, s in zip(mean, sds, strict=True)],
        [m + z * s for m, s in zip(mean, sds, strict=True)],
    )


def seasonal_naive(y: Sequence[float], h: int, level: float | None, season: int = 1) -> Prediction:
    """Each future value is the last observed value one season earlier; with ``season`` 1
    that is the last value (the naive forecast). The spread of the lag-``season`` changes
    grows with the number of seasons ahead."""
    m = min(season, len(y))
    mean = [float(y[len(y) - m + (k % m)]) for k in range(h)]
    changes = [y[i] - y[i - m] for i in range(m, len(y))]
    sd = statistics.pstdev(changes) if len(changes) > 1 else 0.0
    return _band("seasonal_naive", mean, [sd * math.sqrt(k // m + 1) for k in range(h)], level)


def historical_mean(y: Sequence[float], h: int, level: float | None) -> Prediction:
    """The mean of the history, with the spread of the values around it."""
    mean = statistics.fmean(y)
    sd = statistics.stdev(y) * math.sqrt(1 + 1 / len(y)) if len(y) > 1 else 0.0
    return _band("mean", [mean] * h, [sd] * h, level)


def _scaled(y: Sequence[float]) -> tuple[Any, float]:
    """The series as pandas (statsmodels' ETS predictions need an index), over its scale."""
    import numpy as np
    import pandas as pd

    array = np.asarray(y, dtype=float)
    scale = float(np.mean(np.abs(array))) or 1.0
    return pd.Series(array / scale), scale


def _frame(prediction: Any, level: float | None, scale: float, method: str) -> Prediction:
    frame = prediction.summary_frame(alpha=1 - (level or 0.9))
    mean = [float(v) * scale for v in frame["mean"]]
    if level is None:
        return Prediction(method, mean)
    low, high = (
        ("pi_lower", "pi_upper") if "pi_lower" in frame else ("mean_ci_lower", "mean_ci_upper")
    )
    return Prediction(
        method,
        mean,
        [float(v) * scale for v in frame[low]],
        [float(v) * scale for v in frame[high]],
    )


class EtsFit:
    """The ETS model with the lowest AICc among additive-error candidates: level only
    (simple exponential smoothing), damped additive trend, and with ``season`` > 1 and at
    least two seasons of history the same two with an additive season."""

    def __init__(self, y: Sequence[float], season: int = 1) -> None:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        data, self.scale = _scaled(y)
        self.n = len(data)
        candidates: list[dict[str, Any]] = [{}, {"trend": "add", "damped_trend": True}]
        if season > 1 and self.n >= 2 * season + 2:
            candidates += [{**c, "seasonal": "add", "seasonal_periods": season} for c in candidates]
        best: Any = None
        for spec in candidates:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = ETSModel(data, error="add", **spec).fit(disp=False)
            except (ValueError, ArithmeticError, IndexError, RuntimeError):
                continue
            if math.isfinite(result.aicc) and (best is None or result.aicc < best.aicc):
                best = result
        if best is None:
            raise ArithmeticError("no ETS model could be fitted")
        self.result = best
        self.name = "ets_" + best.model.short_name.replace(",", "").lower()

    def predict(self, h: int, level: float | None) -> Prediction:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prediction = self.result.get_prediction(start=self.n, end=self.n + h - 1)
            return _frame(prediction, level, self.scale, "ets")

    def simulate(self, h: int, repetitions: int, seed: int) -> Any:
        """``h`` x ``repetitions`` sample paths, drawing the fitted model's own residuals
        (bootstrap), so skewed spend keeps its skew."""
        import numpy as np

        # statsmodels 0.15 renamed random_state to rng.
        parameters = inspect.signature(self.result.simulate).parameters
        seeded = {"rng" if "rng" in parameters else "random_state": np.random.default_rng(seed)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paths = self.result.simulate(
                h, anchor="end", repetitions=repetitions, random_errors="bootstrap", **seeded
            )
        return np.asarray(paths, dtype=float).reshape(h, repetitions) * self.scale


def ets(y: Sequence[float], h: int, level: float | None, season: int = 1) -> Prediction:
    if len(y) < MIN_FIT:
        return historical_mean(y, h, level)
    try:
        return EtsFit(y, season).predict(h, level)
    except ArithmeticError:
        return historical_mean(y, h, level)


def theta(y: Sequence[float], h: int, level: float | None) -> Prediction:
    """The Theta method (SES with half the linear trend: the M3 winner)."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    if len(y) < MIN_FIT:
        return historical_mean(y, h, level)
    data, scale = _scaled(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ThetaModel(data, period=1, deseasonalize=False).fit()
        mean = [float(v) * scale for v in result.forecast(h)]
        if level is None:
            return Prediction("theta", mean)
        bands = result.prediction_intervals(h, alpha=1 - level)
    return Prediction(
        "theta",
        mean,
        [float(v) * scale for v in bands["lower"]],
        [float(v) * scale for v in bands["upper"]],
    )


def arima(y: Sequence[float], h: int, level: float | None) -> Prediction:
    """ARIMA(1,0,0) with a constant: reversion to a mean at a fitted speed."""
    from statsmodels.tsa.arima.model import ARIMA

    if len(y) < MIN_FIT:
        return historical_mean(y, h, level)
    data, scale = _scaled(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = ARIMA(data, order=(1, 0, 0), trend="c").fit()
        except (ValueError, ArithmeticError):
            return historical_mean(y, h, level)
        return _frame(result.get_forecast(h), level, scale, "arima")


# name → (family, model); the backtest compares them all.
MODELS: dict[str, tuple[str, Model]] = {
    "mean": ("simple", historical_mean),
    "ets": ("exponential smoothing (AICc-selected ETS)", ets),
    "theta": ("theta", theta),
    "arima": ("ARIMA(1,0,0)+c", arima),
}
NEEDS_STATSMODELS = frozenset({"ets", "theta", "arima"})
