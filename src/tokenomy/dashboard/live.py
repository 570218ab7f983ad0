"""Server-sent events: every committed ledger event, live, to each open dashboard.

Each connected page gets a bounded asyncio queue fed by a listener on
``Gateway.listeners`` (called on the event loop right after a commit, so it only
enqueues; a full queue drops the event and counts it, so a slow page never slows the
request path). The stream sends what queued up as one ``usage`` message (at most every
``interval`` seconds), a comment as keep-alive, and ends after ``lifetime`` seconds with
a ``retry`` hint: the browser reconnects at once, and a server that stops is never held
open by a forgotten tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from tokenomy.gateway.asgi import Receive, Scope, Send
from tokenomy.ledger import UsageEvent
from tokenomy.money import from_pico, usd_str

QUEUE_SIZE = 1000
BATCH = 200
KEEPALIVE_S = 15.0


def event_record(event: UsageEvent) -> dict[str, Any]:
    """What a page shows of an event: no prompt or completion text, ever."""
    usage = event.usage
    return {
        "id": event.id,
        "ts_ms": event.ts_ms,
        "key_id": event.key_id,
        "user": event.user,
        "team": event.team,
        "department": event.department,
        "project": event.project,
        "environment": event.environment,
        "workflow": event.workflow,
        "endpoint": event.endpoint,
        "requested_model": event.requested_model,
        "model": event.model,
        "tier": event.tier,
        "route_reason": event.route_reason,
        "status": event.status,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": usd_str(from_pico(event.cost_pico)),
        "latency_ms": round(event.latency_ms, 1),
    }


class EventStream(Response):
    """An ASGI response streaming ledger events until the client leaves."""

    media_type = "text/event-stream"

    def __init__(
        self,
        listeners: list[Callable[[UsageEvent], None]],
        interval: float = 0.25,
        lifetime: float = 30.0,
    ) -> None:
        super().__init__(status_code=200)
        self.listeners = listeners
        self.interval = interval
        self.lifetime = lifetime
        self.queue: asyncio.Queue[UsageEvent] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: UsageEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.listeners.append(self.offer)
        left: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await self._body(send, b"retry: 1000\nevent: hello\ndata: {}\n\n")
            await self._pump(send, left)
            await self._body(send, b"", more=False)
        finally:
            with contextlib.suppress(ValueError):
                self.listeners.remove(self.offer)
            left.cancel()

    async def _pump(self, send: Send, left: asyncio.Future[Any]) -> None:
        deadline = time.monotonic() + self.lifetime
        getter: asyncio.Future[Any] | None = None
        try:
            while time.monotonic() < deadline:
                if getter is None:
                    getter = asyncio.ensure_future(self.queue.get())
                timeout = min(KEEPALIVE_S, max(deadline - time.monotonic(), 0.0))
                done, _ = await asyncio.wait(
                    {getter, left}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if left in done:
                    return
                if getter not in done:
                    await self._body(send, b": keep-alive\n\n")
                    continue
                batch = [getter.result()]
                getter = None
                await asyncio.sleep(self.interval)  # let a burst gather into one message
                while len(batch) < BATCH and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                payload = {"events": [event_record(e) for e in batch], "dropped": self.dropped}
                self.dropped = 0
                await self._body(send, b"event: usage\ndata: " + orjson.dumps(payload) + b"\n\n")
        finally:
            if getter is not None:
                getter.cancel()

    @staticmethod
    async def _body(send: Send, body: bytes, more: bool = True) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": more})


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
