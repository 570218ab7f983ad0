"""A circuit breaker per upstream: stop sending requests to a provider that keeps failing,
and try it again after a pause.

    closed --(threshold consecutive failures)--> open --(open_s later)--> half-open
    half-open: one trial request; success closes, failure opens again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self, threshold: int = 5, open_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.open_s = open_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.open_s else "open"

    def allow(self) -> bool:
        """May a request go to this upstream now? (Half-open lets one trial through.)"""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        self._failures += 1
        if self._trial or self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._trial = False
