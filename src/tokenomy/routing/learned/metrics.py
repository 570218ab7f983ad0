"""RouteLLM's router metrics, computed exactly from per-prompt outcomes.

A router gives each prompt a score (higher = more in need of the strong model). Sending the
top ``k`` prompts by score to the strong model and the rest to the weak one gives a point
(strong share ``k/n``, quality); sweeping ``k`` from 0 to ``n`` gives the router's curve.

Differences from RouteLLM's ``evaluate.py``, all toward exactness:

- RouteLLM samples about ten thresholds and integrates between them; here every threshold
  is a point of the curve, so the area is exact for this data.
- Prompts with equal scores cannot be split by a threshold, so the curve only has points
  where the score changes and is linear in between: the expected quality when ties are
  broken at random. A router giving every prompt the same score is therefore the random
  router, and its figures are the random router's expected values in closed form
  (APGR 0.5, CPT(x) = x).
- CPT(x) is the first share at which the curve reaches the target, interpolated on the
  segment that crosses it (RouteLLM interpolates assuming a monotonic curve).

"95% of the strong model's quality" is read literally, as RouteLLM's paper and blog state
their headline ("95% of GPT-4's performance"): the smallest strong share whose quality is at
least ``0.95 * q_strong``. (That is not PGR 95%: with Mixtral/GPT-4 on MMLU it is a PGR of
about 0.67.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# RouteLLM's paper: approximate blended prices per million tokens when the MMLU responses
# were generated (GPT-4-1106-preview / GPT-4 Turbo, and Mixtral-8x7B-Instruct).
DEFAULT_STRONG_PRICE = 24.7
DEFAULT_WEAK_PRICE = 0.24


@dataclass(frozen=True)
class Curve:
    """Strong share, quality and PGR at each threshold, share ascending from 0 to 1."""

    share: FloatArray
    quality: FloatArray
    pgr: FloatArray
    q_weak: float
    q_strong: float


@dataclass(frozen=True)
class RouterMetrics:
    """RouteLLM figures for one router on one data set (shares are fractions, 0..1)."""

    apgr: float
    cpt50: float
    cpt80: float
    strong_share_at_95: float
    cost_saving_at_95: float
    quality_weak: float
    quality_strong: float

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def _as_bool_array(values: Any) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def curve(scores: Any, weak_correct: Any, strong_correct: Any) -> Curve:
    """The router's cost/quality curve at every distinct threshold (ties kept together)."""
    s = np.asarray(scores, dtype=np.float64)
    w = _as_bool_array(weak_correct)
    t = _as_bool_array(strong_correct)
    n = len(s)
    if n == 0 or len(w) != n or len(t) != n:
        raise ValueError("scores, weak_correct and strong_correct must have the same length > 0")
    order = np.argsort(-s, kind="stable")
    gain = (t - w)[order]
    sorted_scores = s[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    # keep k = 0 and every k at the end of a run of equal scores
    ends = np.flatnonzero(np.diff(sorted_scores) != 0) + 1
    ks = np.concatenate([[0], ends, [n]])
    q_weak = float(w.mean())
    q_strong = float(t.mean())
    quality = (w.sum() + cum[ks]) / n
    gap = q_strong - q_weak
    pgr = (quality - q_weak) / gap if gap != 0 else np.full(len(ks), np.nan)
    return Curve(ks / n, quality, pgr, q_weak, q_strong)


def _first_reach(share: FloatArray, values: FloatArray, target: float) -> float:
    """Smallest share at which the piecewise-linear curve ``values`` reaches ``target``."""
    if math.isnan(target) or np.isnan(values).any():
        return math.nan
    eps = 1e-12
    hit = np.flatnonzero(values >= target - eps)
    if len(hit) == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(share[0])
    x0, x1 = share[i - 1], share[i]
    y0, y1 = values[i - 1], values[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def apgr(c: Curve) -> float:
    """Area under the PGR curve over strong shares 0..1 (trapezoids between thresholds)."""
    if np.isnan(c.pgr).any():
        return math.nan
    return float(np.sum((c.pgr[1:] + c.pgr[:-1]) / 2 * np.diff(c.share)))


def cpt(c: Curve, pgr_target: float) -> float:
    """CPT(x): the smallest strong share whose PGR reaches ``pgr_target`` (0.5 for CPT(50%))."""
    return _first_reach(c.share, c.pgr, pgr_target)


def share_for_quality(c: Curve, fraction: float = 0.95) -> float:
    """Smallest strong share whose quality is at least ``fraction`` of the strong model's."""
    return _first_reach(c.share, c.quality, fraction * c.q_strong)


def cost_saving(strong_share: float, weak_price: float, strong_price: float) -> float:
    """Fraction of the all-strong bill saved when ``strong_share`` of calls go strong."""
    if math.isnan(strong_share) or strong_price <= 0:
        return math.nan
    cost = strong_share * strong_price + (1 - strong_share) * weak_price
    return 1 - cost / strong_price


def evaluate(
    scores: Any,
    weak_correct: Any,
    strong_correct: Any,
    weak_price: float = DEFAULT_WEAK_PRICE,
    strong_price: float = DEFAULT_STRONG_PRICE,
) -> RouterMetrics:
    c = curve(scores, weak_correct, strong_correct)
    at95 = share_for_quality(c, 0.95)
    return RouterMetrics(
        apgr=apgr(c),
        cpt50=cpt(c, 0.5),
        cpt80=cpt(c, 0.8),
        strong_share_at_95=at95,
        cost_saving_at_95=cost_saving(at95, weak_price, strong_price),
        quality_weak=c.q_weak,
        quality_strong=c.q_strong,
    )


def random_scores(n: int) -> FloatArray:
    """Scores of the random router: all tied, so the curve is its expected value."""
    return np.zeros(n)


def oracle_scores(weak_correct: Any, strong_correct: Any) -> FloatArray:
    """The oracle: strong first where only the strong model is right, weak-right rows last."""
    return _as_bool_array(strong_correct) - _as_bool_array(weak_correct)


def report(
    scores: Any,
    weak_correct: Any,
    strong_correct: Any,
    weak_price: float = DEFAULT_WEAK_PRICE,
    strong_price: float = DEFAULT_STRONG_PRICE,
) -> dict[str, Any]:
    """The router's metrics with the random router's and the oracle's beside them."""
    w = _as_bool_array(weak_correct)
    t = _as_bool_array(strong_correct)
    out = evaluate(scores, w, t, weak_price, strong_price).as_dict()
    out["n"] = len(w)
    out["random"] = evaluate(random_scores(len(w)), w, t, weak_price, strong_price).as_dict()
    out["oracle"] = evaluate(oracle_scores(w, t), w, t, weak_price, strong_price).as_dict()
    out["prices"] = {"weak": weak_price, "strong": strong_price}
    return out
