"""tokenomy bench against the real mock upstream with a known latency and token rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from conftest import MockUpstream, start_mock, stop
from tokenomy.cli.main import cli

LATENCY_MS = 150.0
TOKENS_PER_S = 50.0
OUTPUT_TOKENS = 30


@pytest.fixture(scope="module")
def paced_mock() -> Iterator[MockUpstream]:
    mock = start_mock("--latency-ms", str(LATENCY_MS), "--tokens-per-second", str(TOKENS_PER_S))
    yield mock
    stop(mock.process)


def test_bench_measures_the_mock_ttft_and_token_rate_within_5_percent(
    paced_mock: MockUpstream,
) -> None:
    result = CliRunner().invoke(
        cli,
        ["bench", paced_mock.base_url, "--model", "mock-small", "--concurrency", "3",
         "--requests", "6", "--input-tokens", "64", "--output-tokens", str(OUTPUT_TOKENS),
         "--slo-ttft-ms", "1000", "--gpu-hour-usd", "2.00", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.output)
    assert out["completed"] == 6 and out["failed"] == 0
    assert out["total_output_tokens"] == 6 * OUTPUT_TOKENS
    # The mock waits the latency, then paces tokens: the first arrives one interval later.
    interval_ms = 1000 / TOKENS_PER_S
    expected_ttft = LATENCY_MS + interval_ms
    assert out["mean_ttft_ms"] == pytest.approx(expected_ttft, rel=0.05)
    assert out["mean_tpot_ms"] == pytest.approx(interval_ms, rel=0.05)
    assert out["median_itl_ms"] == pytest.approx(interval_ms, rel=0.05)
    e2e = expected_ttft + (OUTPUT_TOKENS - 1) * interval_ms
    assert out["mean_e2el_ms"] == pytest.approx(e2e, rel=0.05)
    assert out["request_goodput"] > 0
    per_mtok = 2.00 / 3600 * 1e6 / out["output_throughput"]
    assert out["usd_per_mtok_output"] == pytest.approx(per_mtok, rel=0.01)


def test_bench_rate_sweep_and_csv(paced_mock: MockUpstream, tmp_path: object) -> None:
    path = f"{tmp_path}/bench.csv"
    result = CliRunner().invoke(
        cli,
        ["bench", paced_mock.base_url, "--model", "mock-small", "--rate", "20,40",
         "--requests", "4", "--output-tokens", "5", "--slo-ttft-ms", "1",
         "--csv", path, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.output)
    assert [row["rate"] for row in out] == [20.0, 40.0]
    assert all(row["completed"] == 4 for row in out)
    assert all(row["request_goodput"] == 0 for row in out)  # nobody answers in 1 ms
    header = Path(path).read_text().splitlines()[0]
    assert "mean_ttft_ms" in header and "output_throughput" in header
