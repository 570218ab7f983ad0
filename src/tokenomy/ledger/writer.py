"""Group commit: the request path waits until its event is durable, cheaply.

Requests hand their event to one writer thread and await a future. The thread drains
everything queued, writes it in one transaction, and resolves all those futures with a
single call into the event loop. Under load many events share a commit; at low load the
wait is one small transaction (~0.1 ms). A response is sent only after its event is
committed, so a request the client saw answered survives kill -9.

SQLite's automatic WAL checkpoint (copying pages back into the database and fsyncing)
would run inside whichever commit crosses the threshold, adding milliseconds to that
request; the writer turns it off and a separate thread checkpoints once a second with
its own connection (PASSIVE: it never blocks the writer). Under steady load a PASSIVE
checkpoint never catches up with the writer, so SQLite never restarts the WAL and the file
grows without end (700 MB after 100,000 requests); once the WAL is over
``WAL_RESET_FRAMES`` pages the thread runs a TRUNCATE checkpoint instead, which holds the
writer back for the few frames the last PASSIVE one left and empties the file.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading

from tokenomy import database
from tokenomy.ledger.event import UsageEvent
from tokenomy.ledger.sqlite import SqliteLedgerStore

log = logging.getLogger("tokenomy.ledger")
_STOP = object()
CHECKPOINT_EVERY_S = 1.0
WAL_RESET_FRAMES = 4096  # 16 MiB of 4 KiB pages
CHECKPOINT_BUSY_MS = 250  # how long a TRUNCATE checkpoint may wait (and hold the writer)
_Item = tuple[UsageEvent, asyncio.Future[None] | None]


class LedgerWriter:
    def __init__(self, database_url: str, max_batch: int = 512) -> None:
        self._url = database_url
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.committed = 0
        self._stopping = threading.Event()
        self._checkpointer: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="tokenomy-ledger", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="tokenomy-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def record(self, event: UsageEvent) -> asyncio.Future[None]:
        """Queue an event; the returned future completes once it is committed."""
        assert self._loop is not None, "LedgerWriter.start() was not called"
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((event, future))
        return future

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._stopping.set()
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None

    def _checkpoint_loop(self) -> None:
        conn = database.connect(self._url)
        if database.dialect(conn) != "sqlite":  # only SQLite's WAL needs checkpoints
            conn.close()
            return
        try:
            conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
            while not self._stopping.wait(CHECKPOINT_EVERY_S):
                try:
                    # (busy, frames in the WAL, frames copied back)
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if row is not None and row[1] > WAL_RESET_FRAMES:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except Exception as exc:  # busy or I/O trouble: the next round retries
                    log.debug("checkpoint skipped: %s", exc)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception as exc:
            log.warning("final checkpoint failed: %s", exc)
        finally:
            conn.close()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            conn = database.connect(self._url)
            if database.dialect(conn) == "sqlite":
                conn.execute("PRAGMA wal_autocheckpoint=0")
            store = SqliteLedgerStore(conn)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        stopping = False
        while not stopping:
            batch: list[_Item] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(store, batch)

    def _commit(self, store: SqliteLedgerStore, batch: list[_Item]) -> None:
        events = [event for event, _ in batch]
        error: BaseException | None = None
        for attempt in range(5):
            try:
                store.write_batch(events)
                error = None
                break
            except Exception as exc:  # database locked or full: retry, then fail the requests
                error = exc
                log.warning("ledger commit failed (attempt %d): %s", attempt + 1, exc)
                threading.Event().wait(0.05 * (attempt + 1))
        if error is None:
            self.committed += len(events)
        assert self._loop is not None
        futures = [future for _, future in batch if future is not None]
        if futures and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_resolve, futures, error)


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
