"""The overview page: spend today, this month and in all, against budgets; the month by
day and team; top spenders; savings slots; the forecast slot."""

from __future__ import annotations

from typing import Any

from tokenomy.dashboard import figures, ranges
from tokenomy.dashboard.memo import RollupMemo, Sums
from tokenomy.database import Connection

TOP = 5
_SPLIT = 1_000_000  # pico-dollars per micro-dollar: SQLite sums stay within 64 bits
CHART_SERIES = 8  # teams drawn by name in the month chart; the rest are "other teams"
SAVINGS = (
    (
        "cache",
        "Response cache",
        "This month's requests answered from the exact or semantic cache, priced at what "
        "the model charged for the cached answer (cache.enabled in the config).",
    ),
    (
        "routing",
        "Routing",
        "This month's cost of the baseline model (the one asked for, or the route's "
        "baseline) for the same usage, minus what was charged: learned, cascade and "
        "cheapest-capable routes and budget downgrades. A cascade's rejected attempts and "
        "fallbacks to a dearer model count against it.",
    ),
    (
        "batch",
        "Batch and deferral",
        "The provider's batch discount on requests deferred to the Batch API or off-peak. "
        "Arrives with deferred jobs.",
    ),
)


def _figure(sums: Sums) -> dict[str, Any]:
    return {
        "cost_usd": figures.usd(sums.cost_pico),
        "requests": sums.requests,
        "tokens": sums.tokens,
        "errors": sums.errors,
    }


def _top(groups: dict[str, Sums], whole_pico: int) -> list[dict[str, Any]]:
    return [
        {
            "name": name or "(none)",
            "cost_usd": figures.usd(sums.cost_pico),
            "requests": sums.requests,
            "share": sums.cost_pico / whole_pico if whole_pico else 0.0,
        }
        for name, sums in figures.ranked(groups)[:TOP]
    ]


def _month_chart(grouped: dict[int, dict[str, Sums]], window: ranges.Window) -> dict[str, Any]:
    """Daily spend stacked by team: the biggest teams by name, the rest as "other teams"."""
    teams = figures.ranked(figures.by_group(grouped))
    named = [name for name, _ in teams[:CHART_SERIES]]
    labels = window.labels()
    series = {name: [0.0] * len(labels) for name in [*named, None]}
    for day_s, groups in grouped.items():
        position = (day_s * 1000 - window.start_ms) // ranges.DAY_MS
        for team, sums in groups.items():
            series[team if team in named else None][position] += sums.cost_pico / 1e12
    datasets = [{"name": name or "(no team)", "values": series[name]} for name in named]
    if len(teams) > len(named):
        datasets.append({"name": "other teams", "values": series[None]})
    return {"labels": labels, "datasets": datasets}


def _savings(conn: Connection, month: ranges.Window, total_pico: int) -> dict[str, Any]:
    """The month's savings by source: cache hits (events, by the strategy index) and
    routing (the rest of the rollups' savings)."""
    row = conn.execute(
        f"SELECT SUM(saved_pico / {_SPLIT}), SUM(saved_pico % {_SPLIT}) FROM events "
        "WHERE strategy = 'cache' AND ts_ms >= ? AND ts_ms < ?",
        (month.start_ms, month.end_ms),
    ).fetchone()
    cache_pico = int(row[0] or 0) * _SPLIT + int(row[1] or 0)
    by_slot = {"cache": cache_pico, "routing": total_pico - cache_pico, "batch": 0}
    return {
        "total_usd": figures.usd(total_pico),
        "slots": [
            {"key": key, "label": label, "usd": figures.usd(by_slot[key]), "explanation": text}
            for key, label, text in SAVINGS
        ],
    }


def ledger_days(conn: Connection) -> tuple[int, int] | None:
    """[first day, last day + 1) of the ledger in epoch ms (None: no events yet)."""
    first, last = conn.execute("SELECT MIN(day), MAX(day) FROM rollup_day").fetchone()
    return None if first is None else (int(first) * 1000, int(last) * 1000 + ranges.DAY_MS)


def overview(
    conn: Connection,
    memo: RollupMemo,
    now_ms: int,
    budgets: list[dict[str, Any]],
    forecast: dict[str, Any] | None,
) -> dict[str, Any]:
    today = ranges.today(now_ms)
    month = ranges.month(now_ms)
    by_team = memo.grouped(conn, "day", month.start_ms, month.end_ms, "team", now_ms=now_ms)
    month_sums = figures.total(by_team)
    top = {"team": _top(figures.by_group(by_team), month_sums.cost_pico)}
    for name in ("user", "model", "workflow"):
        grouped = memo.grouped(conn, "day", month.start_ms, month.end_ms, name, now_ms=now_ms)
        top[name] = _top(figures.by_group(grouped), month_sums.cost_pico)
    today_sums = figures.total(memo.grouped(conn, "day", today.start_ms, today.end_ms))
    days = ledger_days(conn)
    everything = figures.total(memo.grouped(conn, "day", *days, now_ms=now_ms)) if days else Sums()
    return {
        "generated_at_ms": now_ms,
        "today": {**_figure(today_sums), "window": today.public()},
        "month": {**_figure(month_sums), "window": month.public()},
        "all_time": _figure(everything),
        "month_chart": _month_chart(by_team, month),
        "top": top,
        "budgets": budgets,
        "forecast": forecast,
        "savings": _savings(conn, month, month_sums.saved_pico),
    }
