"""The ``learned`` route at run time: score the prompt, compare with a threshold kept
calibrated on live traffic, lean cheaper as budgets fill.

A probability cut fixed offline drifts on new traffic (a 50% strong target became 62% on
unseen MMLU subjects and over 90% on math), so the cut is the (1 - share) quantile of the
scores of the last ``calibration_window`` prompts: whatever the traffic, about ``share`` of
it goes to the strong model. The window starts from the router's training scores.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenomy.config import RouteConfig
from tokenomy.errors import ConfigError


class RollingQuantile:
    """Quantiles of the last ``size`` values (a sorted list beside a FIFO: O(size) memmove
    per update, microseconds for thousands of values)."""

    def __init__(self, size: int, seed: Sequence[float] = ()) -> None:
        self._size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []
        self._lock = threading.Lock()
        if len(seed) > size:  # keep the seed's distribution: evenly spaced order statistics
            ranked = sorted(seed)
            seed = [ranked[i * (len(ranked) - 1) // (size - 1)] for i in range(size)]
        for value in seed:
            self.add(float(value))

    def add(self, value: float) -> None:
        with self._lock:
            self._order.append(value)
            bisect.insort(self._sorted, value)
            if len(self._order) > self._size:
                oldest = self._order.popleft()
                del self._sorted[bisect.bisect_left(self._sorted, oldest)]

    def quantile(self, q: float) -> float:
        with self._lock:
            values = self._sorted
            if not values:
                return 0.5
            position = min(max(q, 0.0), 1.0) * (len(values) - 1)
            low = int(position)
            high = min(low + 1, len(values) - 1)
            return values[low] + (values[high] - values[low]) * (position - low)

    def __len__(self) -> int:
        return len(self._sorted)


def curve_multiplier(curve: Sequence[tuple[float, float]], pressure: float) -> float:
    """Piecewise-linear lookup: before the first point its value, after the last its value."""
    if not curve:
        return 1.0
    if pressure <= curve[0][0]:
        return curve[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if pressure <= x1:
            return y0 + (y1 - y0) * (pressure - x0) / (x1 - x0)
    return curve[-1][1]


@dataclass(frozen=True, slots=True)
class Decision:
    strong: bool
    score: float
    cut: float
    share: float  # the strong share aimed at for this request


class LearnedRoute:
    """One learned route (or route variant): its router, target share and calibration."""

    def __init__(self, config: RouteConfig) -> None:
        try:
            from tokenomy.routing.learned.router import LearnedRouter
        except ImportError as exc:
            raise ConfigError(
                "routes with strategy learned need the embeddings extra: "
                f"pip install 'tokenomy[embeddings]' ({exc})"
            ) from None
        try:
            self.router: Any = LearnedRouter.load(config.router)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"router {config.router!r} cannot be loaded: {exc}") from None
        self.config = config
        share = config.strong_share
        if share is None:
            share = float(self.router.share_for_quality(config.quality_target))
        self.base_share = share
        self.calibration = RollingQuantile(
            config.calibration_window, [float(s) for s in self.router.reference_scores]
        )
        self.router.warm()  # load the embedder now, not on the first request

    def share(self, pressure: float) -> float:
        return self.base_share * curve_multiplier(self.config.budget_curve, pressure)

    def decide(self, prompt: str, pressure: float) -> Decision:
        """Blocking (embeds the prompt): run it in a worker thread."""
        score = float(self.router.score(prompt))
        share = self.share(pressure)
        cut = self.calibration.quantile(1.0 - share)
        self.calibration.add(score)
        strong = share >= 1.0 or (share > 0.0 and score >= cut)
        return Decision(strong, score, cut, share)
