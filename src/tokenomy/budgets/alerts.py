"""Budget threshold alerts: one log line always, and a webhook POST when one is configured.

Delivery never blocks the request path: ``send`` schedules a background task that retries
transient failures (connection errors, timeouts, 5xx, 429) with capped exponential backoff
and jitter, honouring ``Retry-After``. Any other 4xx is the receiver refusing the payload,
so retrying cannot help. Webhook URLs often carry a secret (Slack's do), so logs name only
the host.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from tokenomy.budgets.periods import iso_utc
from tokenomy.money import normalize, usd_str

log = logging.getLogger("tokenomy.budgets.alerts")

EVENT_TYPE = "tokenomy.budget.threshold"
MAX_RETRY_AFTER_S = 900.0  # a receiver asking for longer gets this; the alert is stale by then


@dataclass(frozen=True, slots=True)
class AlertEvent:
    budget: str
    at: Decimal  # the threshold crossed, a fraction of the limit
    action: str
    spent_usd: Decimal
    limit_usd: Decimal
    fraction_used: Decimal
    period_start_ms: int
    reset_at_ms: int  # periods.FOREVER_MS (a "total" budget) is sent as null
    scope: dict[str, str]
    # Forecast and anomaly alerts explain themselves: one line, and the evidence.
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def alert_payload(event: AlertEvent, slack: bool) -> dict[str, Any]:
    """The JSON body: tokenomy's own event, or a Slack-compatible message."""
    if slack:
        text = _escape_slack(f"tokenomy: {describe(event)}")
        scope = ", ".join(f"{k}={v}" for k, v in sorted(event.scope.items())) or "everything"
        resets = _iso(event.reset_at_ms) or "never (total budget)"
        details = f"action: {event.action} · scope: {scope} · resets: {resets}"
        return {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": _escape_slack(details)}],
                },
            ],
        }
    return {
        "type": EVENT_TYPE,
        "budget": event.budget,
        "threshold": float(event.at),
        "action": event.action,
        "spent_usd": usd_str(event.spent_usd),
        "limit_usd": usd_str(event.limit_usd),
        "fraction_used": round(float(event.fraction_used), 4),
        "period_start": _iso(event.period_start_ms),
        "reset_at": _iso(event.reset_at_ms),
        "scope": dict(event.scope),
        **({"summary": event.summary} if event.summary else {}),
        **({"details": event.details} if event.details else {}),
    }


def describe(event: AlertEvent) -> str:
    """One readable line: budget X reached 80% (spent $8.1 of $10)."""
    if event.summary:
        return event.summary
    percent = format(normalize(event.at * 100), "f")
    return (
        f"budget {event.budget} reached {percent}% "
        f"(spent ${usd_str(event.spent_usd)} of ${usd_str(event.limit_usd)})"
    )


def _iso(ms: int) -> str | None:
    """ISO 8601 UTC with a Z (milliseconds only when there are any); None: never."""
    return iso_utc(ms, "milliseconds" if ms % 1000 else "seconds")


def _escape_slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class AlertSender:
    def __init__(
        self,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        *,
        attempts: int = 5,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._session_factory = session_factory or aiohttp.ClientSession
        self._session: aiohttp.ClientSession | None = None
        self._attempts = attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._close_timeout_s = close_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.delivered = 0
        self.failed = 0

    def send(self, url: str | None, event: AlertEvent, slack: bool) -> None:
        """Log the alert; POST it to ``url`` in the background. Call from the event loop."""
        log.warning("%s", describe(event))
        if url is None:
            return
        self.post(url, alert_payload(event, slack), f"budget alert for {event.budget}")

    def post(self, url: str, payload: dict[str, Any], what: str) -> None:
        """POST ``payload`` as JSON to ``url`` in the background, with the same retries
        (any webhook: a budget alert, a deferred job's callback). ``what`` names it in logs."""
        if self._closed:
            self.failed += 1
            log.error("%s to %s dropped: the sender is closed", what, _host(url))
            return
        body = orjson.dumps(payload)
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait (bounded) for deliveries in flight, cancel the rest, close the session."""
        self._closed = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._close_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, url: str, body: bytes, what: str) -> None:
        host = _host(url)
        outcome: str | None = None
        try:
            for attempt in range(self._attempts):
                outcome, retry_after = await self._post(url, body)
                if outcome is None:
                    self.delivered += 1
                    return
                if retry_after is None:  # final: the receiver refused the payload
                    self.failed += 1
                    log.error("%s to %s refused: %s", what, host, outcome)
                    return
                if attempt + 1 < self._attempts:
                    delay = retry_after if retry_after > 0 else self._backoff(attempt)
                    log.info("%s to %s failed (%s); retry in %.2f s", what, host, outcome, delay)
                    await asyncio.sleep(delay)
            self.failed += 1
            log.error(
                "%s to %s gave up after %d attempts: %s",
                what,
                host,
                self._attempts,
                outcome,
            )
        except asyncio.CancelledError:
            self.failed += 1
            log.error("%s to %s abandoned at shutdown", what, host)
            raise
        except Exception:  # a bug must not vanish with the background task
            self.failed += 1
            log.exception("%s to %s failed unexpectedly", what, host)

    async def _post(self, url: str, body: bytes) -> tuple[str | None, float | None]:
        """(None, _) delivered; (why, None) final; (why, s) retry after s (0: use backoff)."""
        if self._session is None:
            self._session = self._session_factory()
        headers = {"content-type": "application/json"}
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                if 200 <= response.status < 300:
                    return None, None
                why = f"HTTP {response.status}"
                if response.status == 429:
                    return why, _retry_after(response.headers.get("retry-after"))
                if response.status >= 500:
                    return why, 0.0
                return why, None
        except TimeoutError:
            return "timed out", 0.0
        except aiohttp.ClientError as exc:
            return type(exc).__name__, 0.0

    def _backoff(self, attempt: int) -> float:
        """Exponential, capped, with equal jitter (half fixed, half random)."""
        delay = min(self._max_delay_s, self._base_delay_s * 2.0**attempt)
        return delay / 2 + random.uniform(0, delay / 2)


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); 0 when absent/invalid."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return 0.0
    if seconds != seconds:  # NaN
        return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"
