"""The few ASGI primitives the mock needs, written by hand to stay fast (no framework)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class ClientGone(Exception):
    """The client disconnected while the request body was being read."""


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_body(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] = JSON_HEADERS,
) -> None:
    """A complete response with a correct content-length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HideUnfinishedResponses(logging.Filter):
    """Drop uvicorn's one-line error for the responses the mock cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


async def send_cut_body(send: Send, body: bytes) -> None:
    """Announce the whole body, send its first half, then return without finishing.

    An ASGI server whose application returns mid-body closes the connection (granian and
    uvicorn both do), so the client reads "received N bytes, expected M": a connection cut
    in the middle of a response, the way a crashing upstream or proxy produces one.
    In-process, ``httpx.ASGITransport`` cannot express a dropped connection and fails an
    assertion instead: test cuts against a real server.
    """
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has gone (call only after the body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def stall(receive: Receive, seconds: float) -> bool:
    """Sleep up to ``seconds``; return early (True) when the client disconnects."""
    try:
        await asyncio.wait_for(wait_disconnect(receive), seconds)
    except TimeoutError:
        return False
    return True


async def lifespan(receive: Receive, send: Send, startup: Callable[[], None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
