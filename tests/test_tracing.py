"""OpenTelemetry spans per request (GenAI semantic conventions), in memory and over OTLP/HTTP
from a real gateway, checked against the ledger."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason="OpenTelemetry SDK missing: pip install -e '.[otel]' (in dev)"
)

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from conftest import MockUpstream, free_port, gateway_config, start_gateway, stop
from tokenomy.config import parse_settings
from tokenomy.ledger.event import UsageEvent
from tokenomy.telemetry import tracing
from tokenomy.usage import Usage

EVENT = UsageEvent(
    id="req_1",
    ts_ms=1_764_000_000_000,
    tenant="default",
    key_id="key_1",
    user="ann",
    team="support",
    department="ops",
    project="",
    environment="prod",
    workflow="triage",
    tags={},
    endpoint="chat.completions",
    requested_model="premium-model",
    model="premium-model",
    tier="premium",
    upstream="mock",
    route_reason="requested",
    usage=Usage(input_tokens=1200, output_tokens=30, cache_read_tokens=512, reasoning_tokens=10),
    cost_pico=4_570_000_000,
    latency_ms=250.5,
    status=200,
    ttft_ms=40.0,
    stream=True,
)


@pytest.fixture
def memory() -> Iterator[tuple[tracing.SpanEmitter, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emitter = tracing.SpanEmitter(provider.get_tracer("test"), {"mock": "openai"}, provider)
    yield emitter, exporter
    emitter.close()


def test_a_request_becomes_a_genai_client_span(
    memory: tuple[tracing.SpanEmitter, InMemorySpanExporter],
) -> None:
    emitter, exporter = memory
    emitter.observe(EVENT)
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat premium-model"
    assert span.kind is SpanKind.CLIENT
    assert span.start_time == EVENT.ts_ms * 1_000_000
    assert span.end_time == span.start_time + 250_500_000
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"]
    assert attributes["gen_ai.usage.input_tokens"] == 1200
    assert attributes["gen_ai.usage.output_tokens"] == 30
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 512
    assert attributes["tokenomy.cost_pico"] == 4_570_000_000
    assert attributes["tokenomy.cost_usd"] == pytest.approx(0.00457)
    assert attributes["tokenomy.team"] == "support"
    assert attributes["tokenomy.usage.reasoning_tokens"] == 10
    assert attributes["tokenomy.time_to_first_token_s"] == pytest.approx(0.04)
    assert "tokenomy.project" not in attributes  # empty attribution is left out
    assert "error.type" not in attributes
    assert span.status.status_code is StatusCode.UNSET


def test_failures_and_caller_context(
    memory: tuple[tracing.SpanEmitter, InMemorySpanExporter],
) -> None:
    emitter, exporter = memory
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    failed = replace(
        EVENT,
        endpoint="completions",
        status=502,
        error="upstream answered 500",
        extra={
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
            "gen_ai.request.max_tokens": "64",
        },
    )
    emitter.observe(failed)
    emitter.observe(replace(EVENT, endpoint="embeddings", requested_model="embed-small"))
    first, second = exporter.get_finished_spans()
    assert first.name == "text_completion premium-model"
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "upstream answered 500"
    assert (first.attributes or {})["error.type"] == "502"
    assert (first.attributes or {})["gen_ai.request.max_tokens"] == "64"
    assert format(first.context.trace_id, "032x") == trace_id
    assert first.parent is not None and format(first.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert second.name == "embeddings embed-small" and second.parent is None


def test_nothing_is_built_without_an_endpoint_or_the_sdk(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert tracing.from_settings(parse_settings({})) is None
    settings = parse_settings({"telemetry": {"otlp_endpoint": "http://127.0.0.1:1"}})
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    assert tracing.from_settings(settings) is None
    assert "pip install 'tokenomy[otel]'" in caplog.text
    assert tracing.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/custom/traces") == "http://c:4318/custom/traces"


class _Collector(BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP (protobuf) trace receiver."""

    spans: list[Any]

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get(
                "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((self.path, service, span))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def _value(attribute: Any) -> Any:
    value = attribute.value
    return getattr(value, value.WhichOneof("value"))


def test_a_real_gateway_exports_one_span_per_ledger_event(
    tmp_path: Path, mock_upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[Any] = []
    handler = type("Collector", (_Collector,), {"spans": received})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    telemetry = {"otlp_endpoint": endpoint, "service_name": "gw-test"}
    gw = start_gateway(
        tmp_path, gateway_config(tmp_path / "ledger.db", mock_upstream, telemetry=telemetry)
    )
    try:
        client = openai.OpenAI(
            base_url=gw.base_url, api_key=gw.create_key(team="support"), max_retries=0
        )
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        for model in ("premium-model", "claude-sonnet"):
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=8,
                extra_headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            )
        client.embeddings.create(model="embed-small", input="words")
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(
                model="broken-model", messages=[{"role": "user", "content": "x"}], max_tokens=4
            )
        events = {event["id"]: event for event in gw.events()}
        deadline = time.monotonic() + 15
        while len(received) < len(events) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop(gw.process)
        server.shutdown()
    assert len(received) == len(events) == 4
    for path, service, span in received:
        assert path == "/v1/traces" and service == "gw-test"
        attributes = {a.key: _value(a) for a in span.attributes}
        event = events[attributes["tokenomy.request_id"]]
        assert span.name == f"{attributes['gen_ai.operation.name']} {event['requested_model']}"
        assert attributes["gen_ai.usage.input_tokens"] == event["input_tokens"]
        assert attributes["gen_ai.usage.output_tokens"] == event["output_tokens"]
        assert attributes["tokenomy.cost_pico"] == event["cost_pico"]
        assert attributes["tokenomy.team"] == "support"
        assert span.start_time_unix_nano == event["ts_ms"] * 1_000_000
        assert span.end_time_unix_nano > span.start_time_unix_nano
        if event["status"] >= 400:
            assert attributes["error.type"] == str(event["status"])
            assert span.status.code == 2  # STATUS_CODE_ERROR
        if event["endpoint"] == "chat.completions" and event["status"] == 200:
            # The caller's trace context and the request's output limit travel along.
            assert span.trace_id.hex() == trace_id
            assert span.parent_span_id.hex() == "00f067aa0ba902b7"
            assert attributes["gen_ai.request.max_tokens"] == "8"
    providers = {
        _value(a) for _, _, s in received for a in s.attributes if a.key == "gen_ai.provider.name"
    }
    assert providers == {"openai", "anthropic"}
