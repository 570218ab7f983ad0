"""OpenTelemetry spans per request, following the GenAI semantic conventions.

A span is built from each committed ledger event (a listener on ``gateway.listeners``),
not by wrapping the request path: its start is the request's arrival (``ts_ms``), its end
arrival + ``latency_ms``. Name ``"{gen_ai.operation.name} {gen_ai.request.model}"``, kind
CLIENT; ``gen_ai.*`` attributes as the conventions define them, attribution and cost in
``tokenomy.*`` (``tokenomy.cost_usd`` a float for dashboards, ``tokenomy.cost_pico`` the
exact integer). A failed request has status ERROR and ``error.type`` (the HTTP status).

Entries of ``event.extra`` named ``gen_ai.*``/``tokenomy.*`` become attributes too, and a
``traceparent`` entry (W3C) makes the span a child of the caller's trace.

Needs the ``otel`` extra and ``telemetry.otlp_endpoint``; otherwise :func:`from_settings`
returns None and nothing is built (no cost on the hot path).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tokenomy.config import Settings
from tokenomy.ledger.event import UsageEvent
from tokenomy.telemetry.metrics import operation_name

log = logging.getLogger("tokenomy.telemetry")
AttributeValue = str | bool | int | float
_PRINCIPAL = ("tenant", "key_id", "user", "team", "department", "project", "environment")
_REQUEST = ("workflow", "tier", "upstream", "route_reason")


def providers(settings: Settings) -> dict[str, str]:
    """``gen_ai.provider.name`` of each upstream: its genai-prices provider or its kind."""
    return {
        name: upstream.provider_id or upstream.resolved_kind
        for name, upstream in settings.upstreams.items()
    }


def span_name(event: UsageEvent) -> str:
    return f"{operation_name(event.endpoint)} {event.requested_model}"


def span_attributes(
    event: UsageEvent, provider_names: Mapping[str, str]
) -> dict[str, AttributeValue]:
    usage = event.usage
    provider = provider_names.get(event.upstream, event.upstream)
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation_name(event.endpoint),
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the name before semantic conventions 1.37
        "gen_ai.request.model": event.requested_model,
        "gen_ai.response.model": event.model,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        "http.response.status_code": event.status,
        "tokenomy.request_id": event.id,
        "tokenomy.cost_usd": event.cost_pico / 1e12,
        "tokenomy.cost_pico": event.cost_pico,
        "tokenomy.usage.reasoning_tokens": usage.reasoning_tokens,
        "tokenomy.stream": event.stream,
        "tokenomy.estimated": event.estimated,
        "tokenomy.cache_hit": event.cache_hit,
    }
    for name in (*_PRINCIPAL, *_REQUEST):
        value = getattr(event, name)
        if value:
            attributes[f"tokenomy.{name}"] = value
    if event.ttft_ms is not None:
        attributes["tokenomy.time_to_first_token_s"] = event.ttft_ms / 1000
    if event.status >= 400:
        attributes["error.type"] = str(event.status)
    for key, value in event.extra.items():
        if key.startswith(("gen_ai.", "tokenomy.")):
            attributes[key] = value
    return attributes


class SpanEmitter:
    """Turns ledger events into finished spans on an OpenTelemetry tracer."""

    def __init__(
        self, tracer: Any, provider_names: Mapping[str, str], tracer_provider: Any = None
    ) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self._providers = dict(provider_names)
        self._tracer_provider = tracer_provider
        self._kind = SpanKind.CLIENT
        self._error = (Status, StatusCode.ERROR)
        self._propagator = TraceContextTextMapPropagator()

    def observe(self, event: UsageEvent) -> None:
        start_ns = event.ts_ms * 1_000_000
        parent = event.extra.get("traceparent")
        context = self._propagator.extract({"traceparent": parent}) if parent else None
        span = self._tracer.start_span(
            span_name(event),
            context=context,
            kind=self._kind,
            attributes=span_attributes(event, self._providers),
            start_time=start_ns,
        )
        if event.status >= 400:
            status, code = self._error
            span.set_status(status(code, event.error or f"HTTP {event.status}"))
        span.end(end_time=start_ns + int(event.latency_ms * 1_000_000))

    def close(self) -> None:
        """Export what is still queued, then stop."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()


def traces_url(endpoint: str) -> str:
    """``http://collector:4318`` → ``http://collector:4318/v1/traces``; a URL with a path
    is used as given."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def from_settings(settings: Settings) -> SpanEmitter | None:
    """A span emitter exporting over OTLP/HTTP, or None (no endpoint, or no SDK)."""
    endpoint = settings.telemetry.otlp_endpoint
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "telemetry.otlp_endpoint is set but OpenTelemetry is not installed "
            "(pip install 'tokenomy[otel]'): no spans are exported"
        )
        return None
    resource = Resource.create({"service.name": settings.telemetry.service_name})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint))
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("tokenomy")
    return SpanEmitter(tracer, providers(settings), tracer_provider)
