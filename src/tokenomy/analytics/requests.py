"""The latest requests and one request's full record, from the events table."""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.analytics.spend import GROUPABLE, TIME_BUCKETS
from tokenomy.database import Connection
from tokenomy.errors import InvalidRequest, NotFound
from tokenomy.ledger.sqlite import EVENT_COLUMNS
from tokenomy.money import from_pico, usd_str

_FIELDS = EVENT_COLUMNS
_NAMES = [name.strip() for name in _FIELDS.split(",")]


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    record = dict(zip(_NAMES, row, strict=True))
    record["tags"] = orjson.loads(record["tags"])
    cost = from_pico(record.pop("cost_pico"))
    saved = from_pico(record.pop("saved_pico"))
    record["cost_usd"] = usd_str(cost)
    record["saved_usd"] = usd_str(saved)
    record["counterfactual_cost_usd"] = usd_str(cost + saved)
    for flag in ("stream", "cache_hit", "estimated"):
        record[flag] = bool(record[flag])
    return record


def latest_requests(conn: Connection, limit: int, filters: dict[str, str]) -> list[dict[str, Any]]:
    where, params = [], []
    for name, value in filters.items():
        if name not in GROUPABLE or name in TIME_BUCKETS:
            raise InvalidRequest(f"cannot filter requests by {name!r}", param=name)
        where.append(f"{name} = ?")
        params.append(value)
    sql = f"SELECT {_FIELDS} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts_ms DESC, id DESC LIMIT ?"
    return [_record(row) for row in conn.execute(sql, [*params, limit])]


def request_detail(conn: Connection, request_id: str) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_FIELDS} FROM events WHERE id = ?", (request_id,)).fetchone()
    if row is None:
        raise NotFound(
            f"no request {request_id!r} in the ledger", param="id", code="request_not_found"
        )
    return _record(row)
