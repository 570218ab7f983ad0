"""Budget alerts: payloads, and delivery to a real local HTTP receiver with retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tokenomy.budgets.alerts import AlertEvent, AlertSender, _retry_after, alert_payload
from tokenomy.budgets.periods import FOREVER_MS

JAN_1 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
FEB_1 = 1_738_368_000_000  # 2025-02-01T00:00:00Z

EVENT = AlertEvent(
    budget="monthly-eng",
    at=Decimal("0.8"),
    action="alert",
    spent_usd=Decimal("8.1000"),
    limit_usd=Decimal("10"),
    fraction_used=Decimal("0.81"),
    period_start_ms=JAN_1,
    reset_at_ms=FEB_1,
    scope={"team": "eng"},
)
EXPECTED = {
    "type": "tokenomy.budget.threshold",
    "budget": "monthly-eng",
    "threshold": 0.8,
    "action": "alert",
    "spent_usd": "8.1",
    "limit_usd": "10",
    "fraction_used": 0.81,
    "period_start": "2025-01-01T00:00:00Z",
    "reset_at": "2025-02-01T00:00:00Z",
    "scope": {"team": "eng"},
}
LINE = "budget monthly-eng reached 80% (spent $8.1 of $10)"


@dataclass
class Receiver:
    """Answers scripted statuses (then 200); may hold the first requests open."""

    url: str = ""
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hold_s: list[float] = field(default_factory=list)  # per request, before answering
    bodies: list[Any] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        index = len(self.bodies)
        self.times.append(time.monotonic())
        self.content_types.append(request.headers.get("content-type", ""))
        self.bodies.append(await request.json())
        if index < len(self.hold_s):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.hold_s[index])
        status, headers = self.script[index] if index < len(self.script) else (200, {})
        return web.Response(status=status, headers=headers, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    rec.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    yield rec
    rec.release.set()
    await runner.cleanup()


def fast_sender(**kwargs: Any) -> AlertSender:
    options: dict[str, Any] = {"base_delay_s": 0.001, "max_delay_s": 0.01, "timeout_s": 5.0}
    return AlertSender(**(options | kwargs))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens: connection refused


def test_payload_is_exact() -> None:
    assert alert_payload(EVENT, slack=False) == EXPECTED


def test_payload_times_in_utc_and_never_for_total_budgets() -> None:
    event = replace(EVENT, period_start_ms=JAN_1 + 1500, reset_at_ms=FOREVER_MS)
    payload = alert_payload(event, slack=False)
    assert payload["period_start"] == "2025-01-01T00:00:01.500Z"
    assert payload["reset_at"] is None


def test_slack_payload_is_one_readable_line_with_blocks() -> None:
    event = replace(EVENT, budget="r&d <core>", action="downgrade")
    payload = alert_payload(event, slack=True)
    assert set(payload) == {"text", "blocks"}
    text = payload["text"]
    assert text == "tokenomy: budget r&amp;d &lt;core&gt; reached 80% (spent $8.1 of $10)"
    assert "\n" not in text
    assert payload["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    context = payload["blocks"][1]["elements"][0]["text"]
    assert "action: downgrade" in context
    assert "team=eng" in context
    assert "2025-02-01T00:00:00Z" in context


async def test_send_without_url_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    sender = fast_sender()
    with caplog.at_level(logging.WARNING, logger="tokenomy.budgets.alerts"):
        sender.send(None, EVENT, slack=False)
    await sender.close()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, LINE)]
    assert (sender.delivered, sender.failed) == (0, 0)


async def test_5xx_is_retried_then_delivered_once_with_the_exact_payload(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [(500, {}), (503, {})]
    sender = fast_sender()
    with caplog.at_level(logging.WARNING, logger="tokenomy.budgets.alerts"):
        sender.send(receiver.url, EVENT, slack=False)
        await sender.close()
    assert receiver.bodies == [EXPECTED] * 3
    assert receiver.content_types == ["application/json"] * 3
    assert (sender.delivered, sender.failed) == (1, 0)
    assert [r.getMessage() for r in caplog.records] == [LINE]  # the one warning, no error


async def test_slack_payload_is_posted(receiver: Receiver) -> None:
    sender = fast_sender()
    sender.send(receiver.url, EVENT, slack=True)
    await sender.close()
    assert receiver.bodies == [alert_payload(EVENT, slack=True)]
    assert sender.delivered == 1


async def test_4xx_is_final(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.script = [(400, {})]
    sender = fast_sender()
    with caplog.at_level(logging.WARNING, logger="tokenomy.budgets.alerts"):
        sender.send(receiver.url, EVENT, slack=False)
        await sender.close()
    assert len(receiver.bodies) == 1
    assert (sender.delivered, sender.failed) == (0, 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["budget alert for monthly-eng to 127.0.0.1 refused: HTTP 400"]


async def test_429_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "1"})]
    sender = fast_sender()  # its own backoff would retry within 10 ms
    sender.send(receiver.url, EVENT, slack=False)
    await sender.close()
    assert len(receiver.bodies) == 2
    assert sender.delivered == 1
    assert receiver.times[1] - receiver.times[0] >= 0.95  # a lower bound: sleeps never end early


async def test_5xx_gives_up_after_attempts(receiver: Receiver) -> None:
    receiver.script = [(502, {})] * 10
    sender = fast_sender(attempts=3)
    sender.send(receiver.url, EVENT, slack=False)
    await sender.close()
    assert len(receiver.bodies) == 3
    assert (sender.delivered, sender.failed) == (0, 1)


async def test_unreachable_url_gives_up_after_attempts(caplog: pytest.LogCaptureFixture) -> None:
    starts: list[str] = []

    async def on_start(_: aiohttp.ClientSession, __: SimpleNamespace, params: Any) -> None:
        starts.append(str(params.url))

    def session() -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_start)
        return aiohttp.ClientSession(trace_configs=[trace])

    url = closed_port_url()
    sender = fast_sender(session_factory=session, attempts=4)
    with caplog.at_level(logging.WARNING, logger="tokenomy.budgets.alerts"):
        sender.send(url, EVENT, slack=False)
        await sender.close()
    assert starts == [url] * 4
    assert (sender.delivered, sender.failed) == (0, 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "gave up after 4 attempts" in errors[0]


async def test_timeout_is_retried(receiver: Receiver) -> None:
    receiver.hold_s = [30.0]  # the first request hangs (until teardown releases it)
    sender = fast_sender(timeout_s=0.5)
    sender.send(receiver.url, EVENT, slack=False)
    await sender.close()
    assert len(receiver.bodies) >= 2  # exactly 2 unless a loaded machine is slower than 0.5 s
    assert (sender.delivered, sender.failed) == (1, 0)


async def test_close_waits_for_in_flight_deliveries(receiver: Receiver) -> None:
    receiver.hold_s = [0.3, 0.3]
    sender = fast_sender()
    sender.send(receiver.url, EVENT, slack=False)
    sender.send(receiver.url, EVENT, slack=True)
    assert sender.delivered == 0  # send() returned without waiting
    await sender.close()
    assert sender.delivered == 2


async def test_close_is_bounded_and_counts_abandoned_deliveries(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.hold_s = [30.0]
    sender = fast_sender(close_timeout_s=0.2)
    with caplog.at_level(logging.WARNING, logger="tokenomy.budgets.alerts"):
        sender.send(receiver.url, EVENT, slack=False)
        await sender.close()
    assert (sender.delivered, sender.failed) == (0, 1)
    assert any("abandoned at shutdown" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.WARNING, logger="tokenomy.budgets.alerts"):
        sender.send(receiver.url, EVENT, slack=False)  # after close: dropped, not scheduled
    assert sender.failed == 2
    assert len(receiver.bodies) == 1


def test_retry_after_header_forms() -> None:
    assert _retry_after(None) == 0
    assert _retry_after("2") == 2
    assert _retry_after("0.5") == 0.5
    assert _retry_after("soon") == 0
    assert _retry_after("-3") == 0
    assert _retry_after("99999") == 900  # capped
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 50 < _retry_after(in_a_minute) <= 60


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    sender = AlertSender(base_delay_s=1.0, max_delay_s=8.0)
    for attempt, full in enumerate([1.0, 2.0, 4.0, 8.0, 8.0, 8.0]):
        delays = [sender._backoff(attempt) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AlertSender(attempts=0)
