"""Prometheus metrics: OpenTelemetry GenAI histograms, exact spend counters, budget gauges.

Every series lives on one :class:`~prometheus_client.CollectorRegistry` per gateway (no
module globals). :class:`MetricsObserver` turns each committed ledger event into:

- ``gen_ai_client_token_usage`` (histogram, ``gen_ai_token_type`` input|output; input
  includes cached tokens), ``gen_ai_client_operation_duration_seconds`` and
  ``gen_ai_server_time_to_first_token_seconds`` (streams), labelled as the OpenTelemetry
  GenAI metrics are (``gen_ai_operation_name``, ``gen_ai_provider_name``,
  ``gen_ai_request_model``, ``gen_ai_response_model``; ``error_type`` on failures);
- ``tokenomy_cost_usd_total{team,model}``, ``tokenomy_tokens_total{team,model,token_type}``
  (disjoint classes: input = uncached prompt tokens, cached_input, cache_write, output;
  they add up to all tokens), ``tokenomy_reasoning_tokens_total{team,model}`` (part of
  output), ``tokenomy_requests_total{team,model,status}`` and
  ``tokenomy_saved_usd_total{team,model,strategy}`` (routing's savings against the
  baseline model; negative increments where a cascade or fallback cost extra).

Counters are kept as exact integers (cost in pico-dollars) and converted once per scrape:
Prometheus samples are floats, so a cost is exact to a float's 15-16 significant digits of
the *total*, with no error accumulated over increments. Budget gauges
(``tokenomy_budget_fraction_used``, ``..._spent_usd``, ``..._limit_usd`` and the in-flight
holds ``..._reserved_usd``) are read from the budget enforcer at scrape time.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from tokenomy.errors import AuthenticationFailed, PermissionDenied, TokenomyError
from tokenomy.ledger.event import UsageEvent

if TYPE_CHECKING:
    from tokenomy.budgets.book import BudgetBook
    from tokenomy.budgets.definition import Budget
    from tokenomy.budgets.enforcer import BudgetEnforcer
    from tokenomy.gateway.asgi import Scope, Send
    from tokenomy.gateway.state import Gateway

# gen_ai.operation.name of each proxied endpoint.
OPERATIONS = {
    "chat.completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "chat",
}
# Bucket boundaries advised by the OpenTelemetry GenAI semantic conventions.
TOKEN_BUCKETS = tuple(float(4**n) for n in range(14))  # 1, 4, 16, ... 67108864
DURATION_BUCKETS: tuple[float, ...] = tuple(0.01 * 2**n for n in range(14))  # 0.01 ... 81.92
TTFT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5)
TTFT_BUCKETS += (0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
GEN_AI_LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)
TOKEN_TYPES = ("input", "cached_input", "cache_write", "output")
_PICO_PER_USD = 1e12


def operation_name(endpoint: str) -> str:
    return OPERATIONS.get(endpoint, endpoint)


class _Totals:
    """Exact integer counters by team and model, exposed as Prometheus counters."""

    def __init__(self) -> None:
        # (team, model) → [cost_pico, input, cached_input, cache_write, output, reasoning]
        self.spend: dict[tuple[str, str], list[int]] = {}
        self.requests: dict[tuple[str, str, str], int] = {}
        self.saved: dict[tuple[str, str, str], int] = {}  # (team, model, strategy) → pico

    def add(self, event: UsageEvent) -> None:
        usage = event.usage
        key = (event.team, event.model)
        row = self.spend.get(key)
        if row is None:
            row = self.spend[key] = [0, 0, 0, 0, 0, 0]
        row[0] += event.cost_pico
        row[1] += usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        row[2] += usage.cache_read_tokens
        row[3] += usage.cache_write_tokens
        row[4] += usage.output_tokens
        row[5] += usage.reasoning_tokens
        status_key = (event.team, event.model, str(event.status))
        self.requests[status_key] = self.requests.get(status_key, 0) + 1
        if event.saved_pico:
            saved_key = (event.team, event.model, event.strategy)
            self.saved[saved_key] = self.saved.get(saved_key, 0) + event.saved_pico

    def collect(self) -> Iterator[Metric]:
        cost = CounterMetricFamily(
            "tokenomy_cost_usd", "Spend in USD (the ledger's cost).", labels=("team", "model")
        )
        tokens = CounterMetricFamily(
            "tokenomy_tokens",
            "Tokens by disjoint class (input excludes cached and cache-write tokens).",
            labels=("team", "model", "token_type"),
        )
        reasoning = CounterMetricFamily(
            "tokenomy_reasoning_tokens",
            "Output tokens spent on reasoning (included in output).",
            labels=("team", "model"),
        )
        requests = CounterMetricFamily(
            "tokenomy_requests", "Recorded requests.", labels=("team", "model", "status")
        )
        for (team, model), row in list(self.spend.items()):
            cost.add_metric((team, model), row[0] / _PICO_PER_USD)
            for token_type, count in zip(TOKEN_TYPES, row[1:5], strict=True):
                tokens.add_metric((team, model, token_type), count)
            reasoning.add_metric((team, model), row[5])
        for labels, count in list(self.requests.items()):
            requests.add_metric(labels, count)
        saved = CounterMetricFamily(
            "tokenomy_saved_usd",
            "Savings in USD (routing, cache): the baseline cost of the same usage minus the cost.",
            labels=("team", "model", "strategy"),
        )
        for labels, pico in list(self.saved.items()):
            saved.add_metric(labels, pico / _PICO_PER_USD)
        yield from (cost, tokens, reasoning, requests, saved)


class MetricsObserver:
    """A ledger listener (``gateway.listeners``) that records each event's metrics."""

    def __init__(
        self, registry: CollectorRegistry, providers: Mapping[str, str] | None = None
    ) -> None:
        self._providers = dict(providers or {})
        self._tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per request (gen_ai.client.token.usage).",
            (*GEN_AI_LABELS, "gen_ai_token_type"),
            registry=registry,
            buckets=TOKEN_BUCKETS,
        )
        self._duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Request duration (gen_ai.client.operation.duration).",
            (*GEN_AI_LABELS, "error_type"),
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self._ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first streamed token (gen_ai.server.time_to_first_token).",
            GEN_AI_LABELS,
            registry=registry,
            buckets=TTFT_BUCKETS,
        )
        self._totals = _Totals()
        registry.register(self._totals)
        self._children: dict[tuple[str, str, str, str, int], tuple[Any, Any, Any, Any]] = {}

    def observe(self, event: UsageEvent) -> None:
        status = event.status if event.status >= 400 else 0
        key = (event.endpoint, event.upstream, event.requested_model, event.model, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._children_for(key)
        tokens_in, tokens_out, duration, ttft = children
        usage = event.usage
        if usage.input_tokens:
            tokens_in.observe(usage.input_tokens)
        if usage.output_tokens:
            tokens_out.observe(usage.output_tokens)
        duration.observe(event.latency_ms / 1000)
        if event.ttft_ms is not None:
            ttft.observe(event.ttft_ms / 1000)
        self._totals.add(event)

    def _children_for(self, key: tuple[str, str, str, str, int]) -> tuple[Any, Any, Any, Any]:
        endpoint, upstream, requested, served, status = key
        labels = (
            operation_name(endpoint),
            self._providers.get(upstream, upstream),
            requested,
            served,
        )
        return (
            self._tokens.labels(*labels, "input"),
            self._tokens.labels(*labels, "output"),
            self._duration.labels(*labels, str(status) if status else ""),
            self._ttft.labels(*labels),
        )


class BudgetGauges:
    """Budget state as gauges, refreshed from the enforcer right before each scrape."""

    def __init__(self) -> None:
        self._states: list[dict[str, Any]] = []

    async def refresh(self, enforcer: BudgetEnforcer, budgets: Iterable[Budget]) -> None:
        states = []
        for budget in budgets:
            try:
                states.append(await enforcer.state(budget))
            except TokenomyError:  # its counter cannot be read now (Redis down): left out
                continue
        self._states = states

    def collect(self) -> Iterator[Metric]:
        label = ("budget",)
        fraction = GaugeMetricFamily(
            "tokenomy_budget_fraction_used", "Spent / limit this period.", labels=label
        )
        spent = GaugeMetricFamily(
            "tokenomy_budget_spent_usd", "Spent this period (USD).", labels=label
        )
        limit = GaugeMetricFamily("tokenomy_budget_limit_usd", "Budget limit (USD).", labels=label)
        reserved = GaugeMetricFamily(
            "tokenomy_budget_reserved_usd",
            "Held for requests in flight (worst case, USD).",
            labels=label,
        )
        reserved_tokens = GaugeMetricFamily(
            "tokenomy_budget_reserved_tokens", "Tokens held for requests in flight.", labels=label
        )
        for state in self._states:
            name = (str(state["name"]),)
            fraction.add_metric(name, float(state["fraction_used"]))
            spent.add_metric(name, float(state["spent_usd"]))
            limit.add_metric(name, float(state["limit_usd"]))
            reserved.add_metric(name, float(state["reserved_usd"]))
            reserved_tokens.add_metric(name, float(state["reserved_tokens"]))
        yield from (fraction, spent, limit, reserved, reserved_tokens)


class QueueGauges:
    """The batch queue per pool (upstream) and model: what an autoscaler scales on."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, str, int, int, int]] = []

    def refresh(self, rows: list[tuple[str, str, int, int, int]]) -> None:
        self._rows = rows

    def collect(self) -> Iterator[Metric]:
        labels = ("pool", "model")
        depth = GaugeMetricFamily(
            "tokenomy_batch_queue_lines", "Batch lines and jobs waiting or running.", labels=labels
        )
        tokens = GaugeMetricFamily(
            "tokenomy_batch_queue_tokens",
            "Input tokens (estimated) of waiting lines.",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "tokenomy_batch_oldest_age_seconds",
            "Age of the oldest batch or job with lines waiting.",
            labels=labels,
        )
        for pool, model, lines, waiting_tokens, oldest_s in self._rows:
            depth.add_metric((pool, model), lines)
            tokens.add_metric((pool, model), waiting_tokens)
            age.add_metric((pool, model), oldest_s)
        yield from (depth, tokens, age)


class GatewayMetrics:
    """The gateway's registry, its ledger observer and its budget gauges."""

    def __init__(self, providers: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.observer = MetricsObserver(self.registry, providers)
        self.budgets = BudgetGauges()
        self.registry.register(self.budgets)
        self.queue = QueueGauges()
        self.registry.register(self.queue)

    async def render(
        self, enforcer: BudgetEnforcer, book: BudgetBook, accept: str = ""
    ) -> tuple[bytes, str]:
        """The exposition (Prometheus text, or OpenMetrics when asked) and its type."""
        await self.budgets.refresh(enforcer, book.all())
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


async def serve_metrics(gateway: Gateway, scope: Scope, send: Send) -> None:
    """``GET /metrics``; needs the admin key unless ``telemetry.metrics_public``."""
    headers = dict(scope["headers"])
    error = _refusal(gateway, headers.get(b"authorization", b""))
    if error is not None:
        body, status = error.json(), error.status
        content_type = "application/json"
    else:
        accept = headers.get(b"accept", b"").decode("latin-1")
        gateway.metrics.queue.refresh(await asyncio.to_thread(_queue_rows, gateway))
        body, content_type = await gateway.metrics.render(gateway.enforcer, gateway.budgets, accept)
        status = 200
    start = {"type": "http.response.start", "status": status}
    await send({**start, "headers": [(b"content-type", content_type.encode())]})
    await send({"type": "http.response.body", "body": body})


def _queue_rows(gateway: Gateway) -> list[tuple[str, str, int, int, int]]:
    rows = []
    for model, lines, tokens, oldest_s in gateway.batch.store.queue_stats():
        known = gateway.catalog.get(model)
        rows.append((known.upstream if known else "route", model, lines, tokens, oldest_s))
    return rows


def _refusal(gateway: Gateway, authorization: bytes) -> TokenomyError | None:
    settings = gateway.settings
    if settings.telemetry.metrics_public:
        return None
    expected = settings.admin_key
    if not expected:
        return PermissionDenied(
            "/metrics needs the admin key and none is set (admin_key or TOKENOMY_ADMIN_KEY); "
            "or set telemetry.metrics_public",
            code="admin_disabled",
        )
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), expected.encode()):
        return AuthenticationFailed("admin key missing or wrong", code="invalid_admin_key")
    return None
