"""OpenAI chat completions and legacy completions: plain bodies and SSE stream plans.

Streams are shaped like OpenAI's: a first chunk with the role, one chunk per completion
token, a chunk with ``finish_reason``, and, with ``stream_options.include_usage``,
``"usage": null`` on every chunk plus a final ``"choices": []`` chunk carrying the usage,
then ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.mock.streaming import StreamPlan
from tokenomy.mock.text import Generation

DONE = b"data: [DONE]\n\n"
FINGERPRINT = "fp_mock"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _finish(generation: Generation) -> str:
    return "length" if generation.hit_limit else "stop"


def malformed_event(request_id: str) -> bytes:
    return b'data: {"id": "' + request_id.encode() + b'", "choices": [{"delta": {"content": \n\n'


def chat_body(generation: Generation, request_id: str, created: int) -> bytes:
    return orjson.dumps(
        {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": generation.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": generation.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": _finish(generation),
                }
            ],
            "usage": generation.openai_usage(),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


def _chunk_base(generation: Generation, request_id: str, created: int, kind: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": request_id,
        "object": kind,
        "created": created,
        "model": generation.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [],
    }
    if generation.include_usage:
        base["usage"] = None
    return base


def _usage_tail(base: dict[str, Any], generation: Generation) -> list[bytes]:
    if not generation.include_usage:
        return [DONE]
    return [_sse({**base, "choices": [], "usage": generation.openai_usage()}), DONE]


def chat_stream(generation: Generation, request_id: str, created: int) -> StreamPlan:
    base = _chunk_base(generation, request_id, created, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    return StreamPlan(
        head=[chunk({"role": "assistant", "content": "", "refusal": None})],
        tokens=[chunk({"content": piece}) for piece in generation.pieces],
        tail=[chunk({}, _finish(generation)), *_usage_tail(base, generation)],
        malformed=malformed_event(request_id),
    )


def completion_body(generation: Generation, request_id: str, created: int) -> bytes:
    return orjson.dumps(
        {
            "id": request_id,
            "object": "text_completion",
            "created": created,
            "model": generation.model,
            "choices": [
                {
                    "text": generation.text,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": _finish(generation),
                }
            ],
            "usage": generation.openai_usage(),
            "system_fingerprint": FINGERPRINT,
        }
    )


def completion_stream(generation: Generation, request_id: str, created: int) -> StreamPlan:
    base = _chunk_base(generation, request_id, created, "text_completion")

    def chunk(text: str, finish: str | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    return StreamPlan(
        head=[],
        tokens=[chunk(piece) for piece in generation.pieces],
        tail=[chunk("", _finish(generation)), *_usage_tail(base, generation)],
        malformed=malformed_event(request_id),
    )
