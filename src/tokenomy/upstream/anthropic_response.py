"""Anthropic Messages -> OpenAI Chat Completions: responses, usage and errors (pure).

- text blocks are joined into ``message.content``; ``tool_use`` blocks become
  ``tool_calls`` (``arguments`` is the JSON of ``input``); thinking and server-tool blocks
  have no OpenAI equivalent and are left out;
- ``stop_reason``: ``end_turn``/``stop_sequence``/``pause_turn`` -> ``stop``,
  ``max_tokens``/``model_context_window_exceeded`` -> ``length``, ``tool_use`` ->
  ``tool_calls``, ``refusal`` -> ``content_filter``;
- usage through :func:`tokenomy.usage.from_anthropic` (cache reads and writes are part of
  ``prompt_tokens``), thinking tokens reported as reasoning tokens;
- errors ``{"type": "error", "error": {"type", "message"}}`` -> OpenAI error bodies.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.errors import UpstreamError
from tokenomy.usage import Usage, from_anthropic

__all__ = [
    "anthropic_error_to_openai",
    "anthropic_usage",
    "finish_reason",
    "from_anthropic_response",
    "openai_status_for",
    "openai_usage",
]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    """Anthropic ``stop_reason`` -> OpenAI ``finish_reason``."""
    return _FINISH_REASONS.get(stop_reason or "", "stop")


def anthropic_usage(usage: dict[str, Any] | None) -> Usage:
    """:func:`tokenomy.usage.from_anthropic`, tolerating a missing usage object."""
    return from_anthropic(usage if isinstance(usage, dict) else {})


def openai_usage(usage: Usage) -> dict[str, Any]:
    """A normalized :class:`Usage` in OpenAI's chat ``usage`` shape."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def from_anthropic_response(
    resp: dict[str, Any], model_name: str, request_id: str, created: int
) -> dict[str, Any]:
    """Translate a Messages API response body into an OpenAI ``chat.completion``."""
    content = resp.get("content")
    if resp.get("type") != "message" or not isinstance(content, list):
        raise UpstreamError("The upstream returned a body that is not an Anthropic message.")
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        # thinking, redacted_thinking and server tool blocks have no OpenAI equivalent
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(resp.get("stop_reason")),
    }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": [choice],
        "usage": openai_usage(anthropic_usage(resp.get("usage"))),
        "system_fingerprint": None,
    }


# Anthropic error type -> (OpenAI error type, OpenAI error code)
_ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("authentication_error", "upstream_authentication_failed"),
    "permission_error": ("permission_error", "upstream_permission_denied"),
    "not_found_error": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "billing_error": ("insufficient_quota", "upstream_billing_error"),
    "rate_limit_error": ("rate_limit_exceeded", "rate_limit_exceeded"),
    "timeout_error": ("timeout", "upstream_timeout"),
    "api_error": ("server_error", "upstream_error"),
    "overloaded_error": ("overloaded", "upstream_overloaded"),
}
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_status_for(status: int) -> int:
    """The status to answer with for an Anthropic status (529 is not a standard code)."""
    return 503 if status == 529 else status


def anthropic_error_to_openai(status: int, body: bytes) -> dict[str, Any]:
    """An Anthropic error response (status and raw body) as an OpenAI error body."""
    kind: str | None = None
    message: str | None = None
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
    if kind not in _ERRORS:
        kind = _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    type_, code = _ERRORS[kind]
    if message is None:
        text = body[:200].decode("utf-8", "replace").strip()
        message = f"Upstream error (HTTP {status})" + (f": {text}" if text else ".")
    elif kind == "invalid_request_error" and "prompt is too long" in message.lower():
        code = "context_length_exceeded"
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}
