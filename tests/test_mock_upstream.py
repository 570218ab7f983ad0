"""The mock upstream, through its public surfaces: the ASGI app in-process, a real server
(granian and uvicorn) driven by the real ``openai`` and ``anthropic`` SDKs, and the CLI."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner

import tokenomy
from tokenomy import tokens
from tokenomy.mock import MockOptions, create_mock_app
from tokenomy.mock.cli import mock_upstream_command

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three prime numbers."},
]
SDK_MESSAGES: Any = MESSAGES  # the SDKs want their TypedDicts; these are the same dicts
LONG_TEXT = " ".join(f"item{i} is listed here" for i in range(400))


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **extra}


def expected_cached(prompt_tokens: int) -> int:
    return (prompt_tokens // 2) // 128 * 128 if prompt_tokens >= 1024 else 0


def sse_data(body: bytes) -> list[bytes]:
    """The ``data:`` payloads of an SSE body, in order."""
    payloads = []
    for event in body.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data: "):
                payloads.append(line[len(b"data: ") :])
    return payloads


def make_client(options: MockOptions | None = None) -> httpx.AsyncClient:
    app = create_mock_app(options or MockOptions())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(MockOptions(default_completion_tokens=7)) as c:
        yield c


# --- chat completions, in-process -------------------------------------------------------


async def test_chat_usage_matches_tokenizer_and_max_tokens(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat(max_tokens=12))
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["object"] == "chat.completion"
    content = body["choices"][0]["message"]["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == tokens.count_chat(MESSAGES)
    assert usage["completion_tokens"] == 12 == tokens.count(content)
    assert usage["total_tokens"] == usage["prompt_tokens"] + 12
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert body["choices"][0]["finish_reason"] == "length"


async def test_completion_is_deterministic_per_prompt(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/chat/completions", json=chat())).json()
    again = (await client.post("/v1/chat/completions", json=chat())).json()
    other_messages = [{"role": "user", "content": "Something else entirely."}]
    other_body = {"model": "gpt-4o-mini", "messages": other_messages}
    other = (await client.post("/v1/chat/completions", json=other_body)).json()
    text = first["choices"][0]["message"]["content"]
    assert text == again["choices"][0]["message"]["content"]
    assert text != other["choices"][0]["message"]["content"]


async def test_completion_length_sources(client: httpx.AsyncClient) -> None:
    default = (await client.post("/v1/chat/completions", json=chat())).json()
    assert default["usage"]["completion_tokens"] == 7  # MockOptions.default_completion_tokens
    assert default["choices"][0]["finish_reason"] == "stop"
    newer = chat(max_tokens=50, max_completion_tokens=4)
    assert (await client.post("/v1/chat/completions", json=newer)).json()["usage"][
        "completion_tokens"
    ] == 4
    headers = {"x-mock-completion-tokens": "23"}
    forced = await client.post("/v1/chat/completions", json=chat(max_tokens=50), headers=headers)
    body = forced.json()
    assert body["usage"]["completion_tokens"] == 23
    assert tokens.count(body["choices"][0]["message"]["content"]) == 23
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_completions_tokenize_to_their_length(client: httpx.AsyncClient) -> None:
    for n in range(1, 70):
        messages = [{"role": "user", "content": f"prompt number {n}"}]
        headers = {"x-mock-completion-tokens": str(n)}
        payload = {"model": "m", "messages": messages}
        body = (await client.post("/v1/chat/completions", json=payload, headers=headers)).json()
        assert tokens.count(body["choices"][0]["message"]["content"]) == n
        assert body["usage"]["completion_tokens"] == n


async def test_prompt_caching_and_reasoning(client: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": LONG_TEXT}]
    prompt = tokens.count_chat(messages)
    assert prompt >= 1024
    payload = {"model": "mock-reasoning", "messages": messages, "max_tokens": 9}
    body = (await client.post("/v1/chat/completions", json=payload)).json()
    usage = body["usage"]
    assert usage["prompt_tokens"] == prompt  # cached tokens are included in prompt_tokens
    assert usage["prompt_tokens_details"]["cached_tokens"] == expected_cached(prompt) > 0
    assert usage["completion_tokens"] == 9
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 4


async def test_chat_stream_in_process(client: httpx.AsyncClient) -> None:
    payload = chat(max_tokens=5, stream=True)
    response = await client.post("/v1/chat/completions", json=payload)
    assert response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(response.content)
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert all("usage" not in chunk for chunk in chunks)  # no include_usage: no usage key
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert len([text for text in contents if text]) == 5
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


# --- validation and routing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (orjson.dumps({"messages": MESSAGES}), "model"),
        (orjson.dumps({"model": "gpt-4o-mini"}), "messages"),
        (orjson.dumps({"model": "gpt-4o-mini", "messages": []}), "messages"),
        (orjson.dumps(chat(max_tokens=0)), "max_tokens"),
        (orjson.dumps(chat(max_tokens="many")), "max_tokens"),
        (orjson.dumps(chat(max_tokens=10**7)), "max_tokens"),
    ],
)
async def test_chat_rejects_bad_input(
    client: httpx.AsyncClient, payload: bytes, param: str | None
) -> None:
    response = await client.post("/v1/chat/completions", content=payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


async def test_messages_errors_use_anthropic_format(client: httpx.AsyncClient) -> None:
    payload = {"model": "claude-haiku-4-5", "messages": MESSAGES[1:]}  # no max_tokens
    response = await client.post("/v1/messages", json=payload)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    faulted = await client.post(
        "/v1/messages", json={**payload, "max_tokens": 5}, headers={"x-mock-fault": "error-429"}
    )
    assert faulted.status_code == 429
    assert faulted.json()["error"]["type"] == "rate_limit_error"


async def test_unknown_route_method_and_fault_name(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_url"
    assert (await client.get("/v1/chat/completions")).status_code == 405
    bad = await client.post("/v1/chat/completions", json=chat(), headers={"x-mock-fault": "boom"})
    assert bad.status_code == 400
    assert "x-mock-fault" in bad.json()["error"]["message"]
    for value in ("2.5", "0", "lots"):
        headers = {"x-mock-completion-tokens": value}
        rejected = await client.post("/v1/chat/completions", json=chat(), headers=headers)
        assert rejected.status_code == 400


async def test_models(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert "gpt-4o-mini" in {model["id"] for model in body["data"]}
    assert (await client.get("/v1/models/any-model")).json()["id"] == "any-model"


# --- legacy completions, embeddings, responses in-process -----------------------------


async def test_legacy_completions_plain_and_stream(client: httpx.AsyncClient) -> None:
    payload = {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time", "max_tokens": 6}
    body = (await client.post("/v1/completions", json=payload)).json()
    assert body["object"] == "text_completion"
    assert body["usage"]["prompt_tokens"] == tokens.count("Once upon a time")
    assert tokens.count(body["choices"][0]["text"]) == body["usage"]["completion_tokens"] == 6
    streamed = payload | {"stream": True, "stream_options": {"include_usage": True}}
    data = sse_data((await client.post("/v1/completions", json=streamed)).content)
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"] and c["choices"][0]["text"]]
    assert "".join(texts) == body["choices"][0]["text"]
    assert len(texts) == 6
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    tokens_prompt = payload | {"prompt": [[1, 2, 3], [4, 5]]}
    usage = (await client.post("/v1/completions", json=tokens_prompt)).json()["usage"]
    assert usage["prompt_tokens"] == 5


async def test_embeddings(client: httpx.AsyncClient) -> None:
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quarterly revenue grew"]
    payload = {"model": "text-embedding-3-small", "input": texts}
    body = (await client.post("/v1/embeddings", json=payload)).json()
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert all(len(v) == 256 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in vectors)
    assert body["usage"]["prompt_tokens"] == sum(tokens.count(t) for t in texts)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > 0.7 > 0.3 > cosine(vectors[0], vectors[2])
    again = await client.post("/v1/embeddings", json={**payload, "input": texts[0]})
    assert again.json()["data"][0]["embedding"] == vectors[0]
    small = {**payload, "dimensions": 32, "encoding_format": "base64"}
    packed = (await client.post("/v1/embeddings", json=small)).json()["data"][0]["embedding"]
    decoded = struct.unpack("<32f", base64.b64decode(packed))
    floats = await client.post("/v1/embeddings", json={**small, "encoding_format": "float"})
    assert list(decoded) == pytest.approx(floats.json()["data"][0]["embedding"], rel=1e-6)
    tokens_in = {**payload, "input": [[10, 20, 30]]}
    assert (await client.post("/v1/embeddings", json=tokens_in)).json()["usage"][
        "prompt_tokens"
    ] == 3
    bad = await client.post("/v1/embeddings", json={**payload, "dimensions": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "dimensions"


async def test_responses_plain(client: httpx.AsyncClient) -> None:
    items = [{"role": "user", "content": [{"type": "input_text", "text": LONG_TEXT}]}]
    payload = {
        "model": "mock-reasoning",
        "instructions": "Be brief.",
        "input": items,
        "max_output_tokens": 10,
    }
    body = (await client.post("/v1/responses", json=payload)).json()
    prompt = tokens.count_chat([{"role": "system", "content": "Be brief."}, *items])
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["usage"] == {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": expected_cached(prompt)},
        "output_tokens": 10,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": prompt + 10,
    }
    assert tokens.count(body["output"][0]["content"][0]["text"]) == 10


# --- faults ---------------------------------------------------------------------------


async def test_fault_headers(client: httpx.AsyncClient) -> None:
    error = await client.post(
        "/v1/chat/completions", json=chat(), headers={"x-mock-fault": "error"}
    )
    assert error.status_code == 500
    assert error.json()["error"]["type"] == "server_error"
    limited = await client.post(
        "/v1/chat/completions", json=chat(), headers={"x-mock-fault": "error-429"}
    )
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    malformed = await client.post(
        "/v1/chat/completions", json=chat(), headers={"x-mock-fault": "malformed"}
    )
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        orjson.loads(malformed.content)


async def test_stream_faults(client: httpx.AsyncClient) -> None:
    payload = chat(max_tokens=8, stream=True, stream_options={"include_usage": True})
    cut = await client.post(
        "/v1/chat/completions", json=payload, headers={"x-mock-fault": "truncate"}
    )
    data = sse_data(cut.content)
    assert b"[DONE]" not in data
    chunks = [orjson.loads(d) for d in data]
    assert all(chunk["usage"] is None for chunk in chunks)
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) == 4
    bad = await client.post(
        "/v1/chat/completions", json=payload, headers={"x-mock-fault": "malformed"}
    )
    failures = 0
    for item in sse_data(bad.content)[:-1]:
        try:
            orjson.loads(item)
        except orjson.JSONDecodeError:
            failures += 1
    assert failures == 1


async def test_fault_rates_are_seeded() -> None:
    async def statuses(seed: int) -> list[int]:
        async with make_client(MockOptions(error_rate=0.5, seed=seed)) as c:
            return [
                (await c.post("/v1/chat/completions", json=chat())).status_code for _ in range(40)
            ]

    first, again, other = await statuses(1), await statuses(1), await statuses(2)
    assert first == again
    assert first != other
    assert set(first) == {200, 500}
    assert 8 <= first.count(500) <= 32
    async with make_client(MockOptions(error_rate=0.0, truncate_rate=0.0)) as c:
        assert (await c.post("/v1/chat/completions", json=chat())).status_code == 200
    with pytest.raises(ValueError):
        MockOptions(error_rate=0.7, timeout_rate=0.5)


async def test_latency_slow_and_timeout() -> None:
    async with make_client(MockOptions(latency_ms=150, timeout_seconds=0.3)) as c:
        started = time.perf_counter()
        assert (await c.post("/v1/chat/completions", json=chat())).status_code == 200
        assert time.perf_counter() - started >= 0.14
        started = time.perf_counter()
        slow = await c.post(
            "/v1/chat/completions",
            json=chat(max_tokens=3),
            headers={"x-mock-fault": "slow", "x-mock-latency-ms": "0"},
        )
        assert slow.status_code == 200
        assert time.perf_counter() - started >= 0.28  # 3 tokens at 10 tokens/s
        started = time.perf_counter()
        timed_out = await c.post(
            "/v1/chat/completions", json=chat(), headers={"x-mock-fault": "timeout"}
        )
        assert timed_out.status_code == 504
        assert time.perf_counter() - started >= 0.29 + 0.14


async def call_then_leave(options: MockOptions, payload: dict[str, Any], fault: str) -> float:
    """Call the app directly with a client that disconnects after 0.1 s; seconds taken."""
    app = create_mock_app(options)
    messages = [{"type": "http.request", "body": orjson.dumps(payload), "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(0.1)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"x-mock-fault", fault.encode())] if fault else [],
    }
    started = time.perf_counter()
    await asyncio.wait_for(app(scope, receive, send), 5)
    return time.perf_counter() - started


async def test_stalls_and_paced_streams_end_when_the_client_leaves() -> None:
    # A 3600 s stall and a 5 s paced stream both end with the client, not on their own.
    assert await call_then_leave(MockOptions(), chat(), "timeout") < 1
    paced = MockOptions(tokens_per_second=10)
    assert await call_then_leave(paced, chat(max_tokens=50, stream=True), "") < 1


def test_cli_rejects_rates_over_one() -> None:
    result = CliRunner().invoke(
        mock_upstream_command, ["--error-rate", "0.8", "--timeout-rate", "0.5"]
    )
    assert result.exit_code == 2
    assert "at most 1" in result.output


# --- a real server and the real SDKs --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    port = _free_port()
    src = str(Path(tokenomy.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "tokenomy.mock", "--port", str(port)]
    command += ["--server", request.param, "--log-level", "warning", "--tokens-per-second", "400"]
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mock server ({request.param}) did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=10)


def test_openai_sdk_chat_plain_and_stream(server_url: str) -> None:
    sdk = openai_client(server_url)
    plain = sdk.chat.completions.create(model="gpt-4o-mini", messages=SDK_MESSAGES, max_tokens=6)
    assert plain.usage is not None
    assert plain.usage.prompt_tokens == tokens.count_chat(MESSAGES)
    assert plain.usage.completion_tokens == 6
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=SDK_MESSAGES,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == last.usage.completion_tokens == 20
    assert last.usage.prompt_tokens == tokens.count_chat(MESSAGES)
    assert tokens.count("".join(pieces)) == 20


def test_openai_sdk_embeddings_and_responses(server_url: str) -> None:
    sdk = openai_client(server_url)
    embedded = sdk.embeddings.create(
        model="text-embedding-3-small", input=["alpha beta", "gamma"], dimensions=48
    )
    assert [len(item.embedding) for item in embedded.data] == [48, 48]
    assert embedded.usage.prompt_tokens == tokens.count("alpha beta") + tokens.count("gamma")
    plain = sdk.responses.create(model="gpt-4.1-mini", input="Say hi.", max_output_tokens=5)
    assert plain.usage is not None and plain.usage.output_tokens == 5
    assert plain.usage.input_tokens == tokens.count_chat([{"role": "user", "content": "Say hi."}])
    assert tokens.count(plain.output_text) == 5
    events = list(
        sdk.responses.create(
            model="gpt-4.1-mini", input="Say hi.", instructions="Be kind.", stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    completed = events[-1]
    assert completed.type == "response.completed"
    usage = completed.response.usage
    assert usage is not None and len(deltas) == usage.output_tokens == 16
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert "".join(deltas) == completed.response.output_text


def test_anthropic_sdk_messages(server_url: str) -> None:
    sdk = anthropic.Anthropic(base_url=server_url, api_key="x", max_retries=0, timeout=10)
    messages: Any = [{"role": "user", "content": LONG_TEXT}]
    total = tokens.count_chat([{"role": "system", "content": "Be brief."}, *messages])
    cached = expected_cached(total)
    plain = sdk.messages.create(
        model="claude-haiku-4-5", system="Be brief.", messages=messages, max_tokens=8
    )
    assert plain.usage.cache_read_input_tokens == cached > 0
    assert plain.usage.input_tokens == total - cached  # Anthropic excludes cached tokens
    assert plain.usage.output_tokens == 8
    assert plain.stop_reason == "max_tokens"
    with sdk.messages.stream(
        model="claude-haiku-4-5", system="Be brief.", messages=messages, max_tokens=12
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == final.usage.output_tokens == 12
    assert final.usage.input_tokens == total - cached
    assert final.usage.cache_read_input_tokens == cached
    raw = sdk.messages.create(
        model="claude-haiku-4-5", messages=messages, max_tokens=2, stream=True
    )
    kinds = [event.type for event in raw]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_faults_on_the_wire(server_url: str) -> None:
    sdk = openai_client(server_url)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=SDK_MESSAGES,
            extra_headers={"x-mock-fault": "error-429"},
        )
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=SDK_MESSAGES,
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-fault": "truncate"},
    )
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 5
    url = server_url + "/v1/chat/completions"
    with pytest.raises(httpx.RemoteProtocolError):  # the connection drops mid-body
        httpx.post(url, json=chat(), headers={"x-mock-fault": "truncate"}, timeout=5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=chat(), headers={"x-mock-fault": "timeout"}, timeout=0.5)
    started = time.perf_counter()  # the server paces tokens at 400/s
    paced = httpx.post(url, json=chat(max_tokens=80, stream=True), timeout=5)
    assert time.perf_counter() - started >= 0.18
    assert len(sse_data(paced.content)) == 80 + 3  # role, tokens, finish, [DONE]
    assert httpx.get(server_url + "/health", timeout=5).status_code == 200
