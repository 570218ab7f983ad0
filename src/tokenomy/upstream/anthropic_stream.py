"""Anthropic Messages SSE stream -> OpenAI ``chat.completion.chunk`` objects.

Feed each upstream event (name and parsed data, or raw bytes with :meth:`feed_sse`) to an
:class:`AnthropicStreamTranslator`; it returns the chunks to send to the client:

- ``message_start`` -> the first chunk, ``delta: {"role": "assistant", "content": ""}``;
- ``text_delta`` -> ``delta.content``;
- a ``tool_use`` block -> ``delta.tool_calls[{index, id, type, function: {name,
  arguments: ""}}]``, then each ``input_json_delta`` -> an ``arguments`` fragment (``"{}"``
  for a call without input, so that clients can always parse the arguments);
- ``message_delta`` -> a chunk with ``finish_reason`` (once);
- ``message_stop`` -> ``done``; with ``include_usage`` a last chunk with ``choices: []`` and
  ``usage`` (and ``usage: null`` on every other chunk, as OpenAI does);
- ``ping``, thinking, citations and unknown events -> nothing; ``error`` -> raises
  :class:`~tokenomy.errors.UpstreamError`.

:attr:`AnthropicStreamTranslator.usage` is the billing truth so far: input (with cache
reads and writes) from ``message_start``, output from the latest ``message_delta``
(cumulative). :attr:`~AnthropicStreamTranslator.usage_final` says whether a
``message_delta`` was seen; when it was not, the output count is partial.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.errors import UpstreamError
from tokenomy.upstream.anthropic_response import (
    anthropic_error_to_openai,
    anthropic_usage,
    finish_reason,
    openai_usage,
)
from tokenomy.usage import Usage

__all__ = ["AnthropicStreamTranslator"]

# Same code as an OpenAI stream's bad chunk: answered, probably billed, not retried.
_MALFORMED = "The upstream sent a malformed stream event."


class AnthropicStreamTranslator:
    """Translate one Anthropic message stream into OpenAI chat completion chunks."""

    def __init__(self, model_name: str, request_id: str, created: int, include_usage: bool) -> None:
        self.model_name = model_name
        self.request_id = request_id
        self.created = created
        self.include_usage = include_usage
        self.done = False
        self.finish_reason: str | None = None
        self._started = False
        self._usage: dict[str, Any] | None = None
        self._usage_final = False
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._tool_has_arguments: dict[int, bool] = {}
        self._delivered: list[str] = []

    @property
    def usage(self) -> Usage | None:
        """Normalized usage so far; ``None`` before ``message_start``."""
        return None if self._usage is None else anthropic_usage(self._usage)

    @property
    def usage_final(self) -> bool:
        """True once a ``message_delta`` carried the final (cumulative) usage."""
        return self._usage_final

    @property
    def delivered_text(self) -> str:
        """Text and tool-call arguments sent so far (to estimate usage of a cut stream)."""
        return "".join(self._delivered)

    def feed_sse(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        """Like :meth:`feed`, from an :class:`~tokenomy.upstream.sse.SSEParser` event."""
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(_MALFORMED, code="upstream_malformed") from exc
        if not isinstance(parsed, dict):
            raise UpstreamError(_MALFORMED, code="upstream_malformed")
        return self.feed(event or str(parsed.get("type", "")), parsed)

    def feed(self, event_type: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Consume one upstream event; return the OpenAI chunks to emit, in order."""
        if event_type == "message_start":
            return self._message_start(data)
        if event_type == "content_block_start":
            return self._block_start(data)
        if event_type == "content_block_delta":
            return self._block_delta(data)
        if event_type == "content_block_stop":
            return self._block_stop(data)
        if event_type == "message_delta":
            return self._message_delta(data)
        if event_type == "message_stop":
            return self._message_stop()
        if event_type == "error":
            self._raise(data)
        return []  # ping, and event types added after this was written

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_name,
            "system_fingerprint": None,
            "choices": [choice],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = data.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        if self._usage is None:
            self._usage = dict(usage) if isinstance(usage, dict) else {}
        return self._start()

    def _content(self, text: Any) -> list[dict[str, Any]]:
        if not isinstance(text, str) or not text:
            return []
        self._delivered.append(text)
        return [*self._start(), self._chunk({"content": text})]

    def _arguments(self, index: int, fragment: str) -> list[dict[str, Any]]:
        self._tool_has_arguments[index] = True
        self._delivered.append(fragment)
        call = {"index": self._tools[index], "function": {"arguments": fragment}}
        return [self._chunk({"tool_calls": [call]})]

    def _block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        if block.get("type") == "text":
            return self._content(block.get("text"))
        if block.get("type") != "tool_use":
            return []  # thinking, redacted_thinking, server tools: nothing to show
        self._tools[index] = len(self._tools)
        self._tool_has_arguments[index] = False
        self._delivered.append(str(block.get("name", "")))
        call = {
            "index": self._tools[index],
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        chunks = [*self._start(), self._chunk({"tool_calls": [call]})]
        tool_input = block.get("input")
        if isinstance(tool_input, dict) and tool_input:  # complete input given up front
            chunks += self._arguments(index, orjson.dumps(tool_input).decode())
        return chunks

    def _block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta")
        index = data.get("index")
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta":
            return self._content(delta.get("text"))
        if delta.get("type") == "input_json_delta" and index in self._tools:
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:
                return self._arguments(index, fragment)
        return []  # thinking_delta, signature_delta, citations_delta

    def _block_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = data.get("index")
        if isinstance(index, int) and self._tool_has_arguments.get(index) is False:
            return self._arguments(index, "{}")
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage = self._usage or {}
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            self._usage_final = True
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is None or self.finish_reason is not None:
            return []
        return self._finish(finish_reason(stop_reason))

    def _finish(self, reason: str) -> list[dict[str, Any]]:
        self.finish_reason = reason
        return [*self._start(), self._chunk({}, reason)]

    def _message_stop(self) -> list[dict[str, Any]]:
        if self.done:
            return []
        self.done = True
        chunks = [] if self.finish_reason is not None else self._finish(finish_reason(None))
        if self.include_usage:
            usage = self.usage or Usage()
            chunks.append(
                {
                    "id": self.request_id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model_name,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": openai_usage(usage),
                }
            )
        return chunks

    def _raise(self, data: dict[str, Any]) -> None:
        body = anthropic_error_to_openai(500, orjson.dumps(data))["error"]
        raise UpstreamError(f"The upstream failed mid-stream: {body['message']}", code=body["code"])
