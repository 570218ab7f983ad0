"""Where forecasts enter the dashboard (the forecasting itself lives in tokenomy.forecast).

The dashboard asks an optional :class:`ForecastSource` and shows "not enough history"
wherever it answers ``None`` (or none is installed). Shapes it expects:

- overview: ``{"period_end_usd": "123.45", "low_usd": "110.00" | None,
  "high_usd": "140.00" | None, "basis": "14 days of history"}`` — spend projected to the
  end of the current UTC month;
- per budget: ``{"exhausts_at": "2026-11-27T00:00:00Z" | None, "exhausted": False,
  "period_end_usd": "9.80", "low_usd": ..., "high_usd": ..., "basis": "..."}`` — when the
  budget's limit would be reached at the projected rate (None: not this period).

Without a source, budgets show the gateway's spend watch (``Gateway.watch.forecasts``),
and the overview shows the forecast of a month budget over everything, if there is one.
"""

from __future__ import annotations

from typing import Any, Protocol

from tokenomy.database import Connection


class ForecastSource(Protocol):
    def month(self, conn: Connection, now_ms: int) -> dict[str, Any] | None: ...

    def budget(
        self, conn: Connection, state: dict[str, Any], now_ms: int
    ) -> dict[str, Any] | None: ...
