"""``tokenomy cache eval`` on small samples of the real pair files, and on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tokenomy.cli.main import cli

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cache"
PARAPHRASES = DATA / "paraphrase_pairs.json"
QUORA = DATA / "qqp_pairs_dev.jsonl"
CONTRACT = ("hit_rate", "false_hit_rate", "precision", "lookup_p50_ms", "lookup_p99_ms", "n")

needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="../shared/data/cache is absent (it is there in CI)"
)


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["cache", "eval", *args])
    return result


def report(*args: str) -> dict[str, Any]:
    result = run(*args, "--json", "--latency-samples", "10")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stderr may carry the model-loading progress bar
    assert isinstance(data, dict)
    return data


def assert_rates(data: dict[str, Any]) -> None:
    for key in CONTRACT:
        assert key in data
    for key in ("hit_rate", "precision"):
        assert data[key] is None or 0.0 <= data[key] <= 1.0
    assert 0 < data["lookup_p50_ms"] <= data["lookup_p99_ms"] < 2000
    assert data["sweep"] and all(0.0 <= row["threshold"] <= 1.0 for row in data["sweep"])
    rates = [row["hit_rate"] for row in data["sweep"]]
    assert rates == sorted(rates, reverse=True)  # a higher threshold never hits more


@needs_data
def test_gptcache_protocol_on_paraphrases() -> None:
    data = report("--pairs", str(PARAPHRASES), "--limit", "80")
    assert_rates(data)
    assert data["protocol"] == "gptcache" and data["n"] == 80
    assert data["false_hit_rate"] is None
    assert data["in_sample"] is True  # the shipped verifier was trained on this file too
    assert data["hit_rate"] >= 0.3 and data["precision"] >= 0.9
    old = report("--pairs", str(PARAPHRASES), "--limit", "80", "--verifier", "logistic")
    assert old["in_sample"] is False  # v1 saw Quora pairs only


@needs_data
def test_decision_protocol_on_quora_pairs() -> None:
    data = report("--pairs", str(QUORA), "--limit", "120")
    assert_rates(data)
    assert data["protocol"] == "decision" and data["n"] == 120
    assert data["false_hit_rate"] is not None and data["false_hit_rate"] < 0.2
    assert data["in_sample"] is True  # the shipped verifier was trained on this file
    cosine = report("--pairs", str(QUORA), "--limit", "120", "--no-verifier")
    assert cosine["verifier"] is None and cosine["in_sample"] is False
    assert cosine["false_hit_rate"] > data["false_hit_rate"]


@needs_data
def test_cross_validation_is_out_of_sample() -> None:
    data = report("--pairs", str(QUORA), "--limit", "150", "--cv", "3", "--backend", "onnx")
    assert_rates(data)
    assert data["cv"] == 3 and data["in_sample"] is False
    # the default verifier was also trained on the paraphrases: its folds are too
    assert data["cv_training"] == ["qqp_pairs_dev.jsonl (other folds)", "paraphrase_pairs.json"]


@needs_data
def test_readable_tables() -> None:
    result = run("--pairs", str(PARAPHRASES), "--limit", "30", "--latency-samples", "5")
    assert result.exit_code == 0, result.output
    assert "gptcache protocol" in result.output and "precision" in result.output


def test_cv_needs_enough_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text('[{"origin": "a b c", "similar": "a b d"}]')
    result = run("--pairs", str(path), "--cv", "3")
    assert result.exit_code == 2 and "at least 3 pairs" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all {", "neither a JSON list nor JSON lines"),
        ("[]", "holds no pairs"),
        ('[{"question": "a", "answer": "b"}]', "pairs need"),
        ('{"text_a": "a", "text_b": "b", "label": 3}\n', "label must be 0 or 1"),
        ('[{"origin": "a", "similar": ""}]', "non-empty texts"),
        ("[1, 2]", "must be an object"),
    ],
)
def test_bad_files_are_clean_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(content)
    result = run("--pairs", str(path), "--json")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    result = run("--pairs", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "cannot read" in result.output
