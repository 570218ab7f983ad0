"""The worker pool: runs queued lines, fairly between teams, within upstream windows.

Each round looks at the batches that can make progress and leases their lines, a chunk at
a time, into ``workers`` slots: highest priority first (deferred jobs before batches), then the
team that has had the fewest lines run, then the oldest batch. A batch whose line met no
budget room or a rate limit is paused for a while (its lines go back to the queue) and
tried again, so raising the budget or a new period resumes it. A line whose replica died
is claimed again when its lease runs out; live leases are renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tokenomy.batch.execute import Outcome, ending, failed, queued_by, run_line
from tokenomy.batch.native import NativeBatches
from tokenomy.batch.store import ActiveBatch, BatchStore, Line, LineResult, line_request_id
from tokenomy.batch.windows import open_now
from tokenomy.errors import TokenomyError, UpstreamError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from tokenomy.config import BatchConfig
    from tokenomy.gateway.state import Gateway
    from tokenomy.upstream.client import UpstreamClient

log = logging.getLogger("tokenomy.batch")
POLL_S = 0.5  # how often to look for work queued by another replica
# Then look again (new jobs, other teams' batches, cancellations, expiries).
CLAIMS_PER_ROUND = 256
CLAIM_CHUNK = 16  # lines leased in one write, at most
ROUND_S = 1.0
JOB_PRIORITY = 10


class BatchRunner:
    def __init__(
        self, gateway: Gateway, store: BatchStore, config: BatchConfig, zone: ZoneInfo
    ) -> None:
        self._gateway = gateway
        self._store = store
        self._config = config
        self._zone = zone
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._paused_until: dict[str, float] = {}
        self._served: Counter[tuple[str, str]] = Counter()
        self._running: dict[tuple[str, int], Line] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._native = NativeBatches(gateway, store, config)
        self._ended: list[LineResult] = []  # waiting for the next group commit
        self._ended_ready = asyncio.Event()
        self._pause_reasons: dict[str, str] = {}  # batch → why it waits, for the next commit
        # Called with each batch that reached a final status (job webhooks).
        self.on_final: list[Callable[[ActiveBatch, dict[str, Any]], None]] = []

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        helpers = [
            asyncio.create_task(self._renew_leases()),
            asyncio.create_task(self._commit_forever()),
        ]
        try:
            while True:
                try:
                    progressed = await self._round()
                except Exception:
                    log.exception("batch round failed")
                    progressed = False
                if not progressed:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_S)
        finally:
            for task in (*helpers, *self._tasks):
                task.cancel()
            await asyncio.gather(*helpers, *self._tasks, return_exceptions=True)

    def _free_slots(self) -> int:
        return self._config.workers - len(self._running)

    async def _round(self) -> bool:
        batches = await asyncio.to_thread(self._store.active)
        candidates = []
        for batch in batches:
            client = self._native.client_for(batch)
            if client is not None:  # the upstream runs it: poll and submit, no pool slots
                await self._run_native(batch, client)
            elif await self._runnable(batch):
                candidates.append(batch)
        claimed = 0
        ends = time.monotonic() + ROUND_S
        while candidates and claimed < CLAIMS_PER_ROUND and time.monotonic() < ends:
            while self._free_slots() <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            now = time.monotonic()
            candidates = [b for b in candidates if self._paused_until.get(b.id, 0) <= now]
            if not candidates:
                break
            batch = min(
                candidates,
                key=lambda b: (-b.priority, self._served[(b.tenant, b.team)], b.created_at),
            )
            limit = min(self._free_slots(), CLAIM_CHUNK)
            lines = await asyncio.to_thread(
                self._store.claim, batch.id, self._config.lease_s, limit
            )
            if not lines:
                candidates.remove(batch)
                await self._finish_if_done(batch, "completed")
                continue
            self._served[(batch.tenant, batch.team)] += len(lines)
            for line in lines:
                self._running[(batch.id, line.line)] = line
                task = asyncio.create_task(self._run(batch, line))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            claimed += len(lines)
        if not self._running and not candidates:
            self._served.clear()  # idle: fair share starts afresh
        return claimed > 0

    async def _run_native(self, batch: ActiveBatch, client: UpstreamClient) -> None:
        ended = await self._native.poll(batch, client)
        if await self._runnable(batch):
            submitted, stop = await self._native.submit(batch, client)
            ended += submitted
            if stop is not None:
                self._hold_back(batch, stop)
        if ended:
            self._ended.extend(ended)
            self._ended_ready.set()
        else:
            await self._finish_if_done(batch, "completed")

    async def _runnable(self, batch: ActiveBatch) -> bool:
        """Whether the batch's lines may be claimed now; finishes cancelled and expired ones."""
        if batch.status == "cancelling":
            await self._finish_if_done(batch, "cancelled")
            return False
        if time.time() >= batch.expires_at:
            await self._finish_if_done(batch, "expired")
            return False
        if self._paused_until.get(batch.id, 0) > time.monotonic():
            return False
        model = self._gateway.catalog.get(batch.model)
        if model is not None:
            windows = self._gateway.settings.upstreams[model.upstream].batch_windows
            if not open_now(windows, self._zone):
                return False
        return True

    async def _finish_if_done(self, batch: ActiveBatch, status: str) -> None:
        if any(key[0] == batch.id for key in self._running):
            return
        pending, running = await asyncio.to_thread(self._store.unfinished, batch.id)
        if running or (pending and status == "completed"):
            return
        final = await asyncio.to_thread(self._store.finalize, batch, status)
        self._paused_until.pop(batch.id, None)
        log.info("batch %s %s", batch.id, status)
        for callback in self.on_final:
            callback(batch, final)

    async def _run(self, batch: ActiveBatch, line: Line) -> None:
        try:
            outcome = await self._outcome(batch, line)
            if outcome.kind in ("pause", "retry"):
                self._hold_back(batch, outcome)
            result = ending(line, outcome)
        except Exception:
            log.exception("batch %s line %d failed unexpectedly", batch.id, line.line)
            result = LineResult(line, "pending", count_attempt=True)
        if result.count_attempt and line.attempts >= self._config.max_attempts:
            error = UpstreamError("the line failed on every attempt", code="attempts_exhausted")
            result = LineResult(line, "failed", error.status, error.json())
        self._ended.append(result)
        self._ended_ready.set()

    def _hold_back(self, batch: ActiveBatch, outcome: Outcome) -> None:
        """A line could not run now: leave the batch alone for ``wait_s``; a pause (no
        budget room, a rate limit) is also shown on the batch with its reason."""
        self._paused_until[batch.id] = time.monotonic() + outcome.wait_s
        if outcome.kind == "pause":
            log.info("batch %s paused: %s", batch.id, outcome.reason)
            self._pause_reasons[batch.id] = outcome.reason

    async def _commit_forever(self) -> None:
        """Group commit of ended lines: one transaction for all that ended meanwhile."""
        while True:
            await self._ended_ready.wait()
            self._ended_ready.clear()
            ended, self._ended = self._ended, []
            reasons, self._pause_reasons = self._pause_reasons, {}
            try:
                await asyncio.to_thread(self._store.settle, ended, reasons)
            except Exception:  # the leases run out and the lines run again
                log.exception("could not record %d batch lines", len(ended))
            for result in ended:
                self._running.pop((result.line.batch_id, result.line.line), None)
            self._slot_freed.set()
            self._wake.set()

    async def _outcome(self, batch: ActiveBatch, line: Line) -> Outcome:
        try:
            principal = queued_by(self._gateway, batch)
        except TokenomyError as exc:
            return failed(exc)
        return await run_line(
            self._gateway,
            batch,
            principal,
            line_request_id(batch, line),
            line.body,
            last_attempt=line.attempts >= self._config.max_attempts,
            retry_s=self._config.retry_s,
        )

    async def _renew_leases(self) -> None:
        every = self._config.lease_s / 3
        while True:
            await asyncio.sleep(every)
            lines = list(self._running.values())
            if lines:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._store.renew, lines, self._config.lease_s)
