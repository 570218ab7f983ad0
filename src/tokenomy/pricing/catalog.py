"""The catalog: every configured model with its upstream, tier and price sheet.

Resolved once at start (looking prices up in genai-prices is ~70 µs; the hot path only
reads this table).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tokenomy.config import CAPABILITIES, ModelConfig, Settings, Tier
from tokenomy.errors import ConfigError
from tokenomy.money import MILLION, round_price_per_mtok, usd_str
from tokenomy.pricing.sheet import PriceSheet

# Tier bands by blended price per million tokens (premium ~$3-20, mid $0.10-1,
# commodity $0.01-0.10); the gaps between bands split at their geometric midpoints.
PREMIUM_FROM = Decimal("1.7")
MID_FROM = Decimal("0.10")
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    upstream: str
    target: str  # the model name sent upstream
    kind: str
    tier: Tier
    price: PriceSheet
    max_output_tokens: int | None
    context_window: int | None
    tokenizer: str | None = None  # tiktoken encoding that counts this model exactly
    downgrade: tuple[tuple[str, str], ...] = ()  # (tier, substitute model)
    capabilities: frozenset[str] = frozenset(CAPABILITIES)
    fallbacks: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        """The model and its prices (USD per million tokens, decimal strings)."""
        price = self.price
        return {
            "name": self.name,
            "upstream": self.upstream,
            "upstream_model": self.target,
            "kind": self.kind,
            "tier": self.tier,
            "price_source": price.source,
            "input_per_mtok": _price_str(price.input_per_mtok),
            "cached_input_per_mtok": _price_str(price.cached_input_per_mtok),
            "cache_write_per_mtok": _price_str(price.cache_write_per_mtok),
            "output_per_mtok": _price_str(price.output_per_mtok),
            "batch_discount": _price_str(price.batch_discount),
            "tiered": price.tiered is not None,
        }


def _price_str(value: Decimal | None) -> str | None:
    return None if value is None else usd_str(value)


def tier_for(price: PriceSheet) -> Tier:
    blended = price.blended_per_mtok
    if blended >= PREMIUM_FROM:
        return "premium"
    if blended >= MID_FROM:
        return "mid"
    return "commodity"


def self_hosted_sheet(config: ModelConfig) -> PriceSheet:
    hosted = config.self_hosted
    assert hosted is not None
    dollars_per_second = hosted.gpu_hour_usd * hosted.gpus / SECONDS_PER_HOUR
    output = round_price_per_mtok(dollars_per_second / hosted.output_tokens_per_second * MILLION)
    input_tps = hosted.input_tokens_per_second
    input_price = (
        output
        if input_tps is None
        else round_price_per_mtok(dollars_per_second / input_tps * MILLION)
    )
    # Our own GPUs have no batch discount; deferral fills idle capacity instead.
    return PriceSheet(input_price, output, batch_discount=Decimal(0), source="self-hosted")


def genai_sheet(config: ModelConfig, provider_id: str | None) -> PriceSheet:
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price

    model_ref = config.price_model or config.target
    provider = config.price_provider or provider_id
    try:
        found = calc_price(
            GenaiUsage(input_tokens=0, output_tokens=0), model_ref, provider_id=provider
        )
    except LookupError as exc:
        raise ConfigError(
            f"model {config.name!r}: no price given and genai-prices has no model "
            f"{model_ref!r} for provider {provider!r} ({exc}); set price:, self_hosted:, "
            "or price_model:/price_provider:"
        ) from exc
    prices: dict[str, Any] = {
        key: value for key, value in vars(found.model_price).items() if value is not None
    }
    tiered = any(
        not isinstance(value, Decimal) for key, value in prices.items() if key.endswith("mtok")
    )
    return PriceSheet(
        input_per_mtok=_base(prices.get("input_mtok")),
        output_per_mtok=_base(prices.get("output_mtok")),
        cached_input_per_mtok=_optional_base(prices.get("cache_read_mtok")),
        cache_write_per_mtok=_optional_base(prices.get("cache_write_mtok")),
        source="genai-prices",
        tiered=found.model_price if tiered else None,
    )


def _base(value: Any) -> Decimal:
    """The first-tier price (used for tiering and display; costs use the full tiers)."""
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(value.base)


def _optional_base(value: Any) -> Decimal | None:
    return None if value is None else _base(value)


def _sheet_for(config: ModelConfig, settings: Settings) -> PriceSheet:
    if config.price is not None:
        p = config.price
        return PriceSheet(
            p.input_per_mtok,
            p.output_per_mtok,
            p.cached_input_per_mtok,
            p.cache_write_per_mtok,
            p.batch_discount,
        )
    if config.self_hosted is not None:
        return self_hosted_sheet(config)
    upstream = settings.upstreams[config.upstream]
    return genai_sheet(config, upstream.provider_id or upstream.resolved_kind)


_O200K_FAMILIES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
_CL100K_FAMILIES = ("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")


def _tokenizer(config: ModelConfig, settings: Settings) -> str | None:
    if config.tokenizer is not None:
        return None if config.tokenizer == "bytes" else config.tokenizer
    if settings.upstreams[config.upstream].resolved_kind != "openai":
        return None
    target = config.target
    if target.startswith(_O200K_FAMILIES):
        return "o200k_base"
    if target.startswith(_CL100K_FAMILIES):
        return "cl100k_base"
    return None


class Catalog:
    def __init__(self, models: list[Model]) -> None:
        self._models = {model.name: model for model in models}

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        models = []
        for config in settings.models:
            sheet = _sheet_for(config, settings)
            models.append(
                Model(
                    name=config.name,
                    upstream=config.upstream,
                    target=config.target,
                    kind=config.kind,
                    tier=config.tier or tier_for(sheet),
                    price=sheet,
                    max_output_tokens=config.max_output_tokens,
                    context_window=config.context_window,
                    tokenizer=_tokenizer(config, settings),
                    downgrade=tuple(config.downgrade.items()),
                    fallbacks=tuple(config.fallbacks),
                    capabilities=frozenset(
                        CAPABILITIES if config.capabilities is None else config.capabilities
                    ),
                )
            )
        return cls(models)

    def get(self, name: str) -> Model | None:
        return self._models.get(name)

    def __iter__(self) -> Any:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def names(self) -> list[str]:
        return list(self._models)

    def substitute(self, model: Model, to_tier: str | None, to_model: str | None) -> Model | None:
        """The model that serves a downgraded request: the one named, the model's own
        configured substitute for that tier, or the cheapest model of the tier and kind."""
        if to_model is not None:
            return self._models.get(to_model)
        for tier, name in model.downgrade:
            if tier == to_tier:
                return self._models.get(name)
        candidates = [
            m for m in self._models.values() if m.tier == to_tier and m.kind == model.kind
        ]
        return min(candidates, key=lambda m: (m.price.blended_per_mtok, m.name), default=None)
