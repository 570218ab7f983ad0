"""Relaying a server-sent-event stream while metering it.

Every upstream event is parsed (a few µs) so that usage is read from the final usage
chunk, the text delivered so far is known if the stream is cut short, and malformed
chunks are caught instead of passed on. ``[DONE]`` is held back until the request's
ledger event is committed: a client that saw the end of its stream is in the ledger.
The response headers go out before the cost is known, so ``x-tokenomy-cost-usd`` says
``pending`` and the final cost follows as an SSE comment (``: x-tokenomy-cost-usd=...``)
just before ``[DONE]``, which SDKs ignore; the ledger has it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

import aiohttp
import orjson

from tokenomy.errors import TokenomyError, UpstreamError
from tokenomy.gateway.asgi import EVENT_STREAM, Receive, Send
from tokenomy.gateway.call import Call
from tokenomy.gateway.fallback import serve_with_fallbacks
from tokenomy.gateway.proxy import fail, record
from tokenomy.gateway.replay import DONE, cost_comment
from tokenomy.gateway.state import Gateway
from tokenomy.gateway.upstream_call import client_wants_usage, rejection, upstream_request
from tokenomy.upstream.client import UpstreamClient, read_body
from tokenomy.upstream.sse import SSEParser
from tokenomy.usage import Usage


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class _Relay:
    """State of one relayed stream."""

    def __init__(self, call: Call, translator: Any) -> None:
        self.call = call
        self.translator = translator
        self.usage: Usage | None = None
        self.texts: list[str] = []
        self.saw_done = False
        self.failure: TokenomyError | None = None
        self.client_wants_usage = client_wants_usage(call)
        # A chat stream whose answer will be cached: its head and finish reason, kept
        # while it passes; tool calls or several choices make it not worth rebuilding.
        self.assembling = call.cache_write is not None and call.endpoint.name == "chat.completions"
        self.head: dict[str, Any] = {}
        self.finish_reason: str | None = None

    def frames(self, name: str | None, data: bytes) -> list[bytes]:
        """The frames to send the client for one upstream event."""
        if self.translator is not None:
            return self._translated(name, data)
        if data == b"[DONE]":
            self.saw_done = True
            return []
        chunk = orjson.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("chunk is not an object")
        endpoint = self.call.endpoint
        if endpoint.terminal_events and chunk.get("type") in endpoint.terminal_events:
            self.saw_done = True
        usage = endpoint.stream_usage_of(chunk)
        if usage is not None:
            self.usage = usage
            asked_by_us = endpoint.wants_stream_usage_option and not self.client_wants_usage
            if asked_by_us and not chunk.get("choices"):
                return []  # we asked for the usage chunk; the client did not
        self.texts.append(endpoint.delta_text_of(chunk))
        if self.assembling:
            self._observe(chunk)
        if name:
            return [b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"]
        return [b"data: " + data + b"\n\n"]

    def _translated(self, name: str | None, data: bytes) -> list[bytes]:
        chunks = self.translator.feed_sse(name, data)
        if self.translator.usage_final:  # message_start's output count is provisional
            self.usage = self.translator.usage
        if self.translator.done:
            self.saw_done = True
        out = []
        for chunk in chunks:
            self.texts.append(self.call.endpoint.delta_text_of(chunk))
            if self.assembling:
                self._observe(chunk)
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return out

    def _observe(self, chunk: dict[str, Any]) -> None:
        if not self.head:
            self.head = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if choice.get("index", 0) != 0 or delta.get("tool_calls") or delta.get("function_call"):
                self.assembling = False
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def assembled(self, usage: Usage) -> bytes | None:
        """The stream as the plain ``chat.completion`` it amounts to (for the cache)."""
        if not self.assembling or self.finish_reason is None:
            return None
        message = {"role": "assistant", "content": "".join(self.texts)}
        return orjson.dumps(
            {
                **self.head,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
                "usage": {
                    "prompt_tokens": usage.input_tokens,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens,
                },
            }
        )

    def final_usage(self) -> tuple[Usage, bool]:
        """Reported usage is billing truth (even when the end marker never came); without
        it, count what was delivered and flag the event estimated."""
        if self.usage is not None:
            return self.usage, False
        estimate = self.call.estimated_usage("".join(self.texts))
        partial = self.translator.usage if self.translator is not None else None
        if partial is not None:  # an Anthropic stream cut before its final count: the
            # input is known exactly, the output is what was delivered
            output = max(partial.output_tokens, estimate.output_tokens)
            estimate = dataclasses.replace(partial, output_tokens=output)
        return estimate, True


def _translator(call: Call, kind: str) -> Any:
    if kind != "anthropic":
        return None
    from tokenomy.upstream.anthropic_format import AnthropicStreamTranslator

    return AnthropicStreamTranslator(
        call.model.name, call.request_id, int(time.time()), client_wants_usage(call)
    )


async def relay_stream(gateway: Gateway, call: Call, receive: Receive, send: Send) -> None:
    async def attempt() -> tuple[UpstreamClient, aiohttp.ClientResponse]:
        client, path, body = upstream_request(gateway, call, stream=True)
        response = await client.post(path, body)
        if response.status >= 400:
            try:
                raw = await read_body(response, client.name)
            except UpstreamError:
                raw = b""
            raise rejection(client, response.status, raw, response.headers)
        return client, response

    try:
        client, response = await serve_with_fallbacks(gateway, call, attempt)
    except TokenomyError as exc:
        return await fail(gateway, call, send, exc)

    relay = _Relay(call, _translator(call, client.kind))
    headers = [EVENT_STREAM, (b"cache-control", b"no-cache"), *call.headers("pending")]
    if call.cache_write is not None:
        headers.append((b"x-tokenomy-cache", b"miss"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    disconnected = False
    parser = SSEParser()
    try:
        async for piece in _pieces(response, parser):
            out = [frame for name, data in piece for frame in relay.frames(name, data)]
            if not out:
                continue
            if watcher.done():
                disconnected = True
                break
            if call.ttft_ms is None:
                call.ttft_ms = (time.perf_counter() - call.started) * 1000
            try:
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
            except Exception:
                disconnected = True
                break
    except (aiohttp.ClientError, TimeoutError):
        relay.failure = UpstreamError(f"upstream {client.name!r} broke off the stream")
    except ValueError:
        relay.failure = UpstreamError(
            f"upstream {client.name!r} sent a malformed stream chunk", code="upstream_malformed"
        )
    except UpstreamError as exc:  # an error event inside the stream
        relay.failure = exc
    finally:
        watcher.cancel()
        if disconnected or relay.failure is not None or not relay.saw_done:
            response.close()  # do not reuse a connection in an unknown state
        else:
            response.release()
    if relay.failure is None and not relay.saw_done and not disconnected:
        relay.failure = UpstreamError(
            f"upstream {client.name!r} ended the stream early", code="upstream_truncated"
        )
    await _finish(gateway, call, relay, send, disconnected)


async def _pieces(response: aiohttp.ClientResponse, parser: SSEParser) -> Any:
    """Upstream events in the batches they arrive in, then any unterminated last event."""
    async for piece in response.content.iter_any():
        events = parser.feed(piece)
        if events:
            yield events
    tail = parser.flush()
    if tail:
        yield tail


async def _finish(
    gateway: Gateway, call: Call, relay: _Relay, send: Send, disconnected: bool
) -> None:
    usage, estimated = relay.final_usage()
    call.completion_text.append("".join(relay.texts))
    failure = relay.failure
    status = 499 if disconnected else (failure.status if failure else 200)
    event, cost = call.event(
        usage,
        status=status,
        estimated=estimated,
        error="client disconnected" if disconnected else (failure.message if failure else None),
        stream=True,
    )
    try:
        await record(gateway, call, event)
        recorded = True
    except Exception:
        recorded = False
    if disconnected:
        return
    if not recorded:
        failure = UpstreamError("the gateway could not record this request's usage")
    tail = cost_comment(cost)
    if failure is not None:
        tail += b"data: " + failure.json() + b"\n\n"
    elif relay.translator is not None or not call.endpoint.terminal_events:
        tail += DONE
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    if failure is None and not estimated and gateway.cache is not None:
        body = relay.assembled(usage)
        if body is not None:
            await gateway.cache.store(call, body, usage)
