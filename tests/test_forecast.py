"""Forecasts: MASE and the backtest (on the real Azure trace, through the CLI), prediction
intervals on series of known structure, budget forecasts from a real ledger, and the
proactive forecast alert (once per period, to a real local webhook receiver)."""

from __future__ import annotations

import csv
import random
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from conftest import SHARED_DATA
from tokenomy import database
from tokenomy.budgets.alerts import AlertEvent, AlertSender
from tokenomy.budgets.definition import Budget, parse_budget
from tokenomy.cli.main import cli
from tokenomy.forecast.alerts import check_forecasts
from tokenomy.forecast.budgets import forecast_budget
from tokenomy.forecast.demand import mase, mase_scale
from tokenomy.forecast.models import ets, seasonal_naive
from tokenomy.ledger.event import UsageEvent
from tokenomy.ledger.sqlite import SqliteLedgerStore
from tokenomy.usage import Usage

TRACE = SHARED_DATA / "traces" / "azure_llm_2023_code.csv"
UTC_ZONE = ZoneInfo("UTC")
DAY0 = datetime(2026, 11, 20, tzinfo=UTC)  # a Friday; budgets below are daily
HOUR_MS = 3_600_000
USD = 10**12  # pico-dollars


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def event(index: int, ts_ms: int, cost_pico: int, user: str = "ann", **dims: str) -> UsageEvent:
    """One chat request as the gateway records it."""
    fields = {"team": "eng", "workflow": "chat", "key_id": f"key_{user}", **dims}
    return UsageEvent(
        id=f"req_{index:09d}",
        ts_ms=ts_ms,
        tenant="default",
        key_id=fields["key_id"],
        user=user,
        team=fields["team"],
        department="rnd",
        project="p",
        environment="prod",
        workflow=fields["workflow"],
        tags={},
        endpoint="chat.completions",
        requested_model="gpt-4o-mini",
        model=fields.get("model", "gpt-4o-mini"),
        tier="mid",
        upstream="mock",
        route_reason="requested",
        usage=Usage(input_tokens=500, output_tokens=100),
        cost_pico=cost_pico,
        latency_ms=10.0,
        status=200,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> sqlite3.Connection:
    return database.connect(f"sqlite:///{tmp_path / 'ledger.db'}")


def write(conn: sqlite3.Connection, events: list[UsageEvent]) -> None:
    SqliteLedgerStore(conn).write_batch(events)


def budget(limit: str, **extra: Any) -> Budget:
    return parse_budget(
        "eng-day", {"scope": {"team": "eng"}, "period": "day", "limit_usd": limit, **extra}
    )


# -- MASE and models -----------------------------------------------------------------------


def test_mase_is_error_over_in_sample_naive_error() -> None:
    history = [1.0, 3.0, 2.0, 4.0]  # naive one-step errors 2, 1, 2: mean 5/3
    assert mase_scale(history, 1) == pytest.approx(5 / 3)
    assert mase([5.0, 5.0], [4.0, 7.0], 5 / 3) == pytest.approx(1.5 / (5 / 3))
    assert mase_scale([1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 3) == 0.0  # a perfect season
    with pytest.raises(ValueError):
        mase_scale([1.0], 1)


def test_seasonal_naive_repeats_the_last_season() -> None:
    assert seasonal_naive([1, 2, 3, 4, 5, 6], 5, None, season=3).mean == [4, 5, 6, 4, 5]
    assert seasonal_naive([1, 2, 3], 2, None).mean == [3, 3]


def test_ets_intervals_cover_a_trend_with_noise() -> None:
    """A linear trend plus Gaussian noise: the 90% intervals of the ETS forecast hold
    about 90% of the future values, and the point follows the trend (not the mean)."""
    pytest.importorskip("statsmodels", reason="the forecast extra is not installed")
    rng = random.Random(7)
    y = [100 + 0.8 * t + rng.gauss(0, 5) for t in range(260)]
    inside = total = 0
    errors = []
    for origin in range(120, 250, 10):
        prediction = ets(y[:origin], 10, 0.9)
        assert prediction.lower is not None and prediction.upper is not None
        for k in range(10):
            actual = y[origin + k]
            inside += prediction.lower[k] <= actual <= prediction.upper[k]
            total += 1
            errors.append(abs(prediction.mean[k] - (100 + 0.8 * (origin + k))))
    assert 0.8 <= inside / total <= 0.99
    assert sum(errors) / len(errors) < 5  # within one noise sd of the true trend


# -- the backtest --------------------------------------------------------------------------


def write_trace(path: Path, per_minute: list[int], rng: random.Random) -> None:
    """An Azure-format trace: requests spread over each minute, tokens summing as given."""
    start = datetime(2023, 11, 16, 18, 0, tzinfo=UTC)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for minute, tokens in enumerate(per_minute):
            for part in range(4):
                moment = start + timedelta(minutes=minute, seconds=part * 15 + rng.random())
                stamp = moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "0"
                out.writerow([stamp, tokens // 4 - 10, 10])


def run_backtest(trace: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["forecast", "backtest", "--trace", str(trace), "--json", *args]
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = orjson.loads(result.output)
    return data


def test_backtest_on_the_azure_trace_beats_seasonal_naive() -> None:
    if not TRACE.exists():
        pytest.skip(f"{TRACE} is absent (real data lives in ../shared/data; present in CI)")
    pytest.importorskip("statsmodels", reason="the forecast extra is not installed")
    data = run_backtest(TRACE, "--horizons", "1,5,10,30")
    assert set(data["horizons"]) == {"1", "5", "10", "30"}
    ten = data["horizons"]["10"]
    assert ten["baseline"] == "seasonal_naive"
    assert ten["mase"] < 1.0
    assert ten["mase"] < ten["baseline_mase"]
    assert ten["origins"] > 20
    assert data["model"] == "ets" and data["season_minutes"] == 1
    assert set(ten["models"]) >= {"mean", "ets", "theta", "arima"}


def test_backtest_scores_what_each_series_rewards(tmp_path: Path) -> None:
    """On a random walk the last value is the best forecast, so the mean loses to the
    seasonal-naive baseline; on noise around a level the mean wins. ETS adapts to both."""
    pytest.importorskip("statsmodels", reason="the forecast extra is not installed")
    rng = random.Random(3)
    walk = [50_000]
    for _ in range(89):
        walk.append(max(walk[-1] + int(rng.gauss(0, 4000)), 1000))
    level = [max(int(rng.gauss(50_000, 8000)), 1000) for _ in range(90)]
    for name, series in (("walk", walk), ("level", level)):
        write_trace(tmp_path / f"{name}.csv", series, rng)
    walked = run_backtest(tmp_path / "walk.csv", "--horizons", "1,10", "--models", "mean")
    leveled = run_backtest(tmp_path / "level.csv", "--horizons", "1,10", "--models", "mean")
    assert walked["minutes"] == 90
    for horizon in ("1", "10"):
        w, lv = walked["horizons"][horizon], leveled["horizons"][horizon]
        assert w["models"]["mean"] > w["baseline_mase"]
        assert w["mase"] < 1.2 * w["baseline_mase"]
        assert lv["models"]["mean"] < lv["baseline_mase"]
        assert lv["mase"] < lv["baseline_mase"]


def test_backtest_rejects_a_file_that_is_not_a_trace(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("when,tokens\n2023-11-16 18:00:00,5\n")
    result = CliRunner().invoke(cli, ["forecast", "backtest", "--trace", str(bad), "--json"])
    assert result.exit_code != 0
    assert "TIMESTAMP" in result.output


# -- budget forecasts ----------------------------------------------------------------------


def steady_spend(
    start: datetime,
    hours: int,
    per_hour_usd: float,
    rng: random.Random,
    active: range | None = None,
) -> list[UsageEvent]:
    """One request every 5 minutes for ``hours``, about ``per_hour_usd`` an hour (only in
    the ``active`` hours of the day when given)."""
    events = []
    for step in range(hours * 12):
        moment = start + timedelta(minutes=5 * step)
        if active is not None and moment.hour not in active:
            continue
        cost = int(per_hour_usd / 12 * USD * rng.uniform(0.7, 1.3))
        events.append(event(step, _ms(moment), cost))
    return events


def test_budget_forecast_projects_steady_spend_to_period_end(
    ledger: sqlite3.Connection,
) -> None:
    """About $1/hour for four days and 14 hours: at 14:00 a $20 daily budget has about $14
    spent. The interval holds what the rest of the day then really spends, and the
    predicted exhaustion is close to when the real spend crosses the limit."""
    pytest.importorskip("statsmodels", reason="the forecast extra is not installed")
    rng = random.Random(11)
    now = _ms(DAY0 + timedelta(hours=14))
    everything = steady_spend(DAY0 - timedelta(days=4), 5 * 24, 1.0, rng)
    write(ledger, [e for e in everything if e.ts_ms < now])
    out = forecast_budget(ledger, budget("20"), UTC_ZONE, now).public()
    assert out["method"].startswith("ets_"), out
    spent = float(out["spent_usd"])
    assert 13 < spent < 15
    today = sorted((e for e in everything if e.ts_ms >= _ms(DAY0)), key=lambda e: e.ts_ms)
    real_total = sum(e.cost_pico for e in today) / USD
    assert float(out["lower_usd"]) <= real_total <= float(out["upper_usd"]), (real_total, out)
    assert abs(float(out["forecast_usd"]) - real_total) < 0.5
    assert out["will_exceed"] and not out["exhausted"]
    running, crossed = 0, 0
    for e in today:
        running += e.cost_pico
        if running >= 20 * USD:
            crossed = e.ts_ms
            break
    exhausts = _ms(datetime.fromisoformat(out["exhausts_at"]))
    assert abs(exhausts - crossed) < HOUR_MS / 2, (out, crossed)
    earliest = _ms(datetime.fromisoformat(out["exhausts_at_earliest"]))
    assert now < earliest <= exhausts
    assert out["period_end"] == "2026-11-21T00:00:00Z"
    # A limit the day cannot reach: no exhaustion time, the forecast stays below it.
    roomy = forecast_budget(ledger, budget("40"), UTC_ZONE, now).public()
    assert roomy["exhausts_at"] is None and not roomy["will_exceed"]


def test_budget_forecast_follows_the_daily_cycle(ledger: sqlite3.Connection) -> None:
    """Spend only from 09:00 to 17:00 at $2/hour: at 10:00 the rest of the day holds seven
    working hours ($14 more), not fourteen hours at the daily average ($9.3 more)."""
    pytest.importorskip("statsmodels", reason="the forecast extra is not installed")
    rng = random.Random(5)
    spend = steady_spend(DAY0 - timedelta(days=6), 6 * 24 + 10, 2.0, rng, active=range(9, 17))
    write(ledger, spend)
    out = forecast_budget(ledger, budget("100"), UTC_ZONE, _ms(DAY0 + timedelta(hours=10))).public()
    assert out["method"].endswith("a"), out  # a seasonal ETS
    assert "daily season" in out["note"]
    more = float(out["forecast_usd"]) - float(out["spent_usd"])
    assert 12 < more < 16, out


def test_budget_forecast_with_little_history_says_so(ledger: sqlite3.Connection) -> None:
    rng = random.Random(2)
    start = DAY0 + timedelta(hours=12)
    write(ledger, steady_spend(start, 2, 3.0, rng))  # two hours at $3/hour
    now = _ms(start + timedelta(hours=2))
    out = forecast_budget(ledger, budget("100"), UTC_ZONE, now).public()
    assert out["method"] == "mean_rate" and out["bucket"] == "minute"
    assert "less than a day of history" in out["note"]
    assert 27 < float(out["forecast_usd"]) - float(out["spent_usd"]) < 33  # 10 h x $3
    assert float(out["lower_usd"]) < float(out["forecast_usd"]) < float(out["upper_usd"])
    ops = parse_budget("x", {"scope": {"team": "ops"}, "limit_usd": "5", "period": "day"})
    empty = forecast_budget(ledger, ops, UTC_ZONE, now).public()
    assert empty["method"] == "none" and empty["note"] == "no spend in this scope yet"
    assert empty["forecast_usd"] == "0" and empty["exhausts_at"] is None


def test_forecast_cli_prints_every_budget(tmp_path: Path, ledger: sqlite3.Connection) -> None:
    rng = random.Random(4)
    start = DAY0 + timedelta(hours=10)
    write(ledger, steady_spend(start, 3, 1.0, rng))
    config = tmp_path / "tokenomy.yaml"
    config.write_text(f"database: sqlite:///{tmp_path / 'ledger.db'}\nmodels: []\n")
    runner = CliRunner()
    scope = ["--scope", "team=eng", "--limit", "5", "--period", "day"]
    made = runner.invoke(cli, ["budgets", "set", "eng-day", "--config", str(config), *scope])
    assert made.exit_code == 0, made.output
    at = (start + timedelta(hours=3)).isoformat()
    result = runner.invoke(
        cli, ["forecast", "budgets", "--config", str(config), "--json", "--at", at]
    )
    assert result.exit_code == 0, result.output
    (row,) = orjson.loads(result.output)
    assert row["budget"] == "eng-day" and row["will_exceed"]  # $3 by 13:00, ~$1/h after
    table = runner.invoke(cli, ["forecast", "--config", str(config)])
    assert table.exit_code == 0, table.output
    assert "eng-day: " in table.output  # the table, then each budget's note (as of now)


# -- proactive alerts ----------------------------------------------------------------------


@dataclass
class Recorder:
    sent: list[tuple[str | None, AlertEvent, bool]] = field(default_factory=list)

    def send(self, url: str | None, event: AlertEvent, slack: bool) -> None:
        self.sent.append((url, event, slack))


def test_forecast_alert_is_sent_once_per_period(tmp_path: Path) -> None:
    """$1/hour from 08:00 against a $12 daily limit: at 10:00 ($2 spent, $16 forecast) the
    alert goes out, before the 80% threshold; not again that day, even after a restart;
    again the next day, when spend goes on at the same rate."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    conn = database.connect(url)
    start = DAY0 + timedelta(hours=8)
    spend = steady_spend(start, 22, 1.0, random.Random(9))  # until 06:00 the next day
    now = _ms(start + timedelta(hours=2))
    write(conn, [e for e in spend if e.ts_ms < now])
    hooked = budget(
        "12", thresholds=[{"at": 0.8, "action": "alert", "webhook": "http://127.0.0.1:9/hook"}]
    )
    quiet = parse_budget("big", {"scope": {"team": "eng"}, "period": "day", "limit_usd": "100"})
    recorder = Recorder()
    alerted = check_forecasts(conn, [hooked, quiet], UTC_ZONE, now, recorder)
    assert [f.budget.name for f in alerted] == ["eng-day"]
    ((sent_to, sent, slack),) = recorder.sent
    assert sent_to == "http://127.0.0.1:9/hook" and not slack
    assert sent.action == "forecast" and sent.budget == "eng-day"
    assert sent.fraction_used < Decimal("0.8")  # before the 80% threshold is reached
    # Again, later, and after a restart (a new connection): still once this period.
    check_forecasts(conn, [hooked], UTC_ZONE, now + 60_000, recorder)
    check_forecasts(database.connect(url), [hooked], UTC_ZONE, now + 120_000, recorder)
    assert len(recorder.sent) == 1
    # The next day is another period: at 06:00, $6 spent and $24 forecast.
    write(conn, [e for e in spend if e.ts_ms >= now])
    tomorrow = _ms(DAY0 + timedelta(days=1, hours=6))
    assert check_forecasts(conn, [hooked], UTC_ZONE, tomorrow, recorder)
    assert len(recorder.sent) == 2
    assert recorder.sent[1][1].period_start_ms == _ms(DAY0 + timedelta(days=1))


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Any]]]:
    bodies: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", bodies
    await runner.cleanup()


async def test_forecast_alert_reaches_a_real_webhook(
    ledger: sqlite3.Connection, receiver: tuple[str, list[Any]]
) -> None:
    url, bodies = receiver
    start = DAY0 + timedelta(hours=8)
    write(ledger, steady_spend(start, 2, 1.0, random.Random(1)))
    hooked = budget("10", thresholds=[{"at": 0.9, "action": "alert", "webhook": url}])
    sender = AlertSender()
    check_forecasts(ledger, [hooked], UTC_ZONE, _ms(start + timedelta(hours=2)), sender)
    await sender.close()
    assert sender.delivered == 1
    (body,) = bodies
    assert body["budget"] == "eng-day" and body["action"] == "forecast"
    assert body["limit_usd"] == "10" and body["reset_at"] == "2026-11-21T00:00:00Z"
