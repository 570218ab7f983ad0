"""Budget counters shared by every replica, in Redis (``redis: redis://...``).

Layout, per counter (one budget in one period window):

    tokenomy:budget:<window_ms>:<name>   hash: sp, st (spent pico, tokens),
                                               rp, rt (reserved pico, tokens), loaded
    tokenomy:holds:<window_ms>:<name>    sorted set: "<replica>:<n>|<pico>|<tokens>"
                                               scored by the hold's deadline (ms)

Reserve is one Lua script over every counter in scope: it drops expired holds, checks
money and token limits on all of them, and only then adds the hold to all of them (all
or none, the :class:`MemoryBudgetStore` semantics, the same :class:`Refusal`). Settle is
one script: remove the hold, release its amounts if it was still there, add the actual
cost. Scripts run one at a time in Redis, so no two replicas can both take the last room.

Holds expire. A hold's deadline is Redis time + ``hold_ttl_s``; the replica that owns it
extends the deadline of all its live holds every ``hold_ttl_s / 4`` (one heartbeat script),
so a long stream or a batch keeps its hold. A replica that dies (kill -9, a lost pod)
stops renewing: its holds pass their deadline and are dropped by the next script that
touches the counter (reserve, read, or any replica's heartbeat, which sweeps every counter
it knows), so a crash leaks budget room for at most ``hold_ttl_s`` plus one heartbeat. A
replica stalled past its deadline loses the hold too; its settle then charges the actual
cost without releasing anything twice.

Reconciliation. A counter is loaded from the ledger the first time a replica needs it,
and every ``reconcile_s`` after: spent becomes the larger of the ledger's and Redis's
(settles reach Redis before the ledger's group commit, so a smaller ledger figure is
"not yet written", never "not spent"; spend served while Redis was down or failing open
arrives this way), reserved becomes the sum of the live holds. A counter Redis lost (a
restart without persistence, a flush) is detected by every script (no ``loaded`` field)
and reloaded from the ledger before the request proceeds; settles skip it meanwhile.

Redis unreachable: reads and reserves raise :class:`RedisUnavailable` (503), or with
``fail_open`` answer empty counters and holds that touch nothing (the ledger still records
the spend; reconciliation brings it into Redis later). Settles never raise: a settle that
cannot reach Redis is logged and its hold left to expire.

One Redis (or a primary with replicas) is assumed: the scripts touch several keys, which
Redis Cluster would need on one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenomy.budgets import redis_scripts
from tokenomy.budgets.store import Counter, CounterKey, Hold, Refusal, ReserveLine
from tokenomy.errors import RedisUnavailable
from tokenomy.redis_client import UNREACHABLE, unavailable

log = logging.getLogger("tokenomy.budgets")
RECONCILE_S = 30.0
WARN_EVERY_S = 10.0

Loader = Callable[[CounterKey], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RedisHold(Hold):
    member: str  # the hold's entry in each counter's holds set


class _Down(Exception):
    """Redis did not answer (wraps the client's error)."""


class RedisBudgetStore:
    def __init__(
        self,
        client: Any,
        url: str,
        hold_ttl_s: float = 30.0,
        fail_open: bool = False,
        reconcile_s: float = RECONCILE_S,
    ) -> None:
        self._redis = client
        self._url = url
        self._ttl_ms = max(int(hold_ttl_s * 1000), 1)
        self.fail_open = fail_open
        self._reconcile_s = reconcile_s
        self._scripts = {
            name: client.register_script(getattr(redis_scripts, name))
            for name in ("RESERVE", "SETTLE", "LOAD", "READ", "SPENT", "HEARTBEAT")
        }
        self._loaded: set[CounterKey] = set()
        self._live: dict[str, tuple[CounterKey, ...]] = {}  # this replica's holds
        self._replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._serial = itertools.count()
        self._loader: Loader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._warned = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, loader: Loader) -> None:
        """Begin heartbeats and reconciliation; ``loader`` rebuilds a counter from the
        ledger by calling :meth:`load` (the enforcer's ``reload``)."""
        self._loader = loader
        self._tasks.append(asyncio.create_task(self._every(self._ttl_ms / 4000, self.heartbeat)))
        self._tasks.append(asyncio.create_task(self._every(self._reconcile_s, self.reconcile)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._redis.aclose()

    async def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except (_Down, RedisUnavailable) as exc:
                self._warn(f"Redis unreachable in {job.__name__}: {exc}")
            except Exception:  # a background job must survive to run again
                log.exception("budget store %s failed", job.__name__)

    # -- the BudgetStore protocol ---------------------------------------------------------

    def loaded(self, key: CounterKey) -> bool:
        return key in self._loaded

    async def load(self, key: CounterKey, spent_pico: int, spent_tokens: int) -> None:
        try:
            await self._run("LOAD", _keys([key]), [spent_pico, spent_tokens])
        except _Down as exc:
            if not self.fail_open:
                raise unavailable(self._url, "budgets", exc) from None
            self._warn("Redis unreachable: budget counter not loaded (failing open)")
            return
        self._loaded.add(key)

    async def reserve(self, lines: Sequence[ReserveLine], pico: int, tokens: int) -> Hold | Refusal:
        keys = [line.key for line in lines]
        member = f"{self._replica}:{next(self._serial)}|{pico}|{tokens}"
        args: list[Any] = [self._ttl_ms, member, pico, tokens]
        for line in lines:
            args += [line.limit_pico, "" if line.limit_tokens is None else line.limit_tokens]
        for _ in range(len(lines) + 1):
            try:
                answer = await self._run("RESERVE", _keys(keys), args)
            except _Down as exc:
                if not self.fail_open:
                    raise unavailable(self._url, "budgets", exc) from None
                self._warn("Redis unreachable: serving without budget holds (failing open)")
                return Hold((), pico, tokens)
            outcome = answer[0].decode()
            if outcome == "held":
                self._live[member] = tuple(keys)
                return RedisHold(tuple(keys), pico, tokens, member)
            line = lines[int(answer[1]) - 1]
            if outcome == "refused":
                used = int(answer[2]) + max(int(answer[3]), 0)
                return Refusal(line.key, pico, max(line.limit_pico - used, 0))
            await self._reload(line.key)  # "missing": Redis lost this counter
        raise unavailable(self._url, "budgets", RuntimeError("counters keep disappearing"))

    async def settle(self, hold: Hold, actual_pico: int, actual_tokens: int) -> None:
        if not isinstance(hold, RedisHold):
            return  # admitted while failing open: the ledger has it, reconciliation adds it
        self._live.pop(hold.member, None)
        try:
            await self._run("SETTLE", _keys(hold.keys), [hold.member, actual_pico, actual_tokens])
        except _Down as exc:
            log.warning("could not settle a budget hold in Redis (%s); it expires", exc)

    async def counter(self, key: CounterKey) -> Counter:
        (fields,) = await self._read([key])
        if fields is None:
            return Counter()
        spent, reserved, spent_tokens, reserved_tokens = (int(f or 0) for f in fields)
        return Counter(spent, max(reserved, 0), spent_tokens, max(reserved_tokens, 0))

    async def spent_pico(self, keys: Sequence[CounterKey]) -> list[int]:
        for _ in range(len(keys) + 1):
            try:
                answer = await self._run("SPENT", [_counter_key(k) for k in keys], [])
            except _Down as exc:
                if not self.fail_open:
                    raise unavailable(self._url, "budgets", exc) from None
                return [0] * len(keys)
            missing = [k for k, value in zip(keys, answer, strict=True) if value is None]
            if not missing:
                return [int(value) for value in answer]
            await self._reload(missing[0])
        raise unavailable(self._url, "budgets", RuntimeError("counters keep disappearing"))

    # -- background -----------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Extend this replica's live holds; drop every expired hold on known counters."""
        mine: dict[CounterKey, list[str]] = {key: [] for key in self._loaded}
        for member, keys in list(self._live.items()):
            for key in keys:
                mine.setdefault(key, []).append(member)
        if not mine:
            return
        args: list[Any] = [self._ttl_ms]
        for members in mine.values():
            args += [len(members), *members]
        await self._run("HEARTBEAT", _keys(list(mine)), args)

    async def reconcile(self) -> None:
        """Every known counter again from the ledger (see the module docstring)."""
        if self._loader is not None:
            for key in list(self._loaded):
                await self._loader(key)

    # -- helpers --------------------------------------------------------------------------

    async def _read(self, keys: list[CounterKey]) -> list[list[bytes | None] | None]:
        for _ in range(len(keys) + 1):
            try:
                answer: list[list[bytes | None] | None] = await self._run("READ", _keys(keys), [])
            except _Down as exc:
                if not self.fail_open:
                    raise unavailable(self._url, "budgets", exc) from None
                return [None] * len(keys)
            missing = [k for k, value in zip(keys, answer, strict=True) if value is None]
            if not missing:
                return answer
            await self._reload(missing[0])
        raise unavailable(self._url, "budgets", RuntimeError("counters keep disappearing"))

    async def _reload(self, key: CounterKey) -> None:
        self._loaded.discard(key)
        if self._loader is None:
            await self.load(key, 0, 0)  # not started (tests, benchmarks): an empty ledger
        else:
            await self._loader(key)

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[script](keys=keys, args=args)
        except UNREACHABLE as exc:
            raise _Down(str(exc) or type(exc).__name__) from exc

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(message)


def _counter_key(key: CounterKey) -> str:
    return f"tokenomy:budget:{key[1]}:{key[0]}"


def _keys(keys: Sequence[CounterKey]) -> list[str]:
    """KEYS pairs for the scripts: (counter hash, holds set) per counter."""
    out = []
    for name, window_start in keys:
        out += [f"tokenomy:budget:{window_start}:{name}", f"tokenomy:holds:{window_start}:{name}"]
    return out
