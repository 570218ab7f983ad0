"""Rolling-origin evaluation of demand forecasts (Tashman 2000).

At every origin ``t`` (from ``min_train`` on) each model is fitted on the minutes before
``t`` (the latest ``max_train`` of them) and forecasts the next ``max(horizons)`` minutes.
For a horizon ``h`` the score of an origin is the MASE of its first ``h`` forecasts,
scaled by the seasonal-naive in-sample error over the same training window (at least two
seasons of it); the score of a model at ``h`` is the mean over all origins that have ``h``
minutes of future. The baseline
is the seasonal-naive forecast itself, scored the same way.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from tokenomy.forecast.demand import CHOSEN_MODEL, baseline_season, mase, mase_scale
from tokenomy.forecast.models import (
    MODELS,
    NEEDS_STATSMODELS,
    seasonal_naive,
    statsmodels_available,
)
from tokenomy.forecast.series import Series

DEFAULT_HORIZONS = (1, 5, 10, 30)
MIN_TRAIN = 20  # minutes: enough for ETS to estimate a level and a trend
MAX_ORIGINS = 200  # long traces: this many origins, evenly spaced
MAX_TRAIN = 720  # minutes a model sees: twelve hours keep each fit in milliseconds


@dataclass
class HorizonScore:
    horizon: int
    origins: int = 0
    baseline_mase: float | None = None
    models: dict[str, float] = field(default_factory=dict)


@dataclass
class BacktestResult:
    model: str
    season: int
    minutes: int
    min_train: int
    max_train: int
    horizons: list[HorizonScore]
    runtime_s: float
    skipped: list[str]

    def public(self) -> dict[str, Any]:
        """The contract's JSON: per horizon (minutes) the chosen model's MASE and the
        baseline's, plus every candidate's MASE."""
        return {
            "horizons": {
                str(s.horizon): {
                    "mase": _round(s.models.get(self.model)),
                    "baseline": "seasonal_naive",
                    "baseline_mase": _round(s.baseline_mase),
                    "origins": s.origins,
                    "models": {name: _round(v) for name, v in s.models.items()},
                }
                for s in self.horizons
            },
            "model": self.model,
            "season_minutes": self.season,
            "minutes": self.minutes,
            "min_train": self.min_train,
            "max_train": self.max_train,
            "runtime_s": round(self.runtime_s, 3),
            "skipped_models": self.skipped,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def backtest(
    series: Series,
    horizons: tuple[int, ...] = DEFAULT_HORIZONS,
    models: tuple[str, ...] | None = None,
    model: str = CHOSEN_MODEL,
    max_train: int = MAX_TRAIN,
    season: int | None = None,
) -> BacktestResult:
    started = time.perf_counter()
    y = series.values
    m = season or baseline_season(len(y))
    names = list(models or MODELS)
    if model not in names:
        names.insert(0, model)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    skipped = [] if statsmodels_available() else [n for n in names if n in NEEDS_STATSMODELS]
    names = [n for n in names if n not in skipped]
    if model in skipped:
        model = "mean"
    min_train = max(MIN_TRAIN, 2 * m)
    origins = list(range(min_train, len(y)))
    if len(origins) > MAX_ORIGINS:
        step = len(origins) / MAX_ORIGINS
        origins = [origins[int(i * step)] for i in range(MAX_ORIGINS)]
    longest = max(horizons)
    scores: dict[int, dict[str, list[float]]] = {h: {} for h in horizons}
    for t in origins:
        train = y[max(0, t - max_train) : t]
        steps = min(longest, len(y) - t)
        scale = mase_scale(y[max(0, t - max(max_train, 2 * m)) : t], m)
        if scale <= 0:
            continue  # a constant history: every error is infinitely bad, skip the origin
        seasonal_history = y[max(0, t - m) : t]
        forecasts = {"seasonal_naive": seasonal_naive(seasonal_history, steps, None, m).mean}
        for name in names:
            forecasts[name] = MODELS[name][1](train, steps, None).mean
        for h in horizons:
            if t + h > len(y):
                continue
            actual = y[t : t + h]
            for name, mean in forecasts.items():
                scores[h].setdefault(name, []).append(mase(actual, mean[:h], scale))
    out = []
    for h in horizons:
        per_model = {name: statistics.fmean(v) for name, v in scores[h].items() if v}
        baseline = per_model.pop("seasonal_naive", None)
        origins_used = len(scores[h].get("seasonal_naive", []))
        out.append(HorizonScore(h, origins_used, baseline, per_model))
    return BacktestResult(
        model, m, len(y), min_train, max_train, out, time.perf_counter() - started, skipped
    )
