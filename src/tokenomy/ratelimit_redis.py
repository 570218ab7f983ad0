"""Per-key rate limits shared by every replica: :mod:`tokenomy.ratelimit` in Redis.

The same token buckets (capacity = the per-minute limit, continuous refill of limit / 60 s,
the deficit kept rather than the level), the same answers and ``x-ratelimit-*`` headers,
one Lua script per check and one per adjustment. Time is Redis's (``TIME``), so replicas
with skewed clocks refill alike. A key's hash expires once its buckets are full again plus
the idle window, which is when the in-process limiter forgets a key.

Redis unreachable: a check raises :class:`RedisUnavailable` (503), or with ``fail_open``
falls back to this process's own buckets; an adjustment that cannot reach Redis is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from tokenomy.ratelimit import (
    IDLE_FORGET_S,
    NEVER_FITS_S,
    WINDOW_S,
    LocalRateLimits,
    RateDecision,
    limit_headers,
)
from tokenomy.redis_client import UNREACHABLE, unavailable

log = logging.getLogger("tokenomy.ratelimit")

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local function num(s) return tonumber(s) or 0 end
local function g(x) return string.format('%.17g', x) end
"""

# KEYS[1]: the key's hash (rd/rr/ru: requests deficit, rate, updated; td/tr/tu: tokens).
# ARGV: rpm ('' none), tpm ('' none), tokens, window_s, idle_s, never_fits_s.
# Answers {hit ('' allowed, 'requests', 'tokens'), wait_s, then per limit set:
# deficit, rate}.
CHECK = (
    _CLOCK
    + """
local window, idle, never = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local buckets = {{'r', 'requests', tonumber(ARGV[1]), 1}, {'t', 'tokens', tonumber(ARGV[2]),
  tonumber(ARGV[3])}}
local hit, wait = '', 0
for _, b in ipairs(buckets) do
  local limit, cost = b[3], b[4]
  if limit then
    local f = redis.call('HMGET', KEYS[1], b[1] .. 'd', b[1] .. 'u')
    local rate = limit / window
    local updated = tonumber(f[2]) or now
    b.deficit = math.max(0, num(f[1]) - math.max(0, now - updated) * rate)
    b.rate = rate
    local need = 0
    if cost > limit then
      need = never
    else
      local excess = b.deficit + cost - limit
      if excess > 1e-9 then need = excess / rate end
    end
    if need > wait then hit, wait = b[2], need end
  end
end
local out = {hit, g(wait)}
local keep = 0
for _, b in ipairs(buckets) do
  if b[3] then
    if hit == '' then b.deficit = b.deficit + b[4] end
    redis.call('HSET', KEYS[1], b[1] .. 'd', g(b.deficit), b[1] .. 'r', g(b.rate),
      b[1] .. 'u', g(now))
    keep = math.max(keep, b.deficit / b.rate)
    table.insert(out, g(b.deficit))
    table.insert(out, g(b.rate))
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil((keep + idle) * 1000))
return out
"""
)

# KEYS[1] as above; ARGV: token_delta, idle_s. A key without a known token limit (or
# forgotten, hence long refilled) is left alone.
ADJUST = (
    _CLOCK
    + """
local f = redis.call('HMGET', KEYS[1], 'td', 'tr', 'tu')
local rate = num(f[2])
if rate == 0 then return 0 end
local updated = tonumber(f[3]) or now
local deficit = math.max(0, num(f[1]) - math.max(0, now - updated) * rate)
deficit = math.max(0, deficit + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'td', g(deficit), 'tu', g(now))
local keep = deficit / rate
local rd, rr = num(redis.call('HGET', KEYS[1], 'rd')), num(redis.call('HGET', KEYS[1], 'rr'))
if rr > 0 then keep = math.max(keep, rd / rr) end
redis.call('PEXPIRE', KEYS[1], math.ceil((keep + tonumber(ARGV[2])) * 1000))
return 1
"""
)


class RedisRateLimiter:
    """The :class:`~tokenomy.ratelimit.RateLimits` of every replica, in Redis."""

    PREFIX = "tokenomy:rate:"

    def __init__(self, client: Any, url: str, fail_open: bool = False) -> None:
        self._url = url
        self.fail_open = fail_open
        self._check = client.register_script(CHECK)
        self._adjust = client.register_script(ADJUST)
        self._fallback = LocalRateLimits()  # while failing open

    async def check(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateDecision:
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        args = [
            "" if rpm is None else rpm,
            "" if tpm is None else tpm,
            tokens,
            WINDOW_S,
            IDLE_FORGET_S,
            NEVER_FITS_S,
        ]
        try:
            answer = await self._check(keys=[self.PREFIX + key_id], args=args)
        except UNREACHABLE as exc:
            if not self.fail_open:
                raise unavailable(self._url, "rate limits", exc) from None
            log.warning("Redis unreachable: rate limits counted in this process only")
            return await self._fallback.check(key_id, rpm, tpm, tokens)
        hit = answer[0].decode() or None
        values = iter(float(v) for v in answer[2:])
        headers: dict[str, str] = {}
        for name, limit in (("requests", rpm), ("tokens", tpm)):
            if limit is not None:
                deficit, rate = next(values), next(values)
                headers.update(limit_headers(name, deficit, rate, limit))
        return RateDecision(hit is None, headers, float(answer[1]), hit)

    async def adjust(self, key_id: str, token_delta: int) -> None:
        try:
            await self._adjust(keys=[self.PREFIX + key_id], args=[token_delta, IDLE_FORGET_S])
        except UNREACHABLE as exc:
            log.warning("could not adjust a rate limit in Redis (%s)", exc)
