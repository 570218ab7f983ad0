"""The gateway as one ASGI callable.

Proxy routes are dispatched by a dict lookup straight to their handler (the hot path pays
for no framework); everything else (admin API, its OpenAPI document, health) goes to a
FastAPI app that shares the same :class:`Gateway` state.
"""

from __future__ import annotations

import gc
import logging

from starlette.exceptions import HTTPException as StarletteHTTPException

from tokenomy.config import Settings
from tokenomy.errors import NotFound, PayloadTooLarge
from tokenomy.gateway import proxy
from tokenomy.gateway.asgi import Message, Receive, Scope, Send, header_value, send_error
from tokenomy.gateway.call import new_request_id
from tokenomy.gateway.endpoints import ROUTES
from tokenomy.gateway.models_route import list_models
from tokenomy.gateway.state import Gateway
from tokenomy.telemetry.metrics import serve_metrics

log = logging.getLogger("tokenomy.gateway")
BATCH_PATHS = ("/v1/files", "/v1/batches", "/v1/jobs/")
FORM_OVERHEAD = 1 << 20  # multipart framing and fields around an uploaded file


class TokenomyApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway: Gateway | None = None
        from tokenomy.gateway.admin import create_admin_app

        self.admin = create_admin_app(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            endpoint = ROUTES.get(path)
            if endpoint is not None and scope["method"] == "POST":
                assert self.gateway is not None, "lifespan did not run"
                return await proxy.handle(self.gateway, endpoint, scope, receive, send)
            if path == "/v1/models" and scope["method"] == "GET":
                assert self.gateway is not None, "lifespan did not run"
                return await list_models(self.gateway, scope, send)
            if path == "/metrics" and scope["method"] == "GET":
                assert self.gateway is not None, "lifespan did not run"
                return await serve_metrics(self.gateway, scope, send)
            if path.startswith(BATCH_PATHS):  # the Batch API: multipart uploads, JSON
                return await self._admin(scope, receive, send)
            if path.startswith("/v1/") and endpoint is None:
                error = NotFound(
                    f"no route {scope['method']} {path} on this gateway", code="unknown_route"
                )
                return await send_error(send, error, [(b"x-request-id", new_request_id().encode())])
            if scope["method"] in ("POST", "PUT", "PATCH"):
                _assume_json_body(scope)
            return await self._admin(scope, receive, send)
        if kind == "lifespan":
            return await self._lifespan(receive, send)
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The admin app, under the same body size limit as the proxy routes (a file upload:
        the file limit plus room for the form around it); refused before it is read."""
        limit = self.settings.server.max_body_bytes
        if scope["path"].startswith("/v1/files"):
            limit = max(limit, self.settings.batch.max_file_bytes + FORM_OVERHEAD)
        length = header_value(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            error = PayloadTooLarge(f"request body is larger than {limit} bytes")
            return await send_error(send, error, [(b"connection", b"close")])
        await self.admin(scope, bounded(receive, limit), send)

    async def startup(self) -> None:
        if self.gateway is None:
            self.gateway = Gateway.build(self.settings)
            await self.gateway.start()
            # Everything loaded so far lives as long as the process: move it out of the
            # collector's sight, so full collections stay cheap under load.
            gc.collect()
            gc.freeze()

    async def shutdown(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings) -> TokenomyApp:
    return TokenomyApp(settings)


def bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses a body (sent without a length) once it passes ``limit``."""
    size = 0

    async def receive_bounded() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise StarletteHTTPException(413, f"request body is larger than {limit} bytes")
        return message

    return receive_bounded


def _assume_json_body(scope: Scope) -> None:
    """The admin API speaks only JSON; accept bodies sent without a JSON content type
    (``curl -d``) instead of failing them on a header."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    scope["headers"] = headers
