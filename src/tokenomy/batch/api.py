"""OpenAI's Files and Batches routes, and the status of deferred jobs.

``/v1/files`` (purpose ``batch``, JSONL), ``/v1/batches`` and ``/v1/jobs/{id}``, with the
client's own gateway key: a key sees the files, batches and jobs of its tenant and team,
and nobody else's. The openai SDK works against them unchanged.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tokenomy.batch.input import check_for_batch, parse_lines
from tokenomy.batch.service import WINDOW_S
from tokenomy.errors import InvalidRequest, NotFound, PayloadTooLarge, TokenomyError

if TYPE_CHECKING:
    from tokenomy.batch.store import BatchStore
    from tokenomy.gateway.endpoints import Endpoint
    from tokenomy.gateway.proxy import Caller
    from tokenomy.gateway.state import Gateway

PURPOSES = ("batch",)
# x-tokenomy-priority on batch creation orders batches in the queue (deferred jobs: 10).
BATCH_PRIORITY = {"critical": 2, "realtime": 1, "deferrable": 0}
router = APIRouter(tags=["batch"])


class _Client:
    """The gateway and the caller behind a request's key."""

    def __init__(self, gateway: Gateway, caller: Caller) -> None:
        self.gateway = gateway
        self.caller = caller
        principal = caller.principal
        self.owner = (principal.tenant, principal.team)
        if not gateway.batch.enabled:
            raise NotFound("the Batch API is turned off on this gateway (batch.enabled)")

    @property
    def store(self) -> BatchStore:
        return self.gateway.batch.store


def _client(request: Request) -> _Client:
    from tokenomy.gateway.proxy import authenticate

    gateway: Gateway | None = request.app.state.owner.gateway
    if gateway is None:
        raise TokenomyError("the gateway is not started")
    return _Client(gateway, authenticate(gateway, request.scope))


Client = Annotated[_Client, Depends(_client)]


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


@router.post("/v1/files")
async def upload_file(
    client: Client,
    request: Request,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
) -> dict[str, Any]:
    """Upload a JSONL batch input file; every line is checked now, by number."""
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}", param="purpose")
    limit = client.gateway.settings.batch.max_file_bytes
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit} bytes")
    await asyncio.to_thread(parse_lines, content, client.gateway.settings.batch.max_lines)
    principal = client.caller.principal
    return await asyncio.to_thread(
        client.store.add_file,
        client.owner,
        principal.key_id,
        purpose,
        file.filename or "upload.jsonl",
        content,
    )


@router.get("/v1/files")
def list_files(client: Client, purpose: str | None = None, limit: int = 100) -> dict[str, Any]:
    data = client.store.files(client.owner, purpose, max(1, min(limit, 10_000)))
    return {"object": "list", "data": data, "has_more": False}


@router.get("/v1/files/{file_id}")
def get_file(file_id: str, client: Client) -> dict[str, Any]:
    return client.store.file(client.owner, file_id)


@router.get("/v1/files/{file_id}/content")
def file_content(file_id: str, client: Client) -> Response:
    content = client.store.file_content(client.owner, file_id)
    return Response(content, media_type="application/jsonl")


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, client: Client) -> dict[str, Any]:
    return client.store.delete_file(client.owner, file_id)


@router.post("/v1/batches")
async def create_batch(body: BatchCreate, client: Client) -> dict[str, Any]:
    """Queue every line of an uploaded file; each runs as this key, at the batch price."""
    if body.completion_window not in WINDOW_S:
        raise InvalidRequest(
            f"completion_window must be one of {', '.join(WINDOW_S)}", param="completion_window"
        )
    store = client.store
    meta = store.file(client.owner, body.input_file_id)
    if meta["purpose"] != "batch":
        raise InvalidRequest(
            f"file {body.input_file_id} has purpose {meta['purpose']!r}, not 'batch'",
            param="input_file_id",
        )
    content = await asyncio.to_thread(store.file_content, client.owner, body.input_file_id)
    settings = client.gateway.settings
    requests = parse_lines(content, settings.batch.max_lines)
    endpoint, model = check_for_batch(requests, body.endpoint)
    _check_model(client, model, endpoint)
    lines = [(r.custom_id, orjson.dumps(r.body), endpoint.estimate_input(r.body)) for r in requests]
    caller = client.caller
    batch = await asyncio.to_thread(
        store.create_batch,
        kind="batch",
        owner=client.owner,
        key_id=caller.principal.key_id,
        endpoint=body.endpoint,
        model=model,
        input_file_id=body.input_file_id,
        lines=lines,
        completion_window=body.completion_window,
        window_s=WINDOW_S[body.completion_window],
        priority=BATCH_PRIORITY[caller.priority],
        workflow=caller.workflow,
        tags=caller.tags,
        metadata=body.metadata,
    )
    client.gateway.batch.wake()
    return batch


def _check_model(client: _Client, model: str, endpoint: Endpoint) -> None:
    """The batch's model exists (or is a route alias), this key may use it, and it can
    serve the endpoint: refused now, not line by line later."""
    from tokenomy.gateway.proxy import check_kind, model_not_found

    gateway = client.gateway
    known = gateway.catalog.get(model)
    if (known is None and model not in gateway.settings.routes) or not (
        client.caller.principal.may_use(model)
    ):
        raise model_not_found(model)
    if known is not None:
        check_kind(known, endpoint)


@router.get("/v1/batches")
def list_batches(client: Client, limit: int = 20, after: str | None = None) -> dict[str, Any]:
    data = client.store.batches(client.owner, max(1, min(limit, 100)) + 1, after)
    has_more = len(data) > limit
    data = data[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@router.get("/v1/batches/{batch_id}")
def get_batch(batch_id: str, client: Client) -> dict[str, Any]:
    return client.store.batch(client.owner, batch_id)


@router.post("/v1/batches/{batch_id}/cancel")
def cancel_batch(batch_id: str, client: Client) -> dict[str, Any]:
    batch = client.store.cancel(client.owner, batch_id)
    client.gateway.batch.wake()
    return batch


@router.get("/v1/jobs/{job_id}")
def get_job(job_id: str, client: Client) -> dict[str, Any]:
    """A deferred request: queued, completed (with its answer), failed, cancelled."""
    return client.gateway.batch.job(client.owner, job_id)
