"""`tokenomy demo` (what `make demo` runs) works offline with no keys and meters everything."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from conftest import free_port
from tokenomy.cli.main import cli


def test_demo_runs_meters_three_departments_and_stops(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenomy",
            "demo",
            "--dir",
            str(workdir),
            "--duration",
            "6",
            "--no-live",
            "--port",
            str(free_port()),
            "--mock-port",
            str(free_port()),
            "--rate",
            "15",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/v1" in out and "/admin/docs" in out and "/ui" in out
    outcomes = next(line for line in out.splitlines() if line.startswith("outcomes:"))
    assert outcomes.startswith("outcomes: ok=") and "," not in outcomes, outcomes
    assert "CC-BY 4.0" in out

    # The ledger the demo left behind agrees with its summary.
    report = CliRunner().invoke(
        cli,
        [
            "report",
            "--config",
            str(workdir / "tokenomy.yaml"),
            "--by",
            "department,model",
            "--format",
            "json",
        ],
    )
    data = json.loads(report.output)
    assert {row["department"] for row in data["rows"]} == {"engineering", "support", "marketing"}
    assert {row["model"] for row in data["rows"]} >= {
        "premium-model",
        "gpt-4o-mini",
        "commodity-model",
    }
    assert data["total_requests"] == int(outcomes.split("ok=")[1])
    assert f"total: ${data['total_cost_usd']}" in out
    assert Decimal(data["total_cost_usd"]) > 0
