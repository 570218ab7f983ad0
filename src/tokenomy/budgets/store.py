"""Budget counters and atomic reservations.

A *counter* is one budget in one period window: spent and reserved money (pico-dollars)
and tokens. A *hold* reserves a request's worst case on every counter in scope, all or
none, and is settled to the actual cost afterwards (the rest released).

The in-memory store is exact inside one process: the event loop runs each call to the end
without yielding, so a check and its increment cannot interleave. Several replicas need a
shared store (Redis, one Lua script per reserve/settle) behind the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

CounterKey = tuple[str, int]  # (budget name, period window start in epoch ms)


@dataclass(frozen=True, slots=True)
class ReserveLine:
    key: CounterKey
    limit_pico: int
    limit_tokens: int | None


@dataclass(frozen=True, slots=True)
class Hold:
    keys: tuple[CounterKey, ...]
    pico: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Refusal:
    key: CounterKey  # the first counter that has no room
    needed_pico: int
    available_pico: int


@dataclass(slots=True)
class Counter:
    spent_pico: int = 0
    reserved_pico: int = 0
    spent_tokens: int = 0
    reserved_tokens: int = 0


class BudgetStore(Protocol):
    def loaded(self, key: CounterKey) -> bool: ...

    async def load(self, key: CounterKey, spent_pico: int, spent_tokens: int) -> None: ...

    async def reserve(
        self, lines: Sequence[ReserveLine], pico: int, tokens: int
    ) -> Hold | Refusal: ...

    async def settle(self, hold: Hold, actual_pico: int, actual_tokens: int) -> None: ...

    async def counter(self, key: CounterKey) -> Counter: ...

    async def spent_pico(self, keys: Sequence[CounterKey]) -> list[int]: ...


class MemoryBudgetStore:
    """Counters in this process; rebuilt from the ledger at start (see :meth:`load`)."""

    def __init__(self) -> None:
        self._counters: dict[CounterKey, Counter] = {}

    def loaded(self, key: CounterKey) -> bool:
        return key in self._counters

    async def load(self, key: CounterKey, spent_pico: int, spent_tokens: int) -> None:
        counter = self._counters.setdefault(key, Counter())
        counter.spent_pico = spent_pico
        counter.spent_tokens = spent_tokens

    async def reserve(self, lines: Sequence[ReserveLine], pico: int, tokens: int) -> Hold | Refusal:
        counters = self._counters
        for line in lines:
            counter = counters.get(line.key)
            if counter is None:
                counter = counters[line.key] = Counter()
            used = counter.spent_pico + counter.reserved_pico
            if used + pico > line.limit_pico:
                return Refusal(line.key, pico, max(line.limit_pico - used, 0))
            if line.limit_tokens is not None and (
                counter.spent_tokens + counter.reserved_tokens + tokens > line.limit_tokens
            ):
                return Refusal(line.key, pico, max(line.limit_pico - used, 0))
        for line in lines:
            counter = counters[line.key]
            counter.reserved_pico += pico
            counter.reserved_tokens += tokens
        return Hold(tuple(line.key for line in lines), pico, tokens)

    async def settle(self, hold: Hold, actual_pico: int, actual_tokens: int) -> None:
        for key in hold.keys:
            counter = self._counters.setdefault(key, Counter())
            counter.reserved_pico -= hold.pico
            counter.reserved_tokens -= hold.tokens
            counter.spent_pico += actual_pico
            counter.spent_tokens += actual_tokens

    async def counter(self, key: CounterKey) -> Counter:
        found = self._counters.get(key)
        return (
            Counter()
            if found is None
            else Counter(
                found.spent_pico, found.reserved_pico, found.spent_tokens, found.reserved_tokens
            )
        )

    async def spent_pico(self, keys: Sequence[CounterKey]) -> list[int]:
        counters = self._counters
        return [counters[key].spent_pico if key in counters else 0 for key in keys]

    def forget_before(self, name: str, window_start: int) -> None:
        """Drop a budget's counters of past windows (they live on in the ledger)."""
        for key in [k for k in self._counters if k[0] == name and k[1] < window_start]:
            del self._counters[key]
