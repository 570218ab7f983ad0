"""The models page (prices by token class, tier, share of spend) and the requests page
(the latest requests, with their cost and route reason)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokenomy.analytics.requests import latest_requests
from tokenomy.analytics.spend import EVENT_DIMENSIONS
from tokenomy.dashboard import figures, ranges
from tokenomy.dashboard.memo import RollupMemo, Sums
from tokenomy.database import Connection
from tokenomy.ledger.event import ROLLUP_DIMENSIONS
from tokenomy.pricing.catalog import Model

# Every ledger field a request can be filtered by (what analytics.requests accepts).
REQUEST_FILTERS = (*ROLLUP_DIMENSIONS, *EVENT_DIMENSIONS)


def models_page(
    conn: Connection, memo: RollupMemo, catalog: Iterable[Model], now_ms: int
) -> dict[str, Any]:
    month = ranges.month(now_ms)
    grouped = memo.grouped(conn, "day", month.start_ms, month.end_ms, "model", now_ms=now_ms)
    spend = figures.by_group(grouped)
    whole = figures.total(grouped).cost_pico
    models: list[dict[str, Any]] = []
    ranking: list[tuple[int, str]] = []
    for model in catalog:
        sums = spend.pop(model.name, Sums())
        ranking.append((sums.cost_pico, model.name))
        models.append({**model.public(), "month": figures.row(sums, whole)})
    order = {name: i for i, (_, name) in enumerate(sorted(ranking, key=lambda r: (-r[0], r[1])))}
    models.sort(key=lambda m: order[m["name"]])
    # Spend on models no longer in the catalog still counts in the month's total.
    retired = [{"name": name, "month": figures.row(sums, whole)} for name, sums in spend.items()]
    return {
        "window": month.public(),
        "month_cost_usd": figures.usd(whole),
        "models": models,
        "retired": retired,
    }


def requests_page(
    conn: Connection, limit: int, filters: dict[str, str], store_content: bool
) -> dict[str, Any]:
    rows = latest_requests(conn, limit, filters)
    if not store_content:
        for row in rows:
            row.pop("prompt", None)
            row.pop("completion", None)
    return {
        "rows": rows,
        "limit": limit,
        "filters": filters,
        "store_content": store_content,
        "filterable": list(REQUEST_FILTERS),
    }
