"""Candidate self-hosted models in the ledger: what ``tokenomy distill`` and ``tokenomy
quantize-eval`` measured, with the capacity model's cost per million tokens, so the
planner can price traffic sent to them (``tokenomy plan whatif --switch
team=support:NAME``).

No torch here: the planner reads candidates without the ``model`` extra. A candidate is
priced at its projected GPU cost per million tokens, input and output alike
(``usd_per_mtok_all_tokens``: the deployment's hourly price over every token it
processes at the prompt and output lengths it was projected for).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from tokenomy.database import Connection
from tokenomy.errors import InvalidRequest
from tokenomy.pricing import PriceSheet

COLUMNS = (
    "name",
    "source",
    "task",
    "path",
    "base_model",
    "params",
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "vocab",
    "weights",
    "gpu",
    "isl",
    "osl",
    "usd_per_mtok",
    "usd_per_mtok_all_tokens",
    "quality_metric",
    "quality",
    "base_quality",
    "cpu_tokens_per_s",
    "report",
    "created_at",
)


def _usd(value: Any) -> str | None:
    return None if value is None else str(Decimal(repr(float(value))))


def record(
    conn: Connection,
    name: str,
    source: str,
    task: str,
    path: str,
    base_model: str,
    params: int,
    shape: dict[str, int],
    projected: dict[str, Any],
    quality: dict[str, Any],
    base_quality: dict[str, Any] | None,
    cpu_tokens_per_s: float | None,
    report: dict[str, Any],
) -> dict[str, Any]:
    """Insert or replace the candidate ``name``; the row as stored."""
    if not name.strip():
        raise InvalidRequest("a candidate needs a name", param="name")
    row = {
        "name": name,
        "source": source,
        "task": task,
        "path": path,
        "base_model": base_model,
        "params": int(params),
        **{k: int(shape[k]) for k in ("layers", "hidden", "heads", "kv_heads", "head_dim")},
        "vocab": int(shape["vocab"]),
        "weights": projected["weights"],
        "gpu": projected["gpu"],
        "isl": int(projected["isl"]),
        "osl": int(projected["osl"]),
        "usd_per_mtok": _usd(projected.get("usd_per_mtok")),
        "usd_per_mtok_all_tokens": _usd(projected.get("usd_per_mtok_all_tokens")),
        "quality_metric": quality["metric"],
        "quality": float(quality["value"]),
        "base_quality": None if base_quality is None else float(base_quality["value"]),
        "cpu_tokens_per_s": cpu_tokens_per_s,
        "report": json.dumps(report, default=str),
        "created_at": int(time.time() * 1000),
    }
    names = ", ".join(COLUMNS)
    marks = ", ".join("?" for _ in COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "name")
    conn.execute(
        f"INSERT INTO model_candidates ({names}) VALUES ({marks}) "
        f"ON CONFLICT (name) DO UPDATE SET {updates}",
        [row[c] for c in COLUMNS],
    )
    return row


def _row(raw: Any) -> dict[str, Any]:
    row = dict(zip(COLUMNS, raw, strict=True))
    row["report"] = json.loads(row["report"])
    return row


def listing(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM model_candidates ORDER BY name")
    return [_row(r) for r in rows.fetchall()]


def get(conn: Connection, name: str) -> dict[str, Any] | None:
    raw = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM model_candidates WHERE name = ?", (name,)
    ).fetchone()
    return None if raw is None else _row(raw)


def remove(conn: Connection, name: str) -> bool:
    return conn.execute("DELETE FROM model_candidates WHERE name = ?", (name,)).rowcount > 0


def price(conn: Connection, name: str) -> PriceSheet | None:
    """The candidate's projected cost as a price sheet (input = output per token)."""
    row = conn.execute(
        "SELECT usd_per_mtok_all_tokens FROM model_candidates WHERE name = ?", (name,)
    ).fetchone()
    if row is None or row[0] is None:
        return None
    per_mtok = Decimal(str(row[0]))
    return PriceSheet(per_mtok, per_mtok)
