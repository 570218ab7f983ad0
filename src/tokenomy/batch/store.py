"""Files, batches and their lines in the database: durable, so a batch survives restarts.

A line moves ``pending → running → done | failed``. Claiming a line leases it for
``lease_s``; a replica that dies mid-line leaves a lease that expires, and the line is
claimed again (at-least-once execution). Its ledger event id is fixed by the batch and the
line (``<batch>-<line>``) and the ledger ignores a second event with the same id, so a line
run twice is charged once.

Times in the API objects are Unix seconds, as OpenAI's are.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from tokenomy.database import Connection, transaction
from tokenomy.errors import NotFound
from tokenomy.money import from_pico, usd_str

# Statuses a batch can still make progress in; the rest are final.
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
FINAL = ("completed", "failed", "expired", "cancelled")
Owner = tuple[str, str]  # (tenant, team): who may see a file or a batch


@dataclass(frozen=True, slots=True, order=True)
class Line:
    batch_id: str
    line: int
    custom_id: str
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class LineResult:
    """How a run of a line ended: ``done``/``failed`` with its answer, or ``pending``
    (back in the queue: a paused batch, a retriable failure)."""

    line: Line
    state: str
    status_code: int = 0
    response: bytes = b""
    cost_pico: int = 0
    count_attempt: bool = False
    tokens: tuple[int, int] = (0, 0)  # input, output


@dataclass(frozen=True, slots=True)
class ActiveBatch:
    """What the worker pool needs to schedule a batch's lines."""

    id: str
    kind: str
    tenant: str
    team: str
    key_id: str
    endpoint: str
    model: str
    status: str
    priority: int
    workflow: str
    tags: dict[str, str]
    created_at: int
    expires_at: int
    callback_url: str | None


def line_request_id(batch: ActiveBatch, line: Line) -> str:
    """The line's ledger event id: the same on every run of the line (charged once)."""
    return batch.id if batch.kind == "job" else f"{batch.id}-{line.line}"


def _now() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


_BATCH_COLUMNS = (
    "id, kind, tenant, team, key_id, endpoint, model, input_file_id, completion_window, "
    "status, priority, workflow, tags, metadata, callback_url, created_at, in_progress_at, "
    "finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, "
    "expires_at, output_file_id, error_file_id, errors, total, completed, failed, "
    "paused_reason, cost_pico, input_tokens, output_tokens"
)
_FILE_COLUMNS = "id, purpose, filename, bytes, created_at"


class BatchStore:
    """All of the Batch API's state; every method is one short transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement and all its rows, under the lock: the connection is shared by
        threads, and a statement left half-read would block the next commit."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self._run(sql, params)
        return rows[0] if rows else None

    # -- files -----------------------------------------------------------------------------

    def add_file(
        self, owner: Owner, key_id: str, purpose: str, filename: str, content: bytes
    ) -> dict[str, Any]:
        file_id = new_id("file-")
        created = _now()
        self._run(
            "INSERT INTO batch_files (id, tenant, team, key_id, purpose, filename, bytes, "
            "created_at, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (file_id, *owner, key_id, purpose, filename, len(content), created, content),
        )
        return _file_object((file_id, purpose, filename, len(content), created))

    def file(self, owner: Owner, file_id: str) -> dict[str, Any]:
        row = self._one(
            f"SELECT {_FILE_COLUMNS} FROM batch_files WHERE id = ? AND tenant = ? AND team = ?",
            (file_id, *owner),
        )
        if row is None:
            raise NotFound(
                f"No such File object: {file_id}", param="file_id", code="file_not_found"
            )
        return _file_object(row)

    def file_content(self, owner: Owner, file_id: str) -> bytes:
        row = self._one(
            "SELECT content FROM batch_files WHERE id = ? AND tenant = ? AND team = ?",
            (file_id, *owner),
        )
        if row is None:
            raise NotFound(
                f"No such File object: {file_id}", param="file_id", code="file_not_found"
            )
        return bytes(row[0])

    def files(self, owner: Owner, purpose: str | None, limit: int) -> list[dict[str, Any]]:
        sql = f"SELECT {_FILE_COLUMNS} FROM batch_files WHERE tenant = ? AND team = ?"
        params: tuple[Any, ...] = owner
        if purpose:
            sql += " AND purpose = ?"
            params += (purpose,)
        rows = self._run(sql + " ORDER BY created_at DESC, id LIMIT ?", (*params, limit))
        return [_file_object(row) for row in rows]

    def delete_file(self, owner: Owner, file_id: str) -> dict[str, Any]:
        self.file(owner, file_id)
        self._run("DELETE FROM batch_files WHERE id = ?", (file_id,))
        return {"id": file_id, "object": "file", "deleted": True}

    # -- batches ---------------------------------------------------------------------------

    def create_batch(
        self,
        *,
        kind: str,
        owner: Owner,
        key_id: str,
        endpoint: str,
        model: str,
        input_file_id: str | None,
        lines: list[tuple[str, bytes, int]],
        completion_window: str,
        window_s: int,
        priority: int,
        workflow: str,
        tags: dict[str, str],
        metadata: dict[str, Any] | None,
        callback_url: str | None = None,
        batch_id: str | None = None,
    ) -> dict[str, Any]:
        """A batch and its lines, ``(custom_id, body, token estimate)``, in one transaction."""
        batch_id = batch_id or new_id("batch_")
        created = _now()
        with self._lock, transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO batches (id, kind, tenant, team, key_id, endpoint, model, "
                "input_file_id, completion_window, status, priority, workflow, tags, "
                "metadata, callback_url, created_at, in_progress_at, expires_at, total) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'in_progress', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    kind,
                    *owner,
                    key_id,
                    endpoint,
                    model,
                    input_file_id,
                    completion_window,
                    priority,
                    workflow,
                    orjson.dumps(tags).decode(),
                    orjson.dumps(metadata).decode() if metadata is not None else None,
                    callback_url,
                    created,
                    created,
                    created + window_s,
                    len(lines),
                ),
            )
            conn.executemany(
                "INSERT INTO batch_lines (batch_id, line, custom_id, body, tokens, state) "
                "VALUES (?, ?, ?, ?, ?, 'pending')",
                [(batch_id, i, c, body, tokens) for i, (c, body, tokens) in enumerate(lines)],
            )
        return self.batch(owner, batch_id, kind)

    def batch(self, owner: Owner | None, batch_id: str, kind: str = "batch") -> dict[str, Any]:
        sql = f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ? AND kind = ?"
        params: tuple[Any, ...] = (batch_id, kind)
        if owner is not None:
            sql += " AND tenant = ? AND team = ?"
            params += owner
        row = self._one(sql, params)
        if row is None:
            noun = "Batch" if kind == "batch" else "job"
            raise NotFound(f"No such {noun} object: {batch_id}", param="batch_id", code="not_found")
        return _batch_object(row)

    def batches(self, owner: Owner, limit: int, after: str | None) -> list[dict[str, Any]]:
        sql = (
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE tenant = ? AND team = ? AND kind = 'batch'"
        )
        params: tuple[Any, ...] = owner
        if after:
            anchor = self._one("SELECT created_at FROM batches WHERE id = ?", (after,))
            if anchor is not None:
                sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
                params += (anchor[0], anchor[0], after)
        rows = self._run(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit))
        return [_batch_object(row) for row in rows]

    def cancel(self, owner: Owner, batch_id: str) -> dict[str, Any]:
        current = self.batch(owner, batch_id)
        if current["status"] in ("validating", "in_progress"):
            self._run(
                "UPDATE batches SET status = 'cancelling', cancelling_at = ? WHERE id = ? "
                "AND status IN ('validating', 'in_progress')",
                (_now(), batch_id),
            )
        return self.batch(owner, batch_id)

    # -- the worker pool's side -----------------------------------------------------------

    def active(self) -> list[ActiveBatch]:
        rows = self._run(
            "SELECT id, kind, tenant, team, key_id, endpoint, model, status, priority, workflow, "
            "tags, created_at, expires_at, callback_url FROM batches "
            "WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling')"
        )
        names = ActiveBatch.__slots__
        return [
            ActiveBatch(**{**dict(zip(names, row, strict=True)), "tags": orjson.loads(row[10])})
            for row in rows
        ]

    def claim(self, batch_id: str, lease_s: float, limit: int) -> list[Line]:
        """Lease up to ``limit`` of the batch's pending lines (or ones whose lease ran
        out), in one write; none once the batch is no longer in progress."""
        now_ms = int(time.time() * 1000)
        rows = self._run(
            "UPDATE batch_lines SET state = 'running', lease_until = ?, attempts = attempts + 1 "
            "WHERE (batch_id, line) IN (SELECT batch_id, line FROM batch_lines "
            "WHERE batch_id = ? AND "
            "(state = 'pending' OR (state = 'running' AND lease_until < ?)) "
            "AND (SELECT status FROM batches WHERE id = ?) = 'in_progress' "  # not cancelled
            "ORDER BY line LIMIT ?) RETURNING line, custom_id, body, attempts",
            (now_ms + int(lease_s * 1000), batch_id, now_ms, batch_id, limit),
        )
        return sorted(Line(batch_id, row[0], row[1], bytes(row[2]), row[3]) for row in rows)

    def settle(self, results: list[LineResult], paused: dict[str, str]) -> None:
        """Record many lines' ends in one transaction (the worker pool's group commit):
        answers once (a line finished by another run stays as it was), or back to pending."""
        now = _now()
        with self._lock, transaction(self._conn) as conn:
            for result in results:
                line = result.line
                if result.state == "pending":
                    conn.execute(
                        "UPDATE batch_lines SET state = 'pending', lease_until = 0, "
                        "upstream_batch = NULL, attempts = attempts - ? "
                        "WHERE batch_id = ? AND line = ? "
                        "AND state = 'running'",
                        (0 if result.count_attempt else 1, line.batch_id, line.line),
                    )
                    continue
                changed = conn.execute(
                    "UPDATE batch_lines SET state = ?, status_code = ?, response = ?, "
                    "finished_at = ? WHERE batch_id = ? AND line = ? AND state = 'running'",
                    (
                        result.state,
                        result.status_code,
                        result.response,
                        now,
                        line.batch_id,
                        line.line,
                    ),
                ).rowcount
                if changed:
                    column = "completed" if result.state == "done" else "failed"
                    conn.execute(
                        f"UPDATE batches SET {column} = {column} + 1, "
                        "cost_pico = cost_pico + ?, input_tokens = input_tokens + ?, "
                        "output_tokens = output_tokens + ?, paused_reason = NULL WHERE id = ?",
                        (result.cost_pico, *result.tokens, line.batch_id),
                    )
            for batch_id, reason in paused.items():
                conn.execute(
                    "UPDATE batches SET paused_reason = ? WHERE id = ?", (reason, batch_id)
                )

    def mark_submitted(self, batch_id: str, lines: list[Line], upstream_batch: str) -> None:
        """Lines now answered by an upstream batch (polled again after a restart)."""
        with self._lock:
            self._conn.executemany(
                "UPDATE batch_lines SET upstream_batch = ? WHERE batch_id = ? AND line = ?",
                [(upstream_batch, batch_id, line.line) for line in lines],
            )

    def upstream_batches(self, batch_id: str) -> list[str]:
        rows = self._run(
            "SELECT DISTINCT upstream_batch FROM batch_lines WHERE batch_id = ? "
            "AND state = 'running' AND upstream_batch IS NOT NULL",
            (batch_id,),
        )
        return [row[0] for row in rows]

    def submitted_lines(self, batch_id: str, upstream_batch: str) -> list[Line]:
        rows = self._run(
            "SELECT line, custom_id, body, attempts FROM batch_lines WHERE batch_id = ? "
            "AND upstream_batch = ? AND state = 'running' ORDER BY line",
            (batch_id, upstream_batch),
        )
        return [Line(batch_id, row[0], row[1], bytes(row[2]), row[3]) for row in rows]

    def renew(self, lines: list[Line], lease_s: float) -> None:
        """Extend the leases of lines still running here (a live replica keeps its lines)."""
        until = int((time.time() + lease_s) * 1000)
        with self._lock:
            self._conn.executemany(
                "UPDATE batch_lines SET lease_until = ? WHERE batch_id = ? AND line = ? "
                "AND state = 'running'",
                [(until, line.batch_id, line.line) for line in lines],
            )

    def unfinished(self, batch_id: str) -> tuple[int, int]:
        """(lines pending, lines running)."""
        row = self._one(
            "SELECT COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0) "
            "FROM batch_lines WHERE batch_id = ?",
            (batch_id,),
        )
        return int(row[0]), int(row[1])

    def finalize(self, batch: ActiveBatch, status: str) -> dict[str, Any]:
        """Write the output and error files and give the batch its final status."""
        outputs: list[bytes] = []
        errors: list[bytes] = []
        rows = self._run(
            "SELECT line, custom_id, state, status_code, response FROM batch_lines "
            "WHERE batch_id = ? AND state IN ('done', 'failed') ORDER BY line",
            (batch.id,),
        )
        for line, custom_id, state, status_code, response in rows:
            body = orjson.loads(response) if response else None
            entry: dict[str, Any] = {
                "id": f"{batch.id}-{line}",
                "custom_id": custom_id,
                "response": {
                    "status_code": status_code,
                    "request_id": f"{batch.id}-{line}",
                    "body": body,
                },
                "error": None,
            }
            if state == "done":
                outputs.append(orjson.dumps(entry))
            else:
                error = (body or {}).get("error") if isinstance(body, dict) else None
                entry["error"] = {
                    "code": (error or {}).get("code") or "request_failed",
                    "message": (error or {}).get("message") or "the request failed",
                }
                errors.append(orjson.dumps(entry))
        now = _now()
        owner = (batch.tenant, batch.team)
        output_id, error_id = (
            self.add_file(
                owner,
                batch.key_id,
                "batch_output",
                f"{batch.id}_{kind}.jsonl",
                b"\n".join(lines) + b"\n",
            )["id"]
            if lines
            else None
            for kind, lines in (("output", outputs), ("error", errors))
        )
        stamp = {"completed": "completed_at", "cancelled": "cancelled_at", "expired": "expired_at"}
        self._run(
            f"UPDATE batches SET status = ?, finalizing_at = COALESCE(finalizing_at, ?), "
            f"{stamp[status]} = ?, output_file_id = ?, error_file_id = ?, paused_reason = NULL "
            "WHERE id = ?",
            (status, now, now, output_id, error_id, batch.id),
        )
        if status != "completed":  # lines never run are dropped: they will never be
            self._run(
                "UPDATE batch_lines SET state = 'skipped' WHERE batch_id = ? AND state = 'pending'",
                (batch.id,),
            )
        return self.batch(None, batch.id, batch.kind)

    def line_response(self, batch_id: str) -> tuple[int | None, bytes | None]:
        """A job's answer: its one line's status code and body."""
        row = self._one(
            "SELECT status_code, response FROM batch_lines WHERE batch_id = ? AND line = 0",
            (batch_id,),
        )
        return (row[0], bytes(row[1]) if row[1] is not None else None) if row else (None, None)

    def queue_stats(self) -> list[tuple[str, int, int, int]]:
        """Per model: (model, lines waiting, tokens waiting, oldest waiting batch's age s)."""
        now = _now()
        rows = self._run(
            "SELECT b.model, COUNT(*), COALESCE(SUM(l.tokens), 0), MIN(b.created_at) "
            "FROM batch_lines l JOIN batches b ON b.id = l.batch_id "
            "WHERE l.state IN ('pending', 'running') GROUP BY b.model"
        )
        return [(model, count, tokens, now - oldest) for model, count, tokens, oldest in rows]


def _file_object(row: tuple[Any, ...]) -> dict[str, Any]:
    file_id, purpose, filename, size, created = row
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def _batch_object(row: tuple[Any, ...]) -> dict[str, Any]:
    r = dict(zip(_BATCH_COLUMNS.split(", "), row, strict=True))
    errors = orjson.loads(r["errors"]) if r["errors"] else None
    return {
        "id": r["id"],
        "object": "batch",
        "endpoint": r["endpoint"],
        "model": r["model"],
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": r["input_file_id"],
        "completion_window": r["completion_window"],
        "status": r["status"],
        "output_file_id": r["output_file_id"],
        "error_file_id": r["error_file_id"],
        "created_at": r["created_at"],
        "in_progress_at": r["in_progress_at"],
        "expires_at": r["expires_at"],
        "finalizing_at": r["finalizing_at"],
        "completed_at": r["completed_at"],
        "failed_at": r["failed_at"],
        "expired_at": r["expired_at"],
        "cancelling_at": r["cancelling_at"],
        "cancelled_at": r["cancelled_at"],
        "request_counts": {
            "total": r["total"],
            "completed": r["completed"],
            "failed": r["failed"],
        },
        "metadata": orjson.loads(r["metadata"]) if r["metadata"] else None,
        "usage": {
            "input_tokens": r["input_tokens"],
            "output_tokens": r["output_tokens"],
            "total_tokens": r["input_tokens"] + r["output_tokens"],
        },
        # Ours: is the batch waiting for budget room, and what it has cost so far.
        "tokenomy": {
            "paused": r["paused_reason"] is not None,
            "paused_reason": r["paused_reason"],
            "cost_usd": usd_str(from_pico(r["cost_pico"])),
            "priority": r["priority"],
            "callback_url": r["callback_url"],
        },
    }
