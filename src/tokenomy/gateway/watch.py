"""The gateway's spend watch: every few minutes, forecast every budget to its period end
and scan for spend spikes; alert on both (once per period / per incident) and keep the
latest outlook for the admin API and the dashboard.

The statistics run in a worker thread with their own database connection; alerts are
sent from the event loop, where the alert sender lives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from tokenomy import database
from tokenomy.budgets.alerts import AlertSender
from tokenomy.budgets.book import BudgetBook
from tokenomy.budgets.definition import Budget
from tokenomy.forecast.alerts import check_anomalies, check_forecasts
from tokenomy.forecast.anomaly import Scan, detect_anomalies
from tokenomy.forecast.budgets import BudgetForecast, forecast_budgets

log = logging.getLogger("tokenomy.watch")
FIRST_RUN_AFTER_S = 5.0


@dataclass
class SpendWatch:
    database_url: str
    book: BudgetBook
    zone: ZoneInfo
    alerts: AlertSender
    every_s: float
    forecasts: dict[str, dict[str, Any]] = field(default_factory=dict)
    anomalies: dict[str, Any] | None = None
    last_run_ms: int | None = None

    async def run_forever(self) -> None:
        await asyncio.sleep(min(FIRST_RUN_AFTER_S, self.every_s))
        while True:
            try:
                await self.run_once()
            except Exception:  # a bad round must not stop the watch
                log.exception("spend watch round failed")
            await asyncio.sleep(self.every_s)

    async def run_once(self) -> None:
        now_ms = time.time_ns() // 1_000_000
        budgets = self.book.all()
        forecasts, scan = await asyncio.to_thread(self._outlook, budgets, now_ms)
        self.forecasts = {f.budget.name: f.public() for f in forecasts}
        self.anomalies = scan.public()
        self.last_run_ms = now_ms
        conn = database.connect(self.database_url)
        try:
            check_forecasts(conn, budgets, self.zone, now_ms, self.alerts, forecasts=forecasts)
            check_anomalies(conn, budgets, self.zone, now_ms, self.alerts, scan=scan)
        finally:
            conn.close()

    def _outlook(self, budgets: list[Budget], now_ms: int) -> tuple[list[BudgetForecast], Scan]:
        conn = database.connect(self.database_url)
        try:
            return forecast_budgets(conn, budgets, self.zone, now_ms), detect_anomalies(
                conn, now_ms
            )
        finally:
            conn.close()
