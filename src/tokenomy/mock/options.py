"""Options and fault sampling of the mock upstream.

A fault is chosen per request: the ``x-mock-fault`` header wins (deterministic, for tests);
otherwise one uniform draw from a ``random.Random(seed)`` is compared with the cumulative
rates in the order error, timeout, truncate, malformed. The generator lives in the app
instance (never a module global), so two apps with the same seed fault the same way for the
same sequence of requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

# Pace of the ``slow`` fault, in completion tokens per second.
SLOW_TOKENS_PER_SECOND = 10.0


class Fault(StrEnum):
    """Faults the mock can inject; the values are what ``x-mock-fault`` accepts."""

    ERROR = "error"  # 500 server_error (Anthropic: api_error)
    ERROR_429 = "error-429"  # 429 rate limit with retry-after (Anthropic: rate_limit_error)
    TIMEOUT = "timeout"  # no answer for ``timeout_seconds``; ends early if the client leaves
    TRUNCATE = "truncate"  # stream stops half-way (no usage, no [DONE]); body cut in half
    MALFORMED = "malformed"  # body that is not JSON; one SSE event that is not JSON
    SLOW = "slow"  # tokens at SLOW_TOKENS_PER_SECOND


@dataclass(frozen=True, slots=True)
class MockOptions:
    """How the mock upstream behaves. Rates are probabilities per request (sum <= 1)."""

    latency_ms: float = 0.0
    tokens_per_second: float | None = None
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    truncate_rate: float = 0.0
    malformed_rate: float = 0.0
    seed: int = 0
    default_completion_tokens: int = 16
    timeout_seconds: float = 3600.0

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.timeout_rate, self.truncate_rate, self.malformed_rate)
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if sum(rates) > 1.0 + 1e-9:
            raise ValueError("fault rates must add up to at most 1")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.tokens_per_second is not None and self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be > 0 (or None for no pacing)")
        if self.default_completion_tokens < 1:
            raise ValueError("default_completion_tokens must be >= 1")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")


class FaultSampler:
    """Seeded per-request fault draw; no draw at all when every rate is zero (fast path)."""

    __slots__ = ("_random", "_thresholds")

    def __init__(self, options: MockOptions) -> None:
        self._random = random.Random(options.seed)
        thresholds: list[tuple[float, Fault]] = []
        total = 0.0
        for rate, fault in (
            (options.error_rate, Fault.ERROR),
            (options.timeout_rate, Fault.TIMEOUT),
            (options.truncate_rate, Fault.TRUNCATE),
            (options.malformed_rate, Fault.MALFORMED),
        ):
            if rate > 0:
                total += rate
                thresholds.append((total, fault))
        self._thresholds = tuple(thresholds)

    def sample(self) -> Fault | None:
        if not self._thresholds:
            return None
        draw = self._random.random()
        for threshold, fault in self._thresholds:
            if draw < threshold:
                return fault
        return None
