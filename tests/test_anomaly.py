"""Spend spikes: detection from rollup_minute against each principal's own recent past,
the evidence it carries, the CLI, and one alert per incident."""

from __future__ import annotations

import random
import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from test_forecast import DAY0, USD, UTC_ZONE, Recorder, _ms, event, write
from tokenomy import database
from tokenomy.budgets.definition import parse_budget
from tokenomy.cli.main import cli
from tokenomy.forecast.alerts import check_anomalies
from tokenomy.forecast.anomaly import detect_anomalies

STEADY = ("ann", "bob", "cho", "dev", "eve")
NOW = DAY0 + timedelta(hours=14)
PER_MINUTE = 0.001 * USD  # $0.015 per 15-minute window for each user


def office(conn: sqlite3.Connection, spike: float, hours: int = 6, spiker: str = "zed") -> None:
    """Six users spending about $0.001 a minute each for ``hours``; in the last 15 minutes
    ``spiker`` spends ``spike`` times as much, through another model and workflow."""
    rng = random.Random(17)
    events = []
    start = NOW - timedelta(hours=hours)
    for minute in range(hours * 60):
        moment = start + timedelta(minutes=minute)
        last = moment >= NOW - timedelta(minutes=15)
        for user in (*STEADY, spiker):
            factor = spike if last and user == spiker else 1.0
            cost = int(PER_MINUTE * factor * rng.uniform(0.6, 1.4))
            dims = {"workflow": "agent", "model": "big-model"} if factor > 1 else {}
            events.append(event(len(events), _ms(moment), cost, user, **dims))
    write(conn, events)


@pytest.fixture
def ledger(tmp_path: Path) -> sqlite3.Connection:
    return database.connect(f"sqlite:///{tmp_path / 'ledger.db'}")


def test_a_20x_spike_of_one_user_is_flagged_with_evidence(ledger: sqlite3.Connection) -> None:
    office(ledger, spike=20)
    scan = detect_anomalies(ledger, _ms(NOW))
    flagged = {(f.dimension, f.value) for f in scan.findings}
    assert ("user", "zed") in flagged and ("key_id", "key_zed") in flagged
    assert ("workflow", "agent") in flagged  # a workflow that was never used before
    assert not flagged & {("user", u) for u in STEADY}
    assert ("team", "eng") not in flagged  # 6 users: the team only grows about 4x
    zed = next(f for f in scan.findings if f.value == "zed")
    assert zed.factor is not None and 15 < zed.factor < 25
    assert zed.window_end_ms - zed.window_start_ms == 15 * 60_000
    assert zed.window_end_ms == _ms(NOW)
    assert zed.expected_pico == pytest.approx(15 * PER_MINUTE, rel=0.1)
    assert zed.requests == 15 and zed.expected_requests == 15
    assert zed.top_models[0][0] == "big-model"
    assert zed.principals[0]["user"] == "zed" and zed.principals[0]["team"] == "eng"
    public = zed.public()
    assert public["window_start"] == "2026-11-20T13:45:00Z"
    assert "user=zed" in public["summary"]


def test_steady_spend_and_a_doubling_are_not_flagged(ledger: sqlite3.Connection) -> None:
    office(ledger, spike=2)
    assert detect_anomalies(ledger, _ms(NOW)).findings == []


def test_too_little_history_judges_nothing(ledger: sqlite3.Connection) -> None:
    office(ledger, spike=20, hours=1)  # three baseline windows
    scan = detect_anomalies(ledger, _ms(NOW))
    assert scan.findings == [] and "4 needed" in scan.note


def test_small_spikes_under_the_floor_are_ignored(ledger: sqlite3.Connection) -> None:
    office(ledger, spike=20)  # $0.3 in the window
    assert detect_anomalies(ledger, _ms(NOW), min_usd=Decimal("1")).findings == []


def test_anomalies_cli(tmp_path: Path, ledger: sqlite3.Connection) -> None:
    office(ledger, spike=20)
    config = tmp_path / "tokenomy.yaml"
    config.write_text(f"database: sqlite:///{tmp_path / 'ledger.db'}\nmodels: []\n")
    args = ["forecast", "anomalies", "--config", str(config), "--at", NOW.isoformat()]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert ("user", "zed") in {(f["dimension"], f["value"]) for f in data["findings"]}
    table = CliRunner().invoke(cli, [*args, "--window", "30"])
    assert table.exit_code == 0, table.output
    assert "zed" in table.output and "big-model" in table.output


def test_each_spike_is_alerted_once_to_the_budgets_covering_it(
    ledger: sqlite3.Connection,
) -> None:
    office(ledger, spike=20)
    hook = {"at": 0.5, "action": "alert", "webhook": "http://127.0.0.1:9/eng", "slack": True}
    eng = parse_budget("eng", {"scope": {"team": "eng"}, "limit_usd": "100", "thresholds": [hook]})
    ops_hook = {**hook, "webhook": "http://127.0.0.1:9/ops"}
    ops = parse_budget(
        "ops", {"scope": {"team": "ops"}, "limit_usd": "100", "thresholds": [ops_hook]}
    )
    recorder = Recorder()
    now = _ms(NOW)
    alerted = check_anomalies(ledger, [eng, ops], UTC_ZONE, now, recorder)
    assert {(f.dimension, f.value) for f in alerted} >= {("user", "zed"), ("key_id", "key_zed")}
    assert len(recorder.sent) == len(alerted)
    assert {url for url, _, _ in recorder.sent} == {"http://127.0.0.1:9/eng"}
    _, sent, slack = recorder.sent[0]
    assert slack and sent.action == "anomaly" and sent.budget == "eng"
    # The same spike a minute later (overlapping windows) is the same incident.
    assert check_anomalies(ledger, [eng, ops], UTC_ZONE, now + 60_000, recorder) == []
    assert check_anomalies(ledger, [eng, ops], UTC_ZONE, now, recorder) == []
    assert len(recorder.sent) == len(alerted)
