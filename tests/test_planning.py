"""tokenomy plan: capacity, allocation, TCO and what-if through the CLI."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

from conftest import SHARED_DATA
from tokenomy.cli.main import cli

TRACE = SHARED_DATA / "traces" / "azure_llm_2023_code.csv"


def run(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return orjson.loads(result.output) if "--json" in args else result.output


def capacity(*args: str) -> dict[str, Any]:
    out: dict[str, Any] = run("plan", "capacity", *args, "--json")
    return out


# -- capacity ------------------------------------------------------------------------------


@pytest.mark.parametrize(("gpu", "published"), [("h100-sxm", 24_525), ("h200", 31_303)])
def test_capacity_matches_mlperf_offline_within_15_percent(gpu: str, published: float) -> None:
    out = capacity(
        "--model", "llama-2-70b", "--gpu", gpu, "--gpus", "8", "--weights", "fp8",
        "--isl", "450", "--osl", "294",
    )  # fmt: skip
    assert abs(out["output_tokens_per_s"] / published - 1) <= 0.15


def test_capacity_matches_mlperf_server_latencies_within_15_percent() -> None:
    # The server run delivered 21,606 tokens/s: find the concurrency that does, then compare.
    args = ["--model", "llama-2-70b", "--gpu", "h100-sxm", "--gpus", "8", "--weights", "fp8"]
    args += ["--isl", "450", "--osl", "294"]
    low, high = 8, 8 * 2048
    while low < high:
        middle = (low + high) // 2
        if capacity(*args, "--concurrency", str(middle))["output_tokens_per_s"] >= 21_606:
            high = middle
        else:
            low = middle + 1
    out = capacity(*args, "--concurrency", str(low))
    assert abs(out["ttft_ms"] / 276 - 1) <= 0.15
    assert abs(out["tpot_ms"] / 155 - 1) <= 0.15


def test_capacity_contract_fields_and_catalog_names() -> None:
    for model in ("llama-2-7b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.3-70b",
                  "mixtral-8x7b", "qwen2.5-7b"):  # fmt: skip
        for gpu in ("a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200"):
            out = capacity("--model", model, "--gpu", gpu, "--gpus", "8", "--weights", "fp8",
                           "--isl", "1024", "--osl", "256", "--gpu-hour-usd", "2.50")  # fmt: skip
            for key in ("output_tokens_per_s", "ttft_ms", "tpot_ms", "max_batch", "usd_per_mtok"):
                assert out[key] > 0, (model, gpu, key)
    small = capacity("--model", "llama-3.1-8b", "--gpu", "l4", "--weights", "int4")
    assert small["max_batch"] >= 1


def test_capacity_physics_moves_the_right_way() -> None:
    base = ["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "4", "--isl", "1024"]
    fp16 = capacity(*base, "--weights", "bf16", "--concurrency", "1", "--tp", "4")
    fp8 = capacity(*base, "--weights", "fp8", "--concurrency", "1", "--tp", "4")
    # One request decodes at the speed weights stream from memory: half the bytes, faster.
    assert fp8["tpot_ms"] < fp16["tpot_ms"] * 0.75
    # A latency target trades throughput for per-token speed.
    fast = capacity(*base, "--weights", "fp8", "--max-tpot-ms", "30")
    best = capacity(*base, "--weights", "fp8")
    assert fast["tpot_ms"] <= 30 < best["tpot_ms"]
    assert fast["output_tokens_per_s"] < best["output_tokens_per_s"]
    # Longer contexts hold more KV cache: fewer requests fit.
    long = capacity(*base, "--weights", "fp8", "--isl", "16000")
    assert long["max_batch"] < best["max_batch"]


def test_capacity_gpus_needed_and_cost() -> None:
    args = ["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--weights", "fp8", "--json"]
    one = capacity(*args[:-1], "--gpu-hour-usd", "2.00", "--traffic", "100000")
    per_gpu = one["output_tokens_per_s"]
    assert one["gpus_needed"] == -(-100000 // per_gpu)  # ceil
    hand = 2.00 * 1e6 / (per_gpu * 3600)
    assert one["usd_per_mtok"] == pytest.approx(hand, rel=1e-4)


def test_capacity_refuses_what_does_not_fit() -> None:
    result = CliRunner().invoke(
        cli, ["plan", "capacity", "--model", "llama-3.1-405b", "--gpu", "l4", "--json"]
    )
    assert result.exit_code == 1
    assert "not enough" in result.output


def test_custom_catalog_entry(tmp_path: Path) -> None:
    custom = tmp_path / "catalog.yaml"
    custom.write_text(yaml.safe_dump({
        "models": {"tiny-1b": {"params": 1.0e9, "layers": 16, "hidden": 2048, "heads": 16,
                               "kv_heads": 4}},
        "gpus": {"my-gpu": {"memory_gb": 48, "bandwidth_tbs": 1.0, "tflops": {"bf16": 200},
                            "tdp_w": 300}},
    }))  # fmt: skip
    out = capacity("--model", "tiny-1b", "--gpu", "my-gpu", "--catalog", str(custom))
    assert out["model"] == "tiny-1b" and out["output_tokens_per_s"] > 0


# -- allocate ------------------------------------------------------------------------------


def _plan_file(tmp_path: Path, plan: dict[str, Any]) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return str(path)


SMALL = {
    "total_usd": "100",
    "dev_max_share": 0.3,
    "departments": {"support": {"max_usd": "60"}, "research": {"min_usd": "20"}},
    "lines": [
        {"name": "support-prod", "department": "support", "usd_per_mtok": "2",
         "value_per_mtok": 9, "demand_mtok": 20},
        {"name": "support-dev", "department": "support", "environment": "dev",
         "usd_per_mtok": "1", "value_per_mtok": 5},
        {"name": "research-prod", "department": "research", "usd_per_mtok": "5",
         "value_per_mtok": 10},
        {"name": "research-dev", "department": "research", "environment": "dev",
         "usd_per_mtok": "4", "value_per_mtok": 9, "max_usd": "16"},
    ],
}  # fmt: skip


def _brute_force(plan: dict[str, Any], step: int) -> float:
    """Best value over every split of the total into multiples of ``step`` dollars."""
    lines = plan["lines"]
    total = int(plan["total_usd"])
    best = -1.0
    for spend in itertools.product(range(0, total + 1, step), repeat=len(lines)):
        if sum(spend) > total:
            continue
        ok = True
        for line, usd in zip(lines, spend, strict=True):
            cost = float(line["usd_per_mtok"])
            ok &= usd <= float(line.get("max_usd", 1e18))
            ok &= usd / cost <= float(line.get("demand_mtok", 1e18))
        by_department: dict[str, int] = {}
        for line, usd in zip(lines, spend, strict=True):
            by_department[line["department"]] = by_department.get(line["department"], 0) + usd
        for name, limits in plan["departments"].items():
            ok &= by_department.get(name, 0) >= float(limits.get("min_usd", 0))
            ok &= by_department.get(name, 0) <= float(limits.get("max_usd", 1e18))
        dev = sum(usd for line, usd in zip(lines, spend, strict=True)
                  if line.get("environment") == "dev")  # fmt: skip
        ok &= dev <= plan["dev_max_share"] * sum(spend) + 1e-9
        if ok:
            value = sum(usd / float(line["usd_per_mtok"]) * line["value_per_mtok"]
                        for line, usd in zip(lines, spend, strict=True))  # fmt: skip
            best = max(best, value)
    return best


def test_allocation_matches_brute_force(tmp_path: Path) -> None:
    out = run("plan", "allocate", _plan_file(tmp_path, SMALL), "--json")
    assert out["status"] == "optimal"
    assert out["total_value"] == pytest.approx(_brute_force(SMALL, 2), abs=1e-6)
    spend = sum(Decimal(a["usd"]) for a in out["allocation"])
    assert spend <= Decimal("100")


def test_allocation_reports_binding_constraints_with_shadow_prices(tmp_path: Path) -> None:
    out = run("plan", "allocate", _plan_file(tmp_path, SMALL), "--json")
    binding = {b["constraint"]: b["shadow_price"] for b in out["binding"]}
    assert "total" in binding and binding["total"] > 0
    # The shadow price of the total is what one more dollar is worth: check by re-solving.
    richer = {**SMALL, "total_usd": "101"}
    more = run("plan", "allocate", _plan_file(tmp_path, richer), "--json")
    assert more["total_value"] - out["total_value"] == pytest.approx(binding["total"], rel=1e-6)


def test_infeasible_plan_names_the_conflict(tmp_path: Path) -> None:
    plan = {
        "total_usd": "1000",
        "lines": [
            {"name": "a", "usd_per_mtok": "1", "min_usd": "600"},
            {"name": "b", "usd_per_mtok": "1", "min_usd": "500"},
            {"name": "c", "usd_per_mtok": "1", "max_usd": "50"},
        ],
    }
    result = CliRunner().invoke(cli, ["plan", "allocate", _plan_file(tmp_path, plan), "--json"])
    assert result.exit_code == 2
    out = orjson.loads(result.output)
    assert out["status"] == "infeasible"
    assert sorted(out["conflicting_constraints"]) == ["a.min", "b.min", "total"]
    assert "1,100.00" in out["explanation"] and "1,000.00" in out["explanation"]


def test_infeasible_shares_are_explained(tmp_path: Path) -> None:
    plan = {
        "total_usd": "100",
        "dev_max_share": 0.2,
        "lines": [
            {"name": "dev", "environment": "dev", "usd_per_mtok": "1", "min_usd": "50"},
            {"name": "prod", "usd_per_mtok": "1", "max_usd": "10"},
        ],
    }
    result = CliRunner().invoke(cli, ["plan", "allocate", _plan_file(tmp_path, plan)])
    assert result.exit_code == 2
    assert "dev_share" not in result.output  # the human form uses the meanings
    assert "dev <= 20% of spend" in result.output and "dev >= $50" in result.output


# -- tco -----------------------------------------------------------------------------------


def test_tco_payback_matches_hand_calculation() -> None:
    out = run(
        "plan", "tco", "--mode", "buy", "--gpus", "8", "--tokens-per-s", "20000",
        "--gpu-price-usd", "30000", "--server-overhead", "0.25", "--power-kw", "0.7",
        "--power-load", "0.8", "--pue", "1.3", "--kwh-usd", "0.10", "--ops-usd-per-month",
        "2000", "--api-usd-per-mtok", "5", "--monthly-mtok", "10000", "--utilization", "0.5",
        "--json",
    )  # fmt: skip
    capex = 8 * 30000 * 1.25  # 300,000
    power = 8 * 0.7 * 0.8 * 1.3 * 730 * 0.10  # 425.152 a month
    api = 10000 * 5  # 50,000 a month
    assert float(out["capex_usd"]) == capex
    assert float(out["power_usd_per_month"]) == pytest.approx(power, abs=0.01)
    assert out["payback_months"] == pytest.approx(capex / (api - power - 2000), abs=0.01)
    monthly = power + 2000 + capex / 36
    assert float(out["cost_usd_per_month"]) == pytest.approx(monthly, abs=0.01)
    assert out["break_even_mtok_per_month"] == pytest.approx(monthly / 5, abs=0.1)
    served_mtok = 20000 * 3600 * 730 * 0.5 / 1e6
    assert float(out["self_hosted_usd_per_mtok"]) == pytest.approx(monthly / served_mtok, abs=1e-4)


def test_tco_rent_has_no_payback_and_never_case() -> None:
    rent = run("plan", "tco", "--mode", "rent", "--gpus", "2", "--tokens-per-s", "5000",
               "--gpu-hour-usd", "2.5", "--api-usd-per-mtok", "0.5", "--monthly-mtok", "100",
               "--json")  # fmt: skip
    assert rent["payback_months"] is None and float(rent["capex_usd"]) == 0
    assert float(rent["cost_usd_per_month"]) == 2 * 2.5 * 730
    cheap = run("plan", "tco", "--gpus", "8", "--tokens-per-s", "5000", "--gpu-price-usd",
                "30000", "--ops-usd-per-month", "5000", "--api-usd-per-mtok", "0.1",
                "--monthly-mtok", "100", "--json")  # fmt: skip
    assert cheap["payback_months"] is None and cheap["payback_note"].startswith("never")


# -- whatif on the Azure trace ----------------------------------------------------------------

needs_trace = pytest.mark.skipif(not TRACE.exists(), reason=f"{TRACE} is absent (shared data)")


@needs_trace
def test_whatif_reprices_the_azure_trace(tmp_path: Path) -> None:
    out = run(
        "plan", "whatif", "--trace", str(TRACE), "--trace-model", "big",
        "--base-price", "big:2:10", "--base-price", "small:0.15:0.6",
        "--price", "big:3:15", "--switch", "model=big:small",
        "--cache", "0.25", "--growth", "2", "--no-combined", "--json",
    )  # fmt: skip
    assert "Azure Public Dataset" in out["source"] and "CC-BY 4.0" in out["source"]
    totals = {k: Decimal(v) for k, v in out["total"].items()}
    # Hand-price the trace under the first price change.
    context = generated = 0
    for line in TRACE.read_text().splitlines()[1:]:
        _, c, g = line.split(",")
        context, generated = context + int(c), generated + int(g)
    expected = (Decimal(context) * 3 + Decimal(generated) * 15) / Decimal(1_000_000)
    assert totals["price big:3:15"] == expected.quantize(Decimal("0.000001"))
    baseline = (Decimal(context) * 2 + Decimal(generated) * 10) / Decimal(1_000_000)
    assert totals["baseline"] == baseline.quantize(Decimal("0.000001"))
    assert abs(totals["growth 2"] - 2 * totals["baseline"]) <= Decimal("0.02")
    assert abs(totals["cache 0.25"] - totals["baseline"] * Decimal("0.75")) <= Decimal("0.02")
    assert totals["switch model=big:small"] < totals["baseline"] / 10


def test_whatif_needs_a_change() -> None:
    result = CliRunner().invoke(cli, ["plan", "whatif", "--trace", __file__, "--trace-model", "x"])
    assert result.exit_code == 2 and "at least one" in result.output
