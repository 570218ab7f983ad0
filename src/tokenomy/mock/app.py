"""The mock upstream as a plain ASGI3 callable.

Dispatch is a dictionary lookup on the path; there is no framework in the way because
in benchmarks the mock shares a CPU core with the load generator. Per request, in order:
read the body, parse the ``x-mock-*`` headers and validate the body (400 in the route's
dialect), choose a fault (header, else the seeded rates), wait ``latency_ms``, then answer:
an error, a stall, or the completion (plain or streamed, paced by ``tokens_per_second``,
possibly truncated or malformed). See :mod:`tokenomy.mock.text` for the usage figures.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from tokenomy import tokens
from tokenomy.mock import anthropic_route, openai_routes, responses_route
from tokenomy.mock._asgi import (
    JSON_HEADERS,
    ASGIApp,
    ClientGone,
    Receive,
    Scope,
    Send,
    lifespan,
    read_body,
    send_body,
    send_cut_body,
    stall,
)
from tokenomy.mock._errors import INJECTED_MESSAGES, MALFORMED_BODY, error_body
from tokenomy.mock.batch_route import MockBatches
from tokenomy.mock.embeddings import embeddings_body
from tokenomy.mock.options import SLOW_TOKENS_PER_SECOND, Fault, FaultSampler, MockOptions
from tokenomy.mock.requests import (
    NO_DIRECTIVES,
    BadRequest,
    Directives,
    parse_chat,
    parse_completion,
    parse_directives,
    parse_messages,
    parse_responses,
)
from tokenomy.mock.streaming import StreamPlan, send_stream
from tokenomy.mock.text import Generation

# Listed by GET /v1/models; every other model name is accepted just the same.
MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o4-mini",
    "mock-reasoning",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
)
_CREATED = 1_700_000_000
# The ``slow`` fault on a route without completion tokens (embeddings) waits this long.
SLOW_EMBEDDINGS_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class _Route:
    anthropic: bool
    id_prefix: str
    parse: Callable[[bytes, Directives, int], Generation]
    plain: Callable[[Generation, str, int], bytes]
    stream: Callable[[Generation, str, int], StreamPlan]


_GENERATION_ROUTES = {
    "/v1/chat/completions": _Route(
        False, "chatcmpl-mock", parse_chat, openai_routes.chat_body, openai_routes.chat_stream
    ),
    "/v1/completions": _Route(
        False,
        "cmpl-mock",
        parse_completion,
        openai_routes.completion_body,
        openai_routes.completion_stream,
    ),
    "/v1/responses": _Route(
        False,
        "resp_mock",
        parse_responses,
        responses_route.response_body,
        responses_route.response_stream,
    ),
    "/v1/messages": _Route(
        True,
        "msg_mock",
        parse_messages,
        anthropic_route.message_body,
        anthropic_route.message_stream,
    ),
}


def _model_object(model: str) -> dict[str, object]:
    return {"id": model, "object": "model", "created": _CREATED, "owned_by": "tokenomy-mock"}


def _warm_up() -> None:
    """Load the tokenizer before the first request rather than during it."""
    tokens.encoding()


def create_mock_app(options: MockOptions | None = None) -> ASGIApp:
    """A fresh mock upstream; all its state (fault RNG, id counter) lives in this closure."""
    options = options or MockOptions()
    sampler = FaultSampler(options)
    counter = itertools.count(1)
    sequence_positions: dict[tuple[Fault | None, ...], int] = {}
    models_body = orjson.dumps({"object": "list", "data": [_model_object(m) for m in MODELS]})

    async def fail(send: Send, anthropic: bool, status: int) -> None:
        body = error_body(anthropic, status, INJECTED_MESSAGES[status])
        headers = [*JSON_HEADERS, (b"retry-after", b"1")] if status == 429 else JSON_HEADERS
        await send_body(send, status, body, headers)

    async def prelude(
        send: Send, receive: Receive, anthropic: bool, directives: Directives
    ) -> tuple[bool, Fault | None]:
        """Choose the fault, wait the latency; (True, _) when a fault already answered."""
        fault = directives.fault
        if fault is None and directives.sequence:
            position = sequence_positions.get(directives.sequence, 0)
            sequence_positions[directives.sequence] = position + 1
            fault = directives.sequence[position % len(directives.sequence)]
        elif fault is None:
            fault = sampler.sample()
        latency = options.latency_ms if directives.latency_ms is None else directives.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000.0)
        if fault is Fault.ERROR or fault is Fault.ERROR_429:
            await fail(send, anthropic, 500 if fault is Fault.ERROR else 429)
            return True, fault
        if fault is Fault.TIMEOUT:
            if not await stall(receive, options.timeout_seconds):
                await fail(send, anthropic, 504)
            return True, fault
        return False, fault

    async def answer(send: Send, fault: Fault | None, body: bytes, request_id: str) -> None:
        if fault is Fault.TRUNCATE:
            await send_cut_body(send, body)
        elif fault is Fault.MALFORMED:
            await send_body(send, 200, MALFORMED_BODY)
        else:
            headers = [*JSON_HEADERS, (b"x-request-id", request_id.encode())]
            await send_body(send, 200, body, headers)

    async def generate(
        route: _Route, scope: Scope, body: bytes, receive: Receive, send: Send
    ) -> None:
        try:
            directives = parse_directives(scope["headers"])
            generation = route.parse(body, directives, options.default_completion_tokens)
        except BadRequest as exc:
            payload = error_body(route.anthropic, exc.status, exc.message, exc.param, exc.code)
            await send_body(send, exc.status, payload)
            return
        handled, fault = await prelude(send, receive, route.anthropic, directives)
        if handled:
            return
        pace = SLOW_TOKENS_PER_SECOND if fault is Fault.SLOW else options.tokens_per_second
        request_id = f"{route.id_prefix}{next(counter):016x}"
        created = int(time.time())
        if generation.stream:
            plan = route.stream(generation, request_id, created)
            await send_stream(send, receive, plan, fault, pace)
            return
        if pace is not None:
            await asyncio.sleep(generation.completion_tokens / pace)
        await answer(send, fault, route.plain(generation, request_id, created), request_id)

    async def embeddings(scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        try:
            directives = parse_directives(scope["headers"])
            payload = embeddings_body(body)
        except BadRequest as exc:
            await send_body(send, exc.status, error_body(False, exc.status, exc.message, exc.param))
            return
        handled, fault = await prelude(send, receive, False, directives)
        if handled:
            return
        if fault is Fault.SLOW:
            await asyncio.sleep(SLOW_EMBEDDINGS_SECONDS)
        await answer(send, fault, payload, f"emb-{next(counter):016x}")

    def answer_line(url: str, body: bytes) -> tuple[int, bytes]:
        """One line of a batch, answered as its endpoint would (no faults, no pacing)."""
        route = _GENERATION_ROUTES.get(url)
        try:
            if route is None:
                return 200, embeddings_body(body)
            generation = route.parse(body, NO_DIRECTIVES, options.default_completion_tokens)
        except BadRequest as exc:
            return exc.status, error_body(False, exc.status, exc.message, exc.param, exc.code)
        request_id = f"{route.id_prefix}{next(counter):016x}"
        answer = orjson.loads(route.plain(generation, request_id, int(time.time())))
        answer["system_fingerprint"] = "mock-batch"  # tells tests the batch API answered
        return 200, orjson.dumps(answer)

    batches = MockBatches(answer_line)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send, _warm_up)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            body = await read_body(receive)
        except ClientGone:
            return
        route = _GENERATION_ROUTES.get(path)
        if route is not None:
            if method == "POST":
                await generate(route, scope, body, receive, send)
            else:
                await _not_allowed(send, route.anthropic, method, path)
        elif path == "/v1/embeddings":
            if method == "POST":
                await embeddings(scope, body, receive, send)
            else:
                await _not_allowed(send, False, method, path)
        elif batches.handles(path):
            await batches.handle(scope, body, send)
        elif path == "/v1/models" and method == "GET":
            await send_body(send, 200, models_body)
        elif path.startswith("/v1/models/") and method == "GET":
            await send_body(send, 200, orjson.dumps(_model_object(path[len("/v1/models/") :])))
        elif path in ("/health", "/healthz"):
            await send_body(send, 200, b'{"status":"ok"}')
        else:
            message = f"Unknown request URL: {method} {path}."
            await send_body(send, 404, error_body(False, 404, message, code="unknown_url"))

    return app


async def _not_allowed(send: Send, anthropic: bool, method: str, path: str) -> None:
    message = f"Method {method} not allowed for {path}; use POST."
    await send_body(
        send, 405, error_body(anthropic, 405, message), [*JSON_HEADERS, (b"allow", b"POST")]
    )
