"""A complete chat answer, sent as the stream the client asked for.

Used where the gateway holds a whole answer before the client sees any of it (a cascade
that had to judge the cheap model's answer first; a cached answer): the client asked for a
stream, so it gets valid ``chat.completion.chunk`` events and ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.gateway.asgi import EVENT_STREAM, Headers, Send

DONE = b"data: [DONE]\n\n"


def cost_comment(cost: str) -> bytes:
    """The final cost as an SSE comment (SDKs ignore it), sent just before ``[DONE]``."""
    return b": x-tokenomy-cost-usd=" + cost.encode() + b"\n\n"


async def send_as_stream(
    send: Send, answer: dict[str, Any], include_usage: bool, cost: str, headers: Headers
) -> None:
    """The whole answer as one SSE body; the cost comment precedes ``[DONE]`` as in a
    relayed stream."""
    start = [EVENT_STREAM, (b"cache-control", b"no-cache"), *headers]
    await send({"type": "http.response.start", "status": 200, "headers": start})
    frames = completion_chunks(answer, include_usage)
    body = b"".join([*frames, cost_comment(cost), DONE])
    await send({"type": "http.response.body", "body": body})


def completion_chunks(answer: dict[str, Any], include_usage: bool) -> list[bytes]:
    """SSE frames of a ``chat.completion``: role and content, then each choice's finish
    reason, then (when asked) the usage chunk, then ``[DONE]``."""
    head = {
        "id": answer.get("id", ""),
        "object": "chat.completion.chunk",
        "created": answer.get("created", 0),
        "model": answer.get("model", ""),
        "system_fingerprint": answer.get("system_fingerprint"),
    }
    frames: list[bytes] = []
    finishes = []
    for choice in answer.get("choices") or ():
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        for name in ("content", "refusal"):
            if message.get(name) is not None:
                delta[name] = message[name]
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {"index": i, **call} for i, call in enumerate(message["tool_calls"])
            ]
        index = choice.get("index", 0)
        frames.append(_frame({**head, "choices": [_choice(index, delta, None)]}))
        finishes.append(_choice(index, {}, choice.get("finish_reason")))
    for finish in finishes:
        frames.append(_frame({**head, "choices": [finish]}))
    if include_usage and answer.get("usage") is not None:
        frames.append(_frame({**head, "choices": [], "usage": answer["usage"]}))
    return frames


def _choice(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"
