"""The Batch API's state in the gateway: its store, its worker pool, deferred jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson

from tokenomy.batch.runner import JOB_PRIORITY, BatchRunner
from tokenomy.batch.store import ActiveBatch, BatchStore
from tokenomy.database import Connection
from tokenomy.gateway.asgi import JSON, send_bytes
from tokenomy.gateway.endpoints import ROUTES

if TYPE_CHECKING:
    from tokenomy.config import Settings
    from tokenomy.gateway.asgi import Send
    from tokenomy.gateway.call import Call
    from tokenomy.gateway.proxy import Caller
    from tokenomy.gateway.state import Gateway

log = logging.getLogger("tokenomy.batch")
URL_OF = {endpoint.name: url for url, endpoint in ROUTES.items()}
WINDOW_S = {"24h": 86_400}  # completion windows, as OpenAI accepts them
CALLBACK_TRIES = 3


class BatchService:
    def __init__(self, settings: Settings, conn: Connection) -> None:
        config = settings.batch
        self.settings = settings
        self.conn = conn
        self.store = BatchStore(conn)
        self.enabled = config.enabled
        self.defers = config.enabled and config.defer != "never"
        self.defers_always = config.enabled and config.defer == "always"
        self.runner: BatchRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[None]] = set()

    def start(self, gateway: Gateway) -> None:
        if not self.enabled:
            return
        self.runner = BatchRunner(
            gateway, self.store, self.settings.batch, ZoneInfo(self.settings.timezone)
        )
        self.runner.on_final.append(self._job_finished)
        self._task = asyncio.create_task(self.runner.run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._callbacks):
            task.cancel()
        self.conn.close()

    def wake(self) -> None:
        if self.runner is not None:
            self.runner.wake()

    # -- deferred jobs ---------------------------------------------------------------------

    async def queue_job(self, call: Call, caller: Caller, send: Send, reason: str) -> None:
        """Answer 202 with a job that the worker pool runs later at the batch price."""
        principal = call.principal
        job_id = "job_" + call.request_id.removeprefix("req_")
        estimate = call.endpoint.estimate_input(call.payload)
        job = await asyncio.to_thread(
            self.store.create_batch,
            kind="job",
            owner=(principal.tenant, principal.team),
            key_id=principal.key_id,
            endpoint=URL_OF[call.endpoint.name],
            model=str(call.payload.get("model")),
            input_file_id=None,
            lines=[("job", call.raw_body, estimate)],
            completion_window="24h",
            window_s=WINDOW_S["24h"],
            priority=JOB_PRIORITY,
            workflow=call.workflow,
            tags=call.tags,
            metadata={"reason": reason},
            callback_url=caller.callback_url,
            batch_id=job_id,
        )
        self.wake()
        body = job_object(job, None, None)
        headers = [
            JSON,
            (b"x-request-id", call.request_id.encode()),
            (b"location", body["status_url"].encode()),
            (b"x-tokenomy-job-id", job_id.encode()),
        ]
        await send_bytes(send, 202, orjson.dumps(body), headers)

    def job(self, owner: tuple[str, str], job_id: str) -> dict[str, Any]:
        batch = self.store.batch(owner, job_id, "job")
        status_code, response = self.store.line_response(job_id)
        return job_object(batch, status_code, response)

    def _job_finished(self, batch: ActiveBatch, final: dict[str, Any]) -> None:
        if batch.kind != "job" or not batch.callback_url:
            return
        status_code, response = self.store.line_response(batch.id)
        payload = job_object(final, status_code, response)
        task = asyncio.create_task(_post_callback(batch.callback_url, payload))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)


def job_object(
    batch: dict[str, Any], status_code: int | None, response: bytes | None
) -> dict[str, Any]:
    status = batch["status"]
    if status == "in_progress":
        status = "queued"
    elif status == "completed" and status_code != 200:
        status = "failed"
    extra = batch["tokenomy"]
    return {
        "id": batch["id"],
        "object": "tokenomy.job",
        "status": status,
        "endpoint": batch["endpoint"],
        "model": batch["model"],
        "created_at": batch["created_at"],
        "completed_at": batch["completed_at"] or batch["cancelled_at"] or batch["expired_at"],
        "expires_at": batch["expires_at"],
        "status_url": f"/v1/jobs/{batch['id']}",
        "reason": (batch["metadata"] or {}).get("reason"),
        "paused_reason": extra["paused_reason"],
        "cost_usd": extra["cost_usd"],
        "response": (
            {"status_code": status_code, "body": orjson.loads(response)}
            if response is not None
            else None
        ),
    }


async def _post_callback(url: str, payload: dict[str, Any]) -> None:
    """Tell the job's webhook it is done (a few tries; the status URL has it anyway)."""
    body = orjson.dumps(payload)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempt in range(CALLBACK_TRIES):
            try:
                async with session.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as answer:
                    if answer.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("job callback to %s failed: %s", url, exc)
            await asyncio.sleep(2**attempt)
