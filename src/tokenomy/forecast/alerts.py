"""Proactive alerts: budgets forecast to run out, and spend spikes, sent once each.

Both checks are plain functions over a SQLite connection, for a periodic task in the
gateway. They are CPU-bound (a model fit per budget), while ``AlertSender.send`` must run
on the event loop: compute ``forecasts``/``scan`` with ``asyncio.to_thread`` and pass them
in, or call the checks straight from the loop when there are few budgets.

Once means once across restarts and replicas: the first writer of a marker row in
``budget_alerts`` sends (``at`` = ``forecast`` per budget period; ``anomaly`` per spike,
where a spike already alerted in an overlapping window is the same incident).

A forecast alerts when its *point* forecast reaches the limit before the period ends and
the limit is not yet reached. The upper bound would cry wolf on every bursty scope (it
is exceeded one time in twenty by construction); the interval travels in the alert.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from tokenomy.budgets.alerts import AlertEvent
from tokenomy.budgets.definition import Budget
from tokenomy.database import Connection
from tokenomy.forecast.anomaly import WINDOW_MINUTES, Finding, Scan, detect_anomalies
from tokenomy.forecast.budgets import BudgetForecast, forecast_budgets
from tokenomy.money import from_pico

log = logging.getLogger("tokenomy.forecast.alerts")
MIN_ALERT_HISTORY_S = 3600  # a forecast from less history does not page anyone


class Sender(Protocol):
    """What ``tokenomy.budgets.alerts.AlertSender`` offers."""

    def send(self, url: str | None, event: AlertEvent, slack: bool) -> None: ...


def _targets(budget: Budget) -> list[tuple[str | None, bool]]:
    """The budget's alert webhooks (distinct); none: log only."""
    found = {(t.webhook, t.slack) for t in budget.thresholds if t.action == "alert" and t.webhook}
    return sorted(found, key=str) or [(None, False)]


def _mark(conn: Connection, name: str, start_ms: int, at: str, now_ms: int, since: int) -> bool:
    """Insert the marker unless one for ``name`` and ``at`` starts after ``since``; True
    when this call inserted it (one statement, so two processes cannot both win)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO budget_alerts (budget, window_start, at, fired_ms) "
        "SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM budget_alerts "
        "WHERE budget = ? AND at = ? AND window_start > ?)",
        (name, start_ms, at, now_ms, name, at, since),
    )
    return cursor.rowcount == 1


def check_forecasts(
    conn: Connection,
    budgets: Sequence[Budget],
    zone: ZoneInfo,
    now_ms: int,
    sender: Sender,
    *,
    forecasts: Sequence[BudgetForecast] | None = None,
) -> list[BudgetForecast]:
    """Alert every budget forecast to exceed its limit this period (once per period);
    returns the forecasts that alerted now."""
    if forecasts is None:
        forecasts = forecast_budgets(conn, budgets, zone, now_ms)
    alerted = []
    for forecast in forecasts:
        budget = forecast.budget
        history_s = forecast.history_buckets * forecast.bucket_s
        if not forecast.will_exceed or history_s < MIN_ALERT_HISTORY_S:
            continue
        if not _mark(conn, budget.name, forecast.period_start_ms, "forecast", now_ms, 2**62):
            continue
        details = forecast.public()
        summary = (
            f"budget {budget.name} is forecast to spend ${details['forecast_usd']} of "
            f"${details['limit_usd']} this period ({details['level']:.0%} interval "
            f"${details['lower_usd']}-${details['upper_usd']}); the limit is reached around "
            f"{details['exhausts_at']}"
        )
        log.warning("%s", summary)
        limit = budget.limit_pico
        event = AlertEvent(
            budget=budget.name,
            at=Decimal(1),
            action="forecast",
            spent_usd=from_pico(forecast.spent_pico),
            limit_usd=budget.limit_usd,
            fraction_used=Decimal(forecast.spent_pico) / limit if limit else Decimal(1),
            period_start_ms=forecast.period_start_ms,
            reset_at_ms=forecast.period_end_ms,
            scope=dict(budget.scope),
            summary=summary,
            details=details,
        )
        for url, slack in _targets(budget):
            sender.send(url, event, slack)
        alerted.append(forecast)
    return alerted


def covering_budgets(finding: Finding, budgets: Sequence[Budget]) -> list[Budget]:
    """The budgets whose scope covers a principal behind the spike (tag scopes cannot be
    told from the rollups, so they never match)."""
    covering = []
    for budget in budgets:
        if any(budget.matches(_fields(p), {}) for p in finding.principals):
            covering.append(budget)
    return covering


def _fields(principal: dict[str, str]) -> dict[str, str]:
    fields = {k: v for k, v in principal.items() if k != "key_id"}
    fields["key"] = principal.get("key_id", "")
    return fields


def check_anomalies(
    conn: Connection,
    budgets: Sequence[Budget],
    zone: ZoneInfo,
    now_ms: int,
    sender: Sender,
    *,
    window_minutes: int = WINDOW_MINUTES,
    scan: Scan | None = None,
) -> list[Finding]:
    """Alert each new spend spike once, to the webhooks of the budgets that cover it (a
    log line when none does); returns the findings alerted now. ``zone`` is unused today:
    both checks take the same arguments."""
    if scan is None:
        scan = detect_anomalies(conn, now_ms, window_minutes=window_minutes)
    alerted = []
    width_ms = scan.window_end_ms - scan.window_start_ms
    for finding in scan.findings:
        name = f"anomaly:{finding.tenant}:{finding.dimension}={finding.value}"
        since = finding.window_start_ms - width_ms  # an overlapping window: same incident
        if not _mark(conn, name, finding.window_start_ms, "anomaly", now_ms, since):
            continue
        log.warning("%s", finding.describe())
        covering = covering_budgets(finding, budgets)
        targets = {(b.name, t) for b in covering for t in _targets(b) if t[0] is not None}
        for budget_name, (url, slack) in sorted(targets, key=str) or [(name, (None, False))]:
            budget = next((b for b in covering if b.name == budget_name), None)
            event = AlertEvent(
                budget=budget_name,
                at=Decimal(0),
                action="anomaly",
                spent_usd=from_pico(finding.observed_pico),
                limit_usd=budget.limit_usd if budget else Decimal(0),
                fraction_used=Decimal(0),
                period_start_ms=finding.window_start_ms,
                reset_at_ms=finding.window_end_ms,
                scope={finding.dimension: finding.value, "tenant": finding.tenant},
                summary=finding.describe(),
                details=finding.public(),
            )
            sender.send(url, event, slack)
        alerted.append(finding)
    return alerted
