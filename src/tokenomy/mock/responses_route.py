"""OpenAI Responses API: the response object and its typed event stream.

The stream is ``response.created``, ``response.in_progress``, the output item and content
part openings, one ``response.output_text.delta`` per completion token, the closings and
``response.completed`` whose ``response.usage`` holds the usage. The status is always
``completed`` (also when the completion stopped at ``max_output_tokens``).
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.mock.streaming import StreamPlan
from tokenomy.mock.text import Generation


def usage(generation: Generation) -> dict[str, Any]:
    return {
        "input_tokens": generation.prompt_tokens,
        "input_tokens_details": {"cached_tokens": generation.cached_tokens},
        "output_tokens": generation.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": generation.reasoning_tokens},
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


def _message(item_id: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [_part(text)]
    status = "in_progress" if text is None else "completed"
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def response_object(
    generation: Generation, request_id: str, created: int, *, done: bool = True
) -> dict[str, Any]:
    item_id = "msg_" + request_id.removeprefix("resp_")
    return {
        "id": request_id,
        "object": "response",
        "created_at": created,
        "status": "completed" if done else "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": generation.model,
        "output": [_message(item_id, generation.text)] if done else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage(generation) if done else None,
        "user": None,
        "metadata": {},
    }


def response_body(generation: Generation, request_id: str, created: int) -> bytes:
    return orjson.dumps(response_object(generation, request_id, created))


def response_stream(generation: Generation, request_id: str, created: int) -> StreamPlan:
    item_id = "msg_" + request_id.removeprefix("resp_")
    sequence = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    where: dict[str, Any] = {"item_id": item_id, "output_index": 0, "content_index": 0}
    pending = response_object(generation, request_id, created, done=False)
    head = [
        event("response.created", response=pending),
        event("response.in_progress", response=pending),
        event("response.output_item.added", output_index=0, item=_message(item_id, None)),
        event("response.content_part.added", **where, part=_part("")),
    ]
    tokens = [
        event("response.output_text.delta", **where, delta=piece, logprobs=[])
        for piece in generation.pieces
    ]
    text = generation.text
    tail = [
        event("response.output_text.done", **where, text=text, logprobs=[]),
        event("response.content_part.done", **where, part=_part(text)),
        event("response.output_item.done", output_index=0, item=_message(item_id, text)),
        event("response.completed", response=response_object(generation, request_id, created)),
    ]
    malformed = b'event: response.output_text.delta\ndata: {"type": "response.output_te\n\n'
    return StreamPlan(head=head, tokens=tokens, tail=tail, malformed=malformed)
