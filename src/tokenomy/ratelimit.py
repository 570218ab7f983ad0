"""Per-key request and token rate limits, answered the way OpenAI answers them.

Algorithm: one token bucket per key and resource (requests, tokens) with capacity = the
per-minute limit and continuous refill of limit / 60 s, which is how OpenAI describes its own
limits ("replenished continuously up to the maximum"). A key may burst its whole limit at once
and then sustains exactly the limit per minute; in the worst case a 60 s window sees a full
burst plus one minute of refill, i.e. up to 2x the limit (GCRA, its equivalent, has the same
bound). Each bucket is two floats (deficit, time), so memory is O(1) per key.

The state kept is the *deficit* (what is used and not yet refilled) rather than the level:
``adjust`` can then add debt without knowing the key's limit, and a bucket with no deficit is
the same as no bucket, so idle keys are forgotten without changing any answer. ``adjust`` of
a key without a token limit is a no-op, and so is one for a key forgotten meanwhile (a single
answer that outlived the 2-minute idle window: its correction is lost, by design).

A request larger than the whole limit can never pass. It is refused with ``limit_hit`` naming
the resource and ``retry_after_s == NEVER_FITS_S``; see ``RateDecision.never_fits``.

Not thread-safe: the gateway calls it from its event loop, where a sync call is atomic.
Each process counts on its own (several replicas each allow the full limit); with
``redis:`` set the gateway uses :mod:`tokenomy.ratelimit_redis` instead, which runs the same
algorithm in one Lua script per check and shares the buckets across replicas.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

WINDOW_S = 60.0
IDLE_FORGET_S = 120.0
NEVER_FITS_S = 86_400.0  # retry_after for a request larger than the limit itself
_EPSILON = 1e-9  # float slack so that exactly-refilled capacity counts as available


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    headers: dict[str, str]  # x-ratelimit-{limit,remaining,reset}-{requests,tokens}, set limits
    retry_after_s: float  # 0 when allowed; else seconds until the request would fit
    limit_hit: str | None  # "requests" | "tokens" | None

    @property
    def never_fits(self) -> bool:
        """The request is larger than the limit: retrying cannot help."""
        return self.retry_after_s >= NEVER_FITS_S


class _Bucket:
    __slots__ = ("deficit", "rate", "updated")

    def __init__(self, now: float) -> None:
        self.deficit = 0.0  # used and not yet refilled
        self.rate = 0.0  # refill per second, from the last limit seen (0: unknown yet)
        self.updated = now

    def refill(self, now: float, limit: int | None = None) -> None:
        if limit is not None:
            self.rate = limit / WINDOW_S
        elapsed = max(0.0, now - self.updated)
        self.deficit = max(0.0, self.deficit - elapsed * self.rate)
        self.updated = now


class _KeyState:
    __slots__ = ("requests", "seen", "tokens")

    def __init__(self, now: float) -> None:
        self.requests = _Bucket(now)
        self.tokens = _Bucket(now)
        self.seen = now


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Ordered by last review time, oldest first, so the idle sweep stops at the first
        # recent key (amortized O(1) per call).
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()

    def __len__(self) -> int:
        """Keys currently remembered (for tests and metrics)."""
        return len(self._keys)

    def check(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> RateDecision:
        """Admit and count one request of ``tokens`` tokens only if both limits allow it."""
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        now = self._clock()
        self._forget_idle(now)
        state = self._touch(key_id, now)
        limits = (("requests", state.requests, rpm, 1), ("tokens", state.tokens, tpm, tokens))
        hit: str | None = None
        wait = 0.0
        for name, bucket, limit, cost in limits:
            if limit is None:
                continue
            bucket.refill(now, limit)
            need = _wait_s(bucket, limit, cost)
            if need > wait:
                hit, wait = name, need
        if hit is None:
            for _, bucket, limit, cost in limits:
                if limit is not None:
                    bucket.deficit += cost
        headers: dict[str, str] = {}
        for name, bucket, limit, _ in limits:
            if limit is not None:
                headers.update(limit_headers(name, bucket.deficit, bucket.rate, limit))
        return RateDecision(hit is None, headers, wait, hit)

    def adjust(self, key_id: str, token_delta: int) -> None:
        """Correct the tokens counted at admission (an estimate) by ``actual - estimate``."""
        now = self._clock()
        self._forget_idle(now)
        state = self._keys.get(key_id)
        if state is None or state.tokens.rate == 0:
            return  # no token limit known for this key (or forgotten, hence long refilled)
        bucket = self._touch(key_id, now).tokens
        bucket.refill(now)
        bucket.deficit = max(0.0, bucket.deficit + token_delta)

    def _touch(self, key_id: str, now: float) -> _KeyState:
        state = self._keys.get(key_id)
        if state is None:
            state = self._keys[key_id] = _KeyState(now)
        else:
            self._keys.move_to_end(key_id)
            state.seen = now
        return state

    def _forget_idle(self, now: float) -> None:
        """Drop keys idle for IDLE_FORGET_S whose buckets are full again; review the rest later."""
        while self._keys:
            key_id, state = next(iter(self._keys.items()))
            if now - state.seen <= IDLE_FORGET_S:
                return
            state.requests.refill(now)
            state.tokens.refill(now)
            if state.requests.deficit == 0 and state.tokens.deficit == 0:
                del self._keys[key_id]
            else:  # still in debt (a large adjust): keep it, look again in IDLE_FORGET_S
                self._keys.move_to_end(key_id)
                state.seen = now


def _wait_s(bucket: _Bucket, limit: int, cost: int) -> float:
    """Seconds until ``cost`` fits into the bucket (0: it fits now)."""
    if cost > limit:
        return NEVER_FITS_S
    excess = bucket.deficit + cost - limit
    if excess <= _EPSILON:
        return 0.0
    return excess / bucket.rate if bucket.rate > 0 else NEVER_FITS_S


def limit_headers(name: str, deficit: float, rate: float, limit: int) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for one bucket (``name``: requests or tokens)."""
    remaining = max(0, math.floor(limit - deficit + _EPSILON))
    reset = deficit / rate if rate > 0 else 0.0
    return {
        f"x-ratelimit-limit-{name}": str(limit),
        f"x-ratelimit-remaining-{name}": str(remaining),
        f"x-ratelimit-reset-{name}": format_duration(reset),
    }


class RateLimits(Protocol):
    """What the gateway asks of a rate limiter (this process's, or one shared in Redis)."""

    async def check(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateDecision: ...

    async def adjust(self, key_id: str, token_delta: int) -> None: ...


class LocalRateLimits:
    """:class:`RateLimiter` behind the async :class:`RateLimits` interface."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self.limiter = limiter or RateLimiter()

    async def check(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateDecision:
        return self.limiter.check(key_id, rpm, tpm, tokens)

    async def adjust(self, key_id: str, token_delta: int) -> None:
        self.limiter.adjust(key_id, token_delta)


def format_duration(seconds: float) -> str:
    """OpenAI's (Go's) duration form, rounded up to the millisecond: "20ms", "1s", "6m0s"."""
    ms = max(0, math.ceil(seconds * 1000 - _EPSILON))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{secs}s"
