"""Per-key rate limits: token buckets driven by a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from tokenomy.ratelimit import NEVER_FITS_S, RateLimiter, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock=clock)


def test_burst_up_to_rpm_passes_then_next_is_refused(limiter: RateLimiter) -> None:
    for i in range(60):
        decision = limiter.check("k", rpm=60, tpm=None, tokens=10)
        assert decision.allowed, i
        assert decision.retry_after_s == 0
        assert decision.limit_hit is None
        assert decision.headers["x-ratelimit-remaining-requests"] == str(59 - i)
    refused = limiter.check("k", rpm=60, tpm=None, tokens=10)
    assert not refused.allowed
    assert refused.limit_hit == "requests"
    assert refused.retry_after_s == pytest.approx(1.0)  # 60 rpm refills one per second
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"


def test_refused_request_is_not_counted(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(2):
        assert limiter.check("k", rpm=2, tpm=None, tokens=0).allowed
    for _ in range(5):
        assert not limiter.check("k", rpm=2, tpm=None, tokens=0).allowed
    clock.advance(30)  # refills exactly one request at 2 rpm
    assert limiter.check("k", rpm=2, tpm=None, tokens=0).allowed
    assert not limiter.check("k", rpm=2, tpm=None, tokens=0).allowed


def test_refill_is_continuous(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(60):
        limiter.check("k", rpm=60, tpm=None, tokens=0)
    clock.advance(0.5)
    half = limiter.check("k", rpm=60, tpm=None, tokens=0)
    assert not half.allowed
    assert half.retry_after_s == pytest.approx(0.5)
    clock.advance(0.5)
    assert limiter.check("k", rpm=60, tpm=None, tokens=0).allowed
    clock.advance(10)
    decision = limiter.check("k", rpm=60, tpm=None, tokens=0)
    assert decision.allowed
    assert decision.headers["x-ratelimit-remaining-requests"] == "9"
    clock.advance(120)  # never refills above the limit
    for _ in range(60):
        assert limiter.check("k", rpm=60, tpm=None, tokens=0).allowed
    assert not limiter.check("k", rpm=60, tpm=None, tokens=0).allowed


def test_token_limit_refuses_with_time_until_it_fits(limiter: RateLimiter) -> None:
    assert limiter.check("k", rpm=None, tpm=6000, tokens=5000).allowed
    refused = limiter.check("k", rpm=None, tpm=6000, tokens=3000)
    assert not refused.allowed
    assert refused.limit_hit == "tokens"
    # 2000 tokens missing at 100 tokens/s
    assert refused.retry_after_s == pytest.approx(20.0)
    assert refused.headers["x-ratelimit-remaining-tokens"] == "1000"
    assert refused.headers["x-ratelimit-reset-tokens"] == "50s"
    assert limiter.check("k", rpm=None, tpm=6000, tokens=1000).allowed


def test_tokens_and_requests_are_independent(limiter: RateLimiter, clock: FakeClock) -> None:
    # Token limit exhausted while requests remain ...
    assert limiter.check("a", rpm=100, tpm=1000, tokens=1000).allowed
    refused = limiter.check("a", rpm=100, tpm=1000, tokens=1)
    assert (refused.allowed, refused.limit_hit) == (False, "tokens")
    assert refused.headers["x-ratelimit-remaining-requests"] == "99"
    # ... and requests exhausted while tokens remain.
    assert limiter.check("b", rpm=1, tpm=1000, tokens=1).allowed
    refused = limiter.check("b", rpm=1, tpm=1000, tokens=1)
    assert (refused.allowed, refused.limit_hit) == (False, "requests")
    assert refused.headers["x-ratelimit-remaining-tokens"] == "999"
    # A refusal on one resource consumes nothing on the other.
    clock.advance(60)
    decision = limiter.check("b", rpm=1, tpm=1000, tokens=1000)
    assert decision.allowed


def test_limit_hit_names_the_longer_wait(limiter: RateLimiter) -> None:
    assert limiter.check("k", rpm=60, tpm=600, tokens=600).allowed
    refused = limiter.check("k", rpm=60, tpm=600, tokens=300)
    # requests: 0 s (59 left); tokens: 300 missing at 10/s = 30 s
    assert refused.limit_hit == "tokens"
    assert refused.retry_after_s == pytest.approx(30.0)
    limiter2 = RateLimiter(clock=lambda: 0.0)
    assert limiter2.check("k", rpm=1, tpm=600, tokens=590).allowed
    refused = limiter2.check("k", rpm=1, tpm=600, tokens=20)
    # requests: 60 s; tokens: 10 missing at 10/s = 1 s
    assert refused.limit_hit == "requests"
    assert refused.retry_after_s == pytest.approx(60.0)


def test_keys_are_independent(limiter: RateLimiter) -> None:
    assert limiter.check("a", rpm=1, tpm=None, tokens=0).allowed
    assert not limiter.check("a", rpm=1, tpm=None, tokens=0).allowed
    assert limiter.check("b", rpm=1, tpm=None, tokens=0).allowed


def test_request_larger_than_the_limit_never_fits(limiter: RateLimiter, clock: FakeClock) -> None:
    refused = limiter.check("k", rpm=10, tpm=1000, tokens=1001)
    assert not refused.allowed
    assert refused.limit_hit == "tokens"
    assert refused.retry_after_s == NEVER_FITS_S
    assert refused.never_fits
    clock.advance(3600)
    assert not limiter.check("k", rpm=10, tpm=1000, tokens=1001).allowed
    # nothing was counted for the refused request
    ok = limiter.check("k", rpm=10, tpm=1000, tokens=1000)
    assert ok.allowed
    assert not ok.never_fits
    assert ok.headers["x-ratelimit-remaining-requests"] == "9"
    zero = limiter.check("z", rpm=0, tpm=None, tokens=0)
    assert (zero.allowed, zero.limit_hit, zero.never_fits) == (False, "requests", True)


def test_adjust_frees_capacity(limiter: RateLimiter) -> None:
    assert limiter.check("k", rpm=None, tpm=1000, tokens=900).allowed  # estimate
    assert not limiter.check("k", rpm=None, tpm=1000, tokens=500).allowed
    limiter.adjust("k", -800)  # actual usage was 100
    decision = limiter.check("k", rpm=None, tpm=1000, tokens=500)
    assert decision.allowed
    assert decision.headers["x-ratelimit-remaining-tokens"] == "400"
    limiter.adjust("k", -10_000)  # never above the limit
    decision = limiter.check("k", rpm=None, tpm=1000, tokens=1000)
    assert decision.allowed


def test_adjust_uses_capacity_and_can_go_into_debt(limiter: RateLimiter, clock: FakeClock) -> None:
    assert limiter.check("k", rpm=None, tpm=600, tokens=100).allowed
    limiter.adjust("k", 1100)  # actual usage 1200: 600 over the limit
    refused = limiter.check("k", rpm=None, tpm=600, tokens=0)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(60.0)  # 600 of debt at 10 tokens/s
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-reset-tokens"] == "2m0s"
    clock.advance(60)
    assert limiter.check("k", rpm=None, tpm=600, tokens=0).allowed
    assert not limiter.check("k", rpm=None, tpm=600, tokens=1).allowed


def test_adjust_without_a_token_limit_is_a_no_op(limiter: RateLimiter) -> None:
    limiter.adjust("unknown", 10_000)
    assert len(limiter) == 0
    assert limiter.check("k", rpm=5, tpm=None, tokens=0).allowed
    limiter.adjust("k", 10_000)
    assert limiter.check("k", rpm=5, tpm=100, tokens=100).allowed


def test_headers_only_for_limits_that_are_set(limiter: RateLimiter) -> None:
    both = limiter.check("k", rpm=500, tpm=30_000, tokens=3000)
    assert both.headers == {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "27000",
        "x-ratelimit-reset-tokens": "6s",
    }
    only_tokens = limiter.check("t", rpm=None, tpm=100, tokens=1)
    assert set(only_tokens.headers) == {
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    }
    none = limiter.check("n", rpm=None, tpm=None, tokens=10**9)
    assert none.allowed
    assert none.headers == {}


def test_idle_keys_are_forgotten(limiter: RateLimiter, clock: FakeClock) -> None:
    for key in ("a", "b", "c"):
        limiter.check(key, rpm=10, tpm=1000, tokens=1000)
    clock.advance(100)
    limiter.check("b", rpm=10, tpm=1000, tokens=1)
    assert len(limiter) == 3
    clock.advance(21)  # a and c idle for 121 s, b for 21 s
    limiter.check("d", rpm=10, tpm=1000, tokens=1)
    assert len(limiter) == 2
    # a forgotten key starts full, exactly as if it had been kept
    assert limiter.check("a", rpm=10, tpm=1000, tokens=1000).allowed


def test_keys_in_debt_are_kept_until_repaid(limiter: RateLimiter, clock: FakeClock) -> None:
    limiter.check("k", rpm=None, tpm=60, tokens=60)
    limiter.adjust("k", 300)  # 360 tokens of deficit at 1 token/s: 6 minutes
    clock.advance(121)
    limiter.check("other", rpm=None, tpm=60, tokens=0)
    assert len(limiter) == 2
    refused = limiter.check("k", rpm=None, tpm=60, tokens=1)
    assert refused.retry_after_s == pytest.approx(360 - 121 - 60 + 1)
    clock.advance(400)
    limiter.check("other", rpm=None, tpm=60, tokens=0)
    assert len(limiter) == 1


def test_negative_tokens_are_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        limiter.check("k", rpm=1, tpm=1, tokens=-1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0001, "1ms"),
        (0.02, "20ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (7.66, "7.66s"),
        (59.9994, "1m0s"),
        (60, "1m0s"),
        (90.25, "1m30.25s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
