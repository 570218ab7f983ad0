"""The CLI: keys and reports read and write the same database as the gateway."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import yaml
from click.testing import CliRunner

from conftest import Gateway, MockUpstream, gateway_config
from tokenomy.cli.main import cli


def invoke(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_created_by_cli_work_on_the_gateway_and_revocation_sticks(gateway: Gateway) -> None:
    config = str(gateway.config_path)
    created = json.loads(
        invoke(
            "keys",
            "create",
            "--config",
            config,
            "--team",
            "cli-team",
            "--department",
            "finance",
            "--tag",
            "cost-center=42",
            "--json",
        )
    )
    assert created["key"].startswith("tk-") and created["principal"]["tags"] == {
        "cost-center": "42"
    }
    client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"], max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=2
    )
    listing = json.loads(invoke("keys", "list", "--config", config, "--json"))
    assert created["id"] in {k["id"] for k in listing}
    assert all("key_hash" not in k and "key" not in k for k in listing)
    assert created["key"] not in gateway.stored_text()  # only its hash

    invoke("keys", "revoke", "--config", config, created["id"])
    time.sleep(5.5)  # gateways re-check cached keys every 5 s
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )


def test_admin_revocation_is_immediate(gateway: Gateway) -> None:
    response = gateway.admin("POST", "/admin/keys", json={"team": "short-lived"})
    key, key_id = response.json()["key"], response.json()["id"]
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    assert client.models.list().data
    assert gateway.admin("DELETE", f"/admin/keys/{key_id}").json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_report_formats_and_unit_economics(gateway: Gateway) -> None:
    key = gateway.create_key(team="report-team", department="reporting")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    for workflow in ("a", "a", "b"):
        client.chat.completions.create(
            model="premium-model",
            messages=[{"role": "user", "content": "count me"}],
            max_tokens=10,
            extra_headers={"x-tokenomy-workflow": workflow},
        )
    config = str(gateway.config_path)
    period = datetime.now(UTC).strftime("%Y-%m")
    data = json.loads(
        invoke(
            "report",
            "--config",
            config,
            "--by",
            "team,workflow",
            "--period",
            period,
            "--where",
            "team=report-team",
            "--format",
            "json",
        )
    )
    rows = {row["workflow"]: row for row in data["rows"]}
    assert rows["a"]["requests"] == 2 and rows["b"]["requests"] == 1
    per_request = Decimal(rows["a"]["cost_usd"]) / 2
    assert Decimal(rows["a"]["cost_per_request_usd"]) == per_request
    assert Decimal(data["total_cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in rows.values())

    table = invoke("report", "--config", config, "--by", "team", "--period", period)
    assert "report-team" in table and "total: $" in table
    parsed = list(
        csv.DictReader(
            io.StringIO(
                invoke("report", "--config", config, "--by", "team,model", "--format", "csv")
            )
        )
    )
    assert any(r["team"] == "report-team" and r["model"] == "premium-model" for r in parsed)

    empty = json.loads(
        invoke(
            "report", "--config", config, "--by", "team", "--period", "2001-01", "--format", "json"
        )
    )
    assert empty["rows"] == [] and empty["total_cost_usd"] == "0"


def test_report_rejects_unknown_dimension_and_bad_period(gateway: Gateway) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--config", str(gateway.config_path), "--by", "planet"])
    assert result.exit_code == 1 and "cannot group or filter by 'planet'" in result.output
    result = runner.invoke(
        cli, ["report", "--config", str(gateway.config_path), "--period", "2026-13"]
    )
    assert result.exit_code == 1 and "period" in result.output
    response = gateway.admin("GET", "/admin/spend", params={"group_by": "planet"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "group_by"


def test_config_is_found_by_flag_env_then_cwd(
    tmp_path: Path, mock_upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    (tmp_path / "tokenomy.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENOMY_CONFIG", raising=False)
    assert "id:" in invoke("keys", "create", "--team", "from-cwd")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    other = {**config, "database": f"sqlite:///{elsewhere / 'other.db'}"}
    (elsewhere / "custom.yaml").write_text(yaml.safe_dump(other))
    invoke(
        "keys",
        "create",
        "--team",
        "from-env",
        env={"TOKENOMY_CONFIG": str(elsewhere / "custom.yaml")},
    )
    teams_env = [
        k["team"]
        for k in json.loads(
            invoke(
                "keys", "list", "--json", env={"TOKENOMY_CONFIG": str(elsewhere / "custom.yaml")}
            )
        )
    ]
    assert teams_env == ["from-env"]
    assert [k["team"] for k in json.loads(invoke("keys", "list", "--json"))] == ["from-cwd"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": [{"name": "m", "upstream": "missing"}]}, "names upstream 'missing'"),
        (
            {"models": [{"name": "m", "upstream": "mock", "price": {"input_per_mtok": 0.5}}]},
            "float",
        ),
        ({"models": [{"name": "no-such-model-anywhere", "upstream": "mock"}]}, "no price given"),
        ({"database": "mysql://x"}, "not supported"),
        ({"surprise": 1}, "surprise"),
        ({"routes": {"auto": {"strategy": "fixed", "model": "nope"}}}, "route 'auto'"),
        ({"routes": {"auto": {"models": ["gpt-4o-mini", "ghost"]}}}, "unknown model 'ghost'"),
    ],
)
def test_bad_config_fails_at_start_with_a_clear_message(
    tmp_path: Path, mock_upstream: MockUpstream, change: dict[str, object], message: str
) -> None:
    config = {**gateway_config(tmp_path / "ledger.db", mock_upstream), **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["serve", "--config", str(path), "--port", "0"])
    assert result.exit_code != 0
    assert message in result.output, result.output


def test_missing_config_names_the_lookup_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENOMY_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 1 and "TOKENOMY_CONFIG" in result.output
