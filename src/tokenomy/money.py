"""Money is Decimal USD, exact from price to report.

The ledger stores amounts as integer pico-dollars (1e-12 USD): every price with up to six
decimal places per million tokens gives an integral number of pico-dollars per token, so a
request's cost is stored exactly and sums in SQL stay exact integers.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
MILLION = Decimal(1_000_000)
PICO_PER_USD = 10**12
_PICO = Decimal(1).scaleb(-12)
_PRICE_QUANTUM = Decimal(1).scaleb(-6)


def to_pico(amount: Decimal) -> int:
    """USD → integer pico-dollars (half-even below a pico-dollar, which prices never reach)."""
    return int(amount.quantize(_PICO, rounding=ROUND_HALF_EVEN).scaleb(12))


def from_pico(pico: int) -> Decimal:
    """Integer pico-dollars → exact USD Decimal, normalized without exponent notation."""
    return normalize(Decimal(pico).scaleb(-12))


def normalize(amount: Decimal) -> Decimal:
    """Strip trailing zeros but never print in exponent form ("1E+1" → "10")."""
    if amount == 0:
        return ZERO
    normalized = amount.normalize()
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return normalized.quantize(Decimal(1))
    return normalized


def usd_str(amount: Decimal) -> str:
    """The wire and report form of money: a plain decimal string."""
    return format(normalize(amount), "f")


def round_price_per_mtok(price: Decimal) -> Decimal:
    """Derived prices (self-hosted GPU cost / throughput) are kept to six decimals per MTok."""
    return price.quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)


def parse_usd(value: object) -> Decimal:
    """Parse money from config or JSON; floats are refused because they are not exact."""
    if isinstance(value, float):
        raise ValueError("money must be a string or integer, not a float (floats are inexact)")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | str):
        try:
            amount = Decimal(value)
        except ArithmeticError as exc:
            raise ValueError(f"not a decimal amount: {value!r}") from exc
    else:
        raise ValueError(f"not a decimal amount: {value!r}")
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount


def usd_micro(pico: float) -> str:
    """A (possibly fractional) pico-dollar figure as USD to the micro-dollar, for estimates."""
    return usd_str(from_pico(round(pico)).quantize(Decimal("0.000001")))
