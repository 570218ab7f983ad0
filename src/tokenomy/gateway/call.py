"""One proxied call: who asked, for what, and how it is recorded once it is over."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tokenomy.budgets.bounds import output_limit
from tokenomy.budgets.enforcer import Admission
from tokenomy.budgets.enforcer import Request as BudgetRequest
from tokenomy.cache.exact import PendingWrite
from tokenomy.config import CascadeCheck
from tokenomy.gateway.endpoints import Endpoint
from tokenomy.ledger import UsageEvent
from tokenomy.money import from_pico, usd_str
from tokenomy.pricing import Model
from tokenomy.principals import Principal
from tokenomy.usage import Usage


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


@dataclass(slots=True)
class Call:
    request_id: str
    started: float  # perf_counter at arrival
    ts_ms: int
    principal: Principal
    endpoint: Endpoint
    model: Model
    payload: dict[str, Any]
    raw_body: bytes
    workflow: str
    tags: dict[str, str]
    route_reason: str = "requested"
    strategy: str = "requested"  # how the model was chosen (a savings dimension)
    baseline: Model | None = None  # the model savings are measured against (None: no claim)
    escalation: tuple[Model, ...] = ()  # cascade: the models still to try, cheap to dear
    cascade_check: CascadeCheck | None = None
    cache_write: PendingWrite | None = None  # a cache miss: where the answer is stored
    ttft_ms: float | None = None
    store_content: bool = False
    completion_text: list[str] = field(default_factory=list)
    admission: Admission | None = None
    budget_request: BudgetRequest | None = None  # to admit again for a fallback model
    rewritten: bool = False  # the payload changed since it arrived (re-serialize it)
    rate_tokens: int = 0  # tokens the rate limiter counted at admission
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    traceparent: str | None = None
    batch: bool = False  # run by the batch worker pool: charged at the model's batch price

    def reroute(self, model: Model, reason: str, strategy: str) -> None:
        """Serve from another model than the one chosen so far; savings stay measured
        against the first choice (or the route's baseline)."""
        if self.baseline is None:
            self.baseline = self.model
        self.model = model
        self.route_reason = reason
        self.strategy = strategy

    def headers(self, cost: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-request-id", self.request_id.encode()),
            (b"x-tokenomy-model", self.model.name.encode()),
            (b"x-tokenomy-cost-usd", cost.encode()),
            (b"x-tokenomy-route-reason", self.route_reason.encode()),
            *self.extra_headers,
        ]

    def estimated_usage(self, output_text: str = "") -> Usage:
        from tokenomy import tokens

        output = tokens.count(output_text) if output_text else 0
        return Usage(input_tokens=self.endpoint.estimate_input(self.payload), output_tokens=output)

    def event(
        self,
        usage: Usage,
        *,
        status: int,
        estimated: bool = False,
        error: str | None = None,
        stream: bool = False,
    ) -> tuple[UsageEvent, str]:
        """The ledger event and the cost as the wire shows it."""
        cost_pico = self.model.price.cost_pico(usage, batch=self.batch)
        p = self.principal
        event = UsageEvent(
            id=self.request_id,
            ts_ms=self.ts_ms,
            tenant=p.tenant,
            key_id=p.key_id,
            user=p.user,
            team=p.team,
            department=p.department,
            project=p.project,
            environment=p.environment,
            workflow=self.workflow,
            tags={**p.tags, **self.tags},
            endpoint=self.endpoint.name,
            requested_model=str(self.payload.get("model")),
            model=self.model.name,
            tier=self.model.tier,
            upstream=self.model.upstream,
            route_reason=self.route_reason,
            usage=usage,
            cost_pico=cost_pico,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            ttft_ms=self.ttft_ms,
            status=status,
            error=error,
            stream=stream,
            estimated=estimated,
            strategy=self.strategy,
        )
        baseline = self.baseline
        if self.batch:
            # Savings against the same request in real time (and any route's baseline).
            baseline = baseline or self.model
            if self.strategy == "requested":
                event.strategy = "batch"
        if baseline is not None:
            event.baseline_model = baseline.name
            if baseline is not self.model or self.batch:
                event.saved_pico = baseline.price.cost_pico(usage) - cost_pico
        limit = output_limit(self.payload)
        if limit is not None:
            event.extra["gen_ai.request.max_tokens"] = str(limit)
        if self.traceparent:
            event.extra["traceparent"] = self.traceparent
        if self.store_content:
            event.prompt = orjson.dumps(
                self.payload.get("messages")
                or self.payload.get("input")
                or self.payload.get("prompt")
            ).decode()
            event.completion = "".join(self.completion_text) or None
        return event, usd_str(from_pico(cost_pico))
