"""Sending a server-sent-event stream with pacing and stream faults.

Every route renders its stream as a :class:`StreamPlan` (events before the tokens, one
event per completion token, closing events); this module decides what actually goes on
the wire: everything in one write when unpaced (fast), one write per token when paced,
half the token events and no closing events when truncated, one extra non-JSON event when
malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from tokenomy.mock._asgi import SSE_HEADERS, Receive, Send, wait_disconnect
from tokenomy.mock.options import Fault


@dataclass(frozen=True, slots=True)
class StreamPlan:
    head: list[bytes]
    tokens: list[bytes]
    tail: list[bytes]  # finish, usage and terminator events: dropped on truncation
    malformed: bytes  # an event whose data is not JSON


def _events(plan: StreamPlan, fault: Fault | None) -> tuple[list[bytes], list[bytes], list[bytes]]:
    tokens, tail = plan.tokens, plan.tail
    if fault is Fault.TRUNCATE:
        tokens, tail = tokens[: len(tokens) // 2], []
    elif fault is Fault.MALFORMED:
        at = min(1, len(tokens))
        tokens = [*tokens[:at], plan.malformed, *tokens[at:]]
    return plan.head, tokens, tail


async def send_stream(
    send: Send,
    receive: Receive,
    plan: StreamPlan,
    fault: Fault | None,
    tokens_per_second: float | None,
) -> None:
    head, tokens, tail = _events(plan, fault)
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    if tokens_per_second is None:
        await send({"type": "http.response.body", "body": b"".join((*head, *tokens, *tail))})
        return
    loop = asyncio.get_running_loop()
    gone = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await send({"type": "http.response.body", "body": b"".join(head), "more_body": True})
        start = loop.time()
        interval = 1.0 / tokens_per_second
        for index, event in enumerate(tokens, 1):
            delay = start + index * interval - loop.time()
            if delay > 0:
                await asyncio.wait({gone}, timeout=delay)
            if gone.done():
                return
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"".join(tail)})
    except OSError:  # the client went away between two writes (ASGI >= 2.4 servers)
        return
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
