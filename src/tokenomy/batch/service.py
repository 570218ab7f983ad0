"""The Batch API's state in the gateway: its store, its worker pool, deferred jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from tokenomy.batch.runner import JOB_PRIORITY, BatchRunner
from tokenomy.batch.store import ActiveBatch, BatchStore
from tokenomy.database import Connection
from tokenomy.gateway.asgi import JSON, send_bytes
from tokenomy.gateway.endpoints import ROUTES

if TYPE_CHECKING:
    from tokenomy.budgets.alerts import AlertSender
    from tokenomy.config import Settings
    from tokenomy.gateway.asgi import Send
    from tokenomy.gateway.call import Call
    from tokenomy.gateway.proxy import Caller
    from tokenomy.gateway.state import Gateway

log = logging.getLogger("tokenomy.batch")
URL_OF = {endpoint.name: url for url, endpoint in ROUTES.items()}
WINDOW_S = {"24h": 86_400}  # completion windows, as OpenAI accepts them


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
        self._webhooks: AlertSender | None = None  # the gateway's webhook sender

    def start(self, gateway: Gateway) -> None:
        if not self.enabled:
            return
        self.runner = BatchRunner(
            gateway, self.store, self.settings.batch, ZoneInfo(self.settings.timezone)
        )
        self._webhooks = gateway.alerts
        self.runner.on_final.append(self._job_finished)
        self._task = asyncio.create_task(self.runner.run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
        assert self._webhooks is not None
        self._webhooks.post(batch.callback_url, payload, f"job callback for {batch.id}")


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
