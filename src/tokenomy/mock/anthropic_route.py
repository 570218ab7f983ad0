"""Anthropic Messages API: the message object and its SSE event stream.

Anthropic's ``input_tokens`` excludes tokens read from the prompt cache; those are in
``cache_read_input_tokens``. As in the real stream, ``message_start`` reports a provisional
``output_tokens`` of 1 and ``message_delta`` the final count.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.mock.streaming import StreamPlan
from tokenomy.mock.text import Generation


def usage(generation: Generation, output_tokens: int) -> dict[str, Any]:
    cached = generation.cached_tokens
    return {
        "input_tokens": generation.prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _message(generation: Generation, request_id: str, done: bool) -> dict[str, Any]:
    return {
        "id": request_id,
        "type": "message",
        "role": "assistant",
        "model": generation.model,
        "content": [{"type": "text", "text": generation.text}] if done else [],
        "stop_reason": _stop_reason(generation) if done else None,
        "stop_sequence": None,
        "usage": usage(generation, generation.completion_tokens if done else 1),
    }


def _stop_reason(generation: Generation) -> str:
    return "max_tokens" if generation.hit_limit else "end_turn"


def message_body(generation: Generation, request_id: str, created: int) -> bytes:
    return orjson.dumps(_message(generation, request_id, done=True))


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return (
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"
    )


def message_stream(generation: Generation, request_id: str, created: int) -> StreamPlan:
    head = [
        _event("message_start", {"message": _message(generation, request_id, done=False)}),
        _event("ping", {}),
        _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    tokens = [
        _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        for piece in generation.pieces
    ]
    tail = [
        _event("content_block_stop", {"index": 0}),
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": _stop_reason(generation), "stop_sequence": None},
                "usage": {"output_tokens": generation.completion_tokens},
            },
        ),
        _event("message_stop", {}),
    ]
    malformed = b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
    return StreamPlan(head=head, tokens=tokens, tail=tail, malformed=malformed)
