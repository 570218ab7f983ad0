"""A model's prices by token class, and the cost of a normalized usage.

Flat prices (the common case) are priced with plain Decimal arithmetic. Models that
genai-prices prices in tiers (e.g. above 200k input tokens) are priced by genai-prices
itself, so the tier rules live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from tokenomy.money import MILLION, ZERO, to_pico
from tokenomy.usage import Usage

PriceSource = Literal["config", "genai-prices", "self-hosted"]
_PICO_PER_MTOK_USD = 10**6  # $1 per million tokens is 10^6 pico-dollars per token


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """USD per million tokens. Cache read/write default to the input price."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    batch_discount: Decimal = Decimal("0.5")
    source: PriceSource = "config"
    tiered: Any = None  # genai_prices ModelPrice when any class is tiered
    # Integer pico-dollars per token by class (input, cache read, cache write, output), when
    # every price is flat and a whole number of pico-dollars: the request path's fast path.
    _pico: tuple[int, int, int, int] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.tiered is not None:
            return
        per_token = [
            self.input_per_mtok,
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok,
            self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok,
            self.output_per_mtok,
        ]
        picos = [price * _PICO_PER_MTOK_USD for price in per_token]
        if all(p == p.to_integral_value() for p in picos):
            object.__setattr__(self, "_pico", tuple(int(p) for p in picos))

    def cost_pico(self, usage: Usage, *, batch: bool = False) -> int:
        """:meth:`cost` in integer pico-dollars (exact; integer arithmetic when possible)."""
        pico = self._pico
        if pico is None or batch:
            return to_pico(self.cost(usage, batch=batch))
        return (
            usage.uncached_input_tokens * pico[0]
            + usage.cache_read_tokens * pico[1]
            + usage.cache_write_tokens * pico[2]
            + usage.output_tokens * pico[3]
        )

    def cost(self, usage: Usage, *, batch: bool = False) -> Decimal:
        if self.tiered is not None:
            total = self._tiered_cost(usage)
        else:
            cached = self.cached_input_per_mtok
            write = self.cache_write_per_mtok
            total = (
                usage.uncached_input_tokens * self.input_per_mtok
                + usage.cache_read_tokens * (self.input_per_mtok if cached is None else cached)
                + usage.cache_write_tokens * (self.input_per_mtok if write is None else write)
                + usage.output_tokens * self.output_per_mtok
            ) / MILLION
        if batch and self.batch_discount:
            total = total * (1 - self.batch_discount)
        return total if total else ZERO

    def _tiered_cost(self, usage: Usage) -> Decimal:
        from genai_prices import Usage as GenaiUsage

        result = self.tiered.calc_price(
            GenaiUsage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
            )
        )
        total: Decimal = result["total_price"]
        return total

    @property
    def blended_per_mtok(self) -> Decimal:
        """A typical request's price: three input tokens for every output token."""
        return (3 * self.input_per_mtok + self.output_per_mtok) / 4
