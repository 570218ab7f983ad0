"""Synthetic LLM traffic for the product demo, fitted to a real request trace.

The parameters below were fitted by ``scripts/fit_traffic.py`` to the Azure Public Dataset
"AzureLLMInferenceTrace_code" (Patel et al., "Splitwise: Efficient generative LLM inference
using phase splitting", ISCA 2024; CC-BY 4.0): 8,819 requests of a coding assistant over
one hour on 2023-11-16. Only the fitted parameters ship here, not the data. Keep this
attribution wherever the model or figures derived from it are shown.

The model:

* Request sizes. Context and generated tokens are each a mixture of two lognormals, rounded
  to the nearest integer and clamped to the range observed in the trace (the trace piles
  up at both ends: 4% of contexts sit at the ~7,436-token cap, 8% of replies are exactly
  6 tokens; the clamp reproduces those piles). The two are joined by a Gaussian copula;
  the fitted correlation is close to zero (the trace's Spearman rho is -0.02).
* Arrivals. A renewal process. A gap of at most ``IDLE_THRESHOLD_S`` (busy period) is a
  three-lognormal mixture truncated at the threshold; with probability
  ``IDLE_PROBABILITY`` the gap is idle instead: the threshold plus an exponential excess.
  The trace is very bursty (coefficient of variation of the gaps about 13; 45 idle gaps
  make up about 70% of the hour), so a Poisson or gamma arrival model would be far off.

Mean rate about 2.6 requests/s; scale it with ``rate_scale``, or drop the idle gaps with
``TrafficModel(idle_gaps=False)`` for a demo that never pauses.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

__all__ = [
    "CONTEXT_TOKENS",
    "COPULA_RHO",
    "GENERATED_TOKENS",
    "INTERARRIVAL_BUSY",
    "SOURCE",
    "RequestShape",
    "SizeModel",
    "TrafficModel",
    "prompt_of_tokens",
]

SOURCE = (
    'Azure Public Dataset "AzureLLMInferenceTrace_code" (Patel et al., "Splitwise: '
    'Efficient generative LLM inference using phase splitting", ISCA 2024), CC-BY 4.0'
)


@dataclass(frozen=True, slots=True)
class LogNormalMixture:
    """A mixture of normals on the natural log of the quantity."""

    weights: tuple[float, ...]
    mu: tuple[float, ...]
    sigma: tuple[float, ...]

    def cdf_log(self, y: float) -> float:
        """P(log X <= y)."""
        return sum(
            w * _phi((y - m) / s) for w, m, s in zip(self.weights, self.mu, self.sigma, strict=True)
        )

    def sample_log(self, rng: random.Random) -> float:
        u = rng.random()
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            if u < w or i == last:
                return rng.gauss(self.mu[i], self.sigma[i])
            u -= w
        raise AssertionError("unreachable")

    def partial_mean(self, cap: float) -> float:
        """E[X; X <= cap]."""
        log_cap = math.log(cap)
        return sum(
            w * math.exp(m + s * s / 2) * _phi((log_cap - m - s * s) / s)
            for w, m, s in zip(self.weights, self.mu, self.sigma, strict=True)
        )


@dataclass(frozen=True, slots=True)
class SizeModel:
    """A token count: ``clamp(round(exp(Y)), minimum, maximum)`` with Y ~ ``log_mixture``."""

    log_mixture: LogNormalMixture
    minimum: int
    maximum: int

    def from_normal(self, z: float) -> int:
        """The count at standard-normal score ``z`` (the copula's inverse-CDF step)."""
        y = _interpolate(_quantile_table(self.log_mixture), z)
        return min(max(math.floor(math.exp(y) + 0.5), self.minimum), self.maximum)


@dataclass(frozen=True, slots=True)
class RequestShape:
    context_tokens: int
    generated_tokens: int


# ------------------------------------------------------------ fitted parameters
# Regenerate with: .venv/bin/python scripts/fit_traffic.py  (seed 20231116)

CONTEXT_TOKENS = SizeModel(
    LogNormalMixture(
        weights=(0.288749, 0.711251),
        mu=(5.465729, 7.637884),
        sigma=(1.315897, 0.782054),
    ),
    minimum=3,
    maximum=7437,
)
GENERATED_TOKENS = SizeModel(
    LogNormalMixture(
        weights=(0.615639, 0.384361),
        mu=(2.374513, 3.409747),
        sigma=(0.411455, 1.020031),
    ),
    minimum=6,
    maximum=1899,
)
COPULA_RHO = -0.01277

# Gaps in seconds. Busy gaps: the mixture truncated at the threshold.
INTERARRIVAL_BUSY = LogNormalMixture(
    weights=(0.521956, 0.188148, 0.289896),
    mu=(-5.98936, -2.325396, -1.813491),
    sigma=(2.515712, 0.038292, 0.772345),
)
IDLE_THRESHOLD_S = 10.0
IDLE_PROBABILITY = 0.005103
IDLE_MEAN_EXCESS_S = 42.83211


# -------------------------------------------------------------------- the model


class TrafficModel:
    """Request shapes and arrival gaps drawn from the fitted model.

    Every draw takes the caller's ``random.Random``, so a seeded generator gives a
    reproducible stream. ``idle_gaps=False`` leaves out the long idle gaps of the trace
    (busy periods only, a mean rate of about 9.4 requests/s).
    """

    def __init__(
        self,
        *,
        context: SizeModel = CONTEXT_TOKENS,
        generated: SizeModel = GENERATED_TOKENS,
        rho: float = COPULA_RHO,
        idle_gaps: bool = True,
    ) -> None:
        if not -1.0 < rho < 1.0:
            raise ValueError(f"rho must be in (-1, 1), got {rho}")
        self.context = context
        self.generated = generated
        self.rho = rho
        self.idle_gaps = idle_gaps
        self._rho_c = math.sqrt(1.0 - rho * rho)

    def sample(self, rng: random.Random) -> RequestShape:
        z1 = rng.gauss(0.0, 1.0)
        z2 = self.rho * z1 + self._rho_c * rng.gauss(0.0, 1.0)
        return RequestShape(
            context_tokens=self.context.from_normal(z1),
            generated_tokens=self.generated.from_normal(z2),
        )

    def interarrival_s(self, rng: random.Random, rate_scale: float = 1.0) -> float:
        """Seconds until the next request; ``rate_scale`` multiplies the arrival rate."""
        if not rate_scale > 0.0:
            raise ValueError(f"rate_scale must be positive, got {rate_scale}")
        if self.idle_gaps and rng.random() < IDLE_PROBABILITY:
            gap = IDLE_THRESHOLD_S + rng.expovariate(1.0 / IDLE_MEAN_EXCESS_S)
        else:
            while True:  # truncated at the threshold; accepts ~99.9% of draws
                gap = math.exp(INTERARRIVAL_BUSY.sample_log(rng))
                if gap <= IDLE_THRESHOLD_S:
                    break
        return gap / rate_scale

    @property
    def mean_rate_per_s(self) -> float:
        """Mean requests per second at ``rate_scale=1`` (1 / the mean gap)."""
        return 1.0 / _mean_gap_s(self.idle_gaps)


@functools.cache
def _mean_gap_s(idle_gaps: bool) -> float:
    busy = INTERARRIVAL_BUSY.partial_mean(IDLE_THRESHOLD_S) / INTERARRIVAL_BUSY.cdf_log(
        math.log(IDLE_THRESHOLD_S)
    )
    if not idle_gaps:
        return busy
    idle = IDLE_THRESHOLD_S + IDLE_MEAN_EXCESS_S
    return (1.0 - IDLE_PROBABILITY) * busy + IDLE_PROBABILITY * idle


# ---------------------------------------------------------- inverse CDF (copula)

_Z_MAX = 6.0
_Z_STEP = 0.02
_Z_KNOTS = round(2 * _Z_MAX / _Z_STEP) + 1


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@functools.cache
def _quantile_table(mixture: LogNormalMixture) -> tuple[float, ...]:
    """log-quantiles of ``mixture`` at z = -6, -5.98, ..., 6 (bisection; built once)."""
    lo = min(m - 10.0 * s for m, s in zip(mixture.mu, mixture.sigma, strict=True))
    hi = max(m + 10.0 * s for m, s in zip(mixture.mu, mixture.sigma, strict=True))
    table: list[float] = []
    for i in range(_Z_KNOTS):
        target = _phi(-_Z_MAX + i * _Z_STEP)
        a, b = lo, hi
        for _ in range(48):
            mid = 0.5 * (a + b)
            if mixture.cdf_log(mid) < target:
                a = mid
            else:
                b = mid
        lo = a  # quantiles increase with z
        table.append(0.5 * (a + b))
    return tuple(table)


def _interpolate(table: tuple[float, ...], z: float) -> float:
    pos = (z + _Z_MAX) / _Z_STEP
    if pos <= 0.0:
        return table[0]
    if pos >= _Z_KNOTS - 1:
        return table[-1]
    i = int(pos)
    frac = pos - i
    return table[i] + (table[i + 1] - table[i]) * frac


# ------------------------------------------------------------------ filler text

# Each word, with its leading space, is exactly one o200k_base (and cl100k_base) token,
# and so is ".". BPE never merges across these pieces, so the count is exact.
_VOCABULARY = (
    "the a to of and in for with this that is code function value return error test"
    " file line class method data model request cost cache user project service query"
    " result update time rate limit system server client stream batch list type name"
    " string number call check add new use build run"
)
_WORDS = tuple(" " + word for word in _VOCABULARY.split())


def prompt_of_tokens(n: int, rng: random.Random) -> str:
    """Filler prompt text of ``n`` tokens (o200k_base), words in short sentences."""
    if n <= 0:
        return ""
    pieces = rng.choices(_WORDS, k=n)
    # Every ~12th token becomes a full stop, never the first or last.
    for i in range(11, n - 1, 12):
        pieces[i] = "."
    return "".join(pieces).lstrip()
