"""The mock's own Batch API (``/v1/files``, ``/v1/batches``), as a provider's that has one.

A batch is answered in full when it is created (each line as its endpoint would answer
it), but reported ``in_progress`` until ``x-mock-batch-seconds`` (default 0) have passed,
so a client must poll as it would a real provider. State lives in the app instance.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request

from tokenomy.mock._asgi import JSON_HEADERS, Scope, Send, send_body
from tokenomy.mock._errors import error_body

# url, request body → (status code, response body) of one line
LineAnswer = Callable[[str, bytes], tuple[int, bytes]]


class MockBatches:
    def __init__(self, answer_line: LineAnswer) -> None:
        self._answer_line = answer_line
        self._files: dict[str, tuple[str, bytes]] = {}  # id → (purpose, content)
        self._batches: dict[str, dict[str, Any]] = {}
        self._ready_at: dict[str, float] = {}
        self._ids = itertools.count(1)

    def handles(self, path: str) -> bool:
        return path.startswith(("/v1/files", "/v1/batches"))

    async def handle(self, scope: Scope, body: bytes, send: Send) -> None:
        method, parts = scope["method"], scope["path"].strip("/").split("/")[1:]
        if parts == ["files"] and method == "POST":
            return await self._upload(scope, body, send)
        if len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
            found = self._files.get(parts[1])
            if found is None:
                return await _missing(send, parts[1])
            return await send_body(send, 200, found[1], [(b"content-type", b"application/jsonl")])
        if parts == ["batches"] and method == "POST":
            return await self._create(scope, body, send)
        if len(parts) == 2 and parts[0] == "batches" and method == "GET":
            batch = self._batches.get(parts[1])
            if batch is None:
                return await _missing(send, parts[1])
            return await send_body(send, 200, orjson.dumps(self._current(batch)))
        message = f"Unknown request URL: {method} {scope['path']}."
        await send_body(send, 404, error_body(False, 404, message, code="unknown_url"))

    async def _upload(self, scope: Scope, body: bytes, send: Send) -> None:
        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(scope, replay).form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            await send_body(send, 400, error_body(False, 400, "Missing file.", "file"))
            return
        file_id = f"file-mock{next(self._ids):08d}"
        self._files[file_id] = (str(form.get("purpose", "")), await upload.read())
        answer = {"id": file_id, "object": "file", "purpose": form.get("purpose")}
        await send_body(send, 200, orjson.dumps(answer), JSON_HEADERS)

    async def _create(self, scope: Scope, body: bytes, send: Send) -> None:
        request = orjson.loads(body)
        found = self._files.get(str(request.get("input_file_id")))
        if found is None:
            return await _missing(send, str(request.get("input_file_id")))
        outputs: list[bytes] = []
        errors: list[bytes] = []
        for raw in found[1].splitlines():
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            status, answer = self._answer_line(line["url"], orjson.dumps(line["body"]))
            entry = {
                "id": f"batch_req_{next(self._ids)}",
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "body": orjson.loads(answer)},
                "error": None,
            }
            (outputs if status == 200 else errors).append(orjson.dumps(entry))
        batch_id = f"batch_mock{next(self._ids):08d}"
        output_id = self._store(outputs, "batch_output")
        error_id = self._store(errors, "batch_output")
        delay = float(dict(scope["headers"]).get(b"x-mock-batch-seconds", b"0"))
        self._ready_at[batch_id] = time.monotonic() + delay
        self._batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": request.get("endpoint"),
            "input_file_id": request.get("input_file_id"),
            "status": "in_progress",
            "output_file_id": output_id,
            "error_file_id": error_id,
            "request_counts": {
                "total": len(outputs) + len(errors),
                "completed": len(outputs),
                "failed": len(errors),
            },
        }
        await send_body(send, 200, orjson.dumps(self._current(self._batches[batch_id])))

    def _store(self, lines: list[bytes], purpose: str) -> str | None:
        if not lines:
            return None
        file_id = f"file-mock{next(self._ids):08d}"
        self._files[file_id] = (purpose, b"\n".join(lines) + b"\n")
        return file_id

    def _current(self, batch: dict[str, Any]) -> dict[str, Any]:
        if time.monotonic() < self._ready_at[batch["id"]]:
            return {**batch, "output_file_id": None, "error_file_id": None}
        return {**batch, "status": "completed"}


async def _missing(send: Send, what: str) -> None:
    await send_body(send, 404, error_body(False, 404, f"No such object: {what}", code="not_found"))
