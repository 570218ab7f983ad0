"""Batches run by the upstream's own Batch API (an upstream with ``batch_api: true``).

Submitting: the batch's pending lines are each admitted as a real-time request would be
(budgets hold their worst case; the first line without room stops the chunk and pauses
the batch), the admitted ones go up as one JSONL file and one upstream batch, and their
lines remember its id (so a restart polls it again instead of submitting twice).
Polling: when the upstream batch is over, each answered line is charged at the model's
batch price from the usage in its answer, and its hold settled; lines it did not answer
go back to the queue.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from tokenomy.batch.execute import (
    Outcome,
    ending,
    failed,
    hold_budget,
    line_call,
    queued_by,
    record_answer,
)
from tokenomy.batch.store import ActiveBatch, BatchStore, Line, LineResult, line_request_id
from tokenomy.errors import TokenomyError, UpstreamError

if TYPE_CHECKING:
    from tokenomy.config import BatchConfig
    from tokenomy.gateway.call import Call
    from tokenomy.gateway.state import Gateway
    from tokenomy.upstream.client import UpstreamClient

log = logging.getLogger("tokenomy.batch")
SUBMIT_LIMIT = 50_000  # lines in one upstream batch (OpenAI's limit)
OVER = ("completed", "failed", "expired", "cancelled")


class NativeBatches:
    def __init__(self, gateway: Gateway, store: BatchStore, config: BatchConfig) -> None:
        self._gateway = gateway
        self._store = store
        self._config = config
        self._calls: dict[tuple[str, int], Call] = {}  # submitted lines' calls and holds
        self._next_poll: dict[str, float] = {}

    def client_for(self, batch: ActiveBatch) -> UpstreamClient | None:
        """The upstream that runs this batch itself, or None (the worker pool runs it)."""
        model = self._gateway.catalog.get(batch.model)
        if model is None or batch.kind != "batch":
            return None
        client = self._gateway.upstreams[model.upstream]
        return client if client.config.batch_api and client.kind == "openai" else None

    async def submit(
        self, batch: ActiveBatch, client: UpstreamClient
    ) -> tuple[list[LineResult], Outcome | None]:
        """Send the batch's pending lines that have budget room; (lines that ended at
        once, the pause when some had no room)."""
        from tokenomy.gateway.proxy import release_hold
        from tokenomy.gateway.upstream_call import openai_body

        lease_s = batch.expires_at - time.time() + 3600  # the upstream's window, not ours
        lines = self._store.claim(batch.id, lease_s, SUBMIT_LIMIT)
        if not lines:
            return [], None
        ended: list[LineResult] = []
        admitted: list[tuple[Line, Call]] = []
        pause: Outcome | None = None
        for line in lines:
            if pause is not None:
                ended.append(LineResult(line, "pending"))
                continue
            try:
                principal = queued_by(self._gateway, batch)
                call = await line_call(
                    self._gateway, batch, principal, line_request_id(batch, line), line.body
                )
            except TokenomyError as exc:
                ended.append(ending(line, failed(exc)))
                continue
            refused = await hold_budget(self._gateway, call, self._config.retry_s)
            if refused is None:
                admitted.append((line, call))
            else:
                pause = refused if refused.kind == "pause" else None
                ended.append(ending(line, refused))
        if admitted:
            content = b"\n".join(
                orjson.dumps(
                    {
                        "custom_id": str(line.line),
                        "method": "POST",
                        "url": batch.endpoint,
                        "body": orjson.loads(openai_body(call, stream=False)),
                    }
                )
                for line, call in admitted
            )
            try:
                uploaded = await client.upload("/files", f"{batch.id}.jsonl", content, "batch")
                created = await client.call_json(
                    "POST",
                    "/batches",
                    orjson.dumps(
                        {
                            "input_file_id": uploaded["id"],
                            "endpoint": batch.endpoint,
                            "completion_window": "24h",
                            "metadata": {"tokenomy_batch": batch.id},
                        }
                    ),
                )
            except (UpstreamError, KeyError, orjson.JSONDecodeError) as exc:
                for line, call in admitted:
                    await release_hold(self._gateway, call)
                    ended.append(LineResult(line, "pending", count_attempt=True))
                reason = f"upstream {client.name!r} refused the batch: {exc}"
                return ended, Outcome("retry", reason=reason, wait_s=self._config.retry_s)
            self._store.mark_submitted(batch.id, [line for line, _ in admitted], created["id"])
            self._next_poll[created["id"]] = 0.0
            for line, call in admitted:
                self._calls[(batch.id, line.line)] = call
            log.info(
                "batch %s: %d lines sent to %s as %s",
                batch.id,
                len(admitted),
                client.name,
                created["id"],
            )
        return ended, pause

    async def poll(self, batch: ActiveBatch, client: UpstreamClient) -> list[LineResult]:
        """The lines of the batch's upstream batches that are over."""
        ended: list[LineResult] = []
        now = time.monotonic()
        for upstream_id in self._store.upstream_batches(batch.id):
            if self._next_poll.get(upstream_id, 0.0) > now:
                continue
            self._next_poll[upstream_id] = now + client.config.batch_poll_s
            try:
                state = await client.call_json("GET", f"/batches/{upstream_id}")
                if state.get("status") not in OVER:
                    continue
                answers = await self._answers(client, state)
            except (UpstreamError, orjson.JSONDecodeError) as exc:
                log.warning("batch %s: polling %s failed: %s", batch.id, upstream_id, exc)
                continue
            for line in self._store.submitted_lines(batch.id, upstream_id):
                ended.append(await self._result(batch, line, answers.get(str(line.line))))
            self._next_poll.pop(upstream_id, None)
        return ended

    async def _answers(self, client: UpstreamClient, state: dict[str, Any]) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = state.get(key)
            if file_id:
                for raw in (await client.read(f"/files/{file_id}/content")).splitlines():
                    if raw.strip():
                        entry = orjson.loads(raw)
                        answers[str(entry.get("custom_id"))] = entry
        return answers

    async def _result(self, batch: ActiveBatch, line: Line, entry: Any) -> LineResult:
        from tokenomy.gateway.proxy import release_hold

        call = self._calls.pop((batch.id, line.line), None)
        response = (entry or {}).get("response") or {}
        status, body = response.get("status_code"), response.get("body")
        if not isinstance(body, dict) or not isinstance(status, int):
            if call is not None:
                await release_hold(self._gateway, call)
            return LineResult(line, "pending", count_attempt=True)  # unanswered: again
        raw = orjson.dumps(body)
        if status != 200:
            if call is not None:
                await release_hold(self._gateway, call)
            return LineResult(
                line, "failed", status, orjson.dumps({"error": body.get("error", body)})
            )
        if call is None:  # submitted before a restart: the call again, without a hold
            # The upstream did the work: it is charged to the key even if revoked since.
            principal = queued_by(self._gateway, batch, live=False)
            call = await line_call(
                self._gateway, batch, principal, line_request_id(batch, line), line.body
            )
        usage = call.endpoint.usage_of(body)
        estimated = usage is None
        if usage is None:
            usage = call.estimated_usage()
        outcome = await record_answer(
            self._gateway, call, raw, usage, estimated, self._config.retry_s
        )
        if outcome.kind != "done":
            return LineResult(line, "pending")
        return ending(line, outcome)
