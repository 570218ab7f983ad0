"""The Lua scripts of the Redis budget store (see :mod:`tokenomy.budgets.redis_store`).

Every script takes its counters as KEYS pairs (counter hash, holds sorted set) and reads
the time from Redis (``TIME``), so replicas with skewed clocks agree on hold deadlines.

Money is integer pico-dollars, which pass 2^53 (exact doubles, Lua's only number) at about
$9,000. Scripts therefore never do arithmetic on a money value as one number: they split
it into exact limbs (high, low < 10^6) to compare and sum, and let ``HINCRBY`` (64-bit
integers in C) do the increments from decimal strings.
"""

from __future__ import annotations

_COMMON = """
local function limbs(s)
  if not s or string.sub(s, 1, 1) == '-' then return 0, 0 end
  local n = #s
  if n <= 6 then return 0, tonumber(s) end
  return tonumber(string.sub(s, 1, n - 6)), tonumber(string.sub(s, n - 5))
end
local function plus(ah, al, bh, bl)
  local low = al + bl
  if low >= 1e6 then return ah + bh + 1, low - 1e6 end
  return ah + bh, low
end
local function decimal(h, l)
  if h == 0 then return string.format('%.0f', l) end
  return string.format('%.0f', h) .. string.format('%06.0f', l)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function amounts(member)
  return string.match(member, '|(%d+)|(%d+)$')
end
local function release(counter, member)
  local pico, tokens = amounts(member)
  if pico ~= '0' then redis.call('HINCRBY', counter, 'rp', '-' .. pico) end
  if tokens ~= '0' then redis.call('HINCRBY', counter, 'rt', '-' .. tokens) end
end
local function loaded(counter)
  return redis.call('HEXISTS', counter, 'loaded') == 1
end
local function purge(counter, holds, now)
  if loaded(counter) then
    local dead = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
    for _, member in ipairs(dead) do release(counter, member) end
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
end
"""

# ARGV: ttl_ms, member ("<id>|<pico>|<tokens>"), pico, tokens, then per counter
# limit_pico, limit_tokens ('' for none). Answers {'held'}, {'missing', i} (counter i is
# not loaded: nothing changed) or {'refused', i, spent_pico, reserved_pico}.
RESERVE = (
    _COMMON
    + """
local ttl, member, pico, tokens = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local n = #KEYS / 2
for i = 1, n do
  if not loaded(KEYS[2 * i - 1]) then return {'missing', i} end
end
local now = now_ms()
local ph, pl = limbs(pico)
for i = 1, n do
  local counter = KEYS[2 * i - 1]
  purge(counter, KEYS[2 * i], now)
  local f = redis.call('HMGET', counter, 'sp', 'rp', 'st', 'rt')
  local sh, sl = limbs(f[1])
  local rh, rl = limbs(f[2])
  local uh, ul = plus(sh, sl, rh, rl)
  local nh, nl = plus(uh, ul, ph, pl)
  local lh, ll = limbs(ARGV[3 + 2 * i])
  local refused = nh > lh or (nh == lh and nl > ll)
  local limit_tokens = ARGV[4 + 2 * i]
  if not refused and limit_tokens ~= '' then
    local used = math.max(tonumber(f[3]) or 0, 0) + math.max(tonumber(f[4]) or 0, 0)
    refused = used + tokens > tonumber(limit_tokens)
  end
  if refused then return {'refused', i, f[1] or '0', f[2] or '0'} end
end
for i = 1, n do
  local counter = KEYS[2 * i - 1]
  redis.call('HINCRBY', counter, 'rp', pico)
  redis.call('HINCRBY', counter, 'rt', ARGV[4])
  redis.call('ZADD', KEYS[2 * i], now + ttl, member)
end
return {'held'}
"""
)

# ARGV: member, actual_pico, actual_tokens. A hold already dropped (expired) releases
# nothing again; a counter not loaded (Redis lost it) is left to the ledger reload.
SETTLE = (
    _COMMON
    + """
for i = 1, #KEYS / 2 do
  local counter = KEYS[2 * i - 1]
  local removed = redis.call('ZREM', KEYS[2 * i], ARGV[1])
  if loaded(counter) then
    if removed == 1 then release(counter, ARGV[1]) end
    redis.call('HINCRBY', counter, 'sp', ARGV[2])
    redis.call('HINCRBY', counter, 'st', ARGV[3])
  end
end
return 1
"""
)

# One counter. ARGV: the ledger's spent_pico, spent_tokens. Spent becomes the larger of
# the ledger's and the counter's (the ledger lags settles by a group commit, so a smaller
# ledger figure means "not written yet"); reserved becomes the sum of the live holds.
LOAD = (
    _COMMON
    + """
local counter, holds = KEYS[1], KEYS[2]
redis.call('ZREMRANGEBYSCORE', holds, '-inf', now_ms())
local rh, rl, rt = 0, 0, 0
for _, member in ipairs(redis.call('ZRANGE', holds, 0, -1)) do
  local pico, tokens = amounts(member)
  local h, l = limbs(pico)
  rh, rl = plus(rh, rl, h, l)
  rt = rt + tonumber(tokens)
end
local spent, spent_tokens = ARGV[1], ARGV[2]
if loaded(counter) then
  local f = redis.call('HMGET', counter, 'sp', 'st')
  local ah, al = limbs(f[1])
  local bh, bl = limbs(spent)
  if ah > bh or (ah == bh and al > bl) then spent = f[1] end
  if (tonumber(f[2]) or 0) > tonumber(spent_tokens) then spent_tokens = f[2] end
end
redis.call('HSET', counter, 'sp', spent, 'st', spent_tokens, 'rp', decimal(rh, rl),
  'rt', string.format('%.0f', rt), 'loaded', '1')
return {spent, decimal(rh, rl)}
"""
)

# Counters' fields after dropping expired holds: per counter {sp, rp, st, rt}, or false
# for a counter that is not loaded.
READ = (
    _COMMON
    + """
local now = now_ms()
local out = {}
for i = 1, #KEYS / 2 do
  local counter = KEYS[2 * i - 1]
  if loaded(counter) then
    purge(counter, KEYS[2 * i], now)
    out[i] = redis.call('HMGET', counter, 'sp', 'rp', 'st', 'rt')
  else
    out[i] = false
  end
end
return out
"""
)

# Spent pico per counter (false: not loaded); holds do not change it, so no purge.
SPENT = """
local out = {}
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], 'loaded') == 1 then
    out[i] = redis.call('HGET', KEYS[i], 'sp') or '0'
  else
    out[i] = false
  end
end
return out
"""

# ARGV: ttl_ms, then per counter: the number of this replica's live holds on it, then
# those members. Drops every expired hold (any replica's) and extends this replica's;
# ZADD XX never brings back a hold that was already dropped.
HEARTBEAT = (
    _COMMON
    + """
local now = now_ms()
local deadline = now + tonumber(ARGV[1])
local at = 2
for i = 1, #KEYS / 2 do
  local counter, holds = KEYS[2 * i - 1], KEYS[2 * i]
  purge(counter, holds, now)
  local count = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, count do
    redis.call('ZADD', holds, 'XX', deadline, ARGV[at])
    at = at + 1
  end
end
return 1
"""
)
