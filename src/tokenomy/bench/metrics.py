"""Benchmark figures with vLLM ``benchmark_serving`` names (``mean_ttft_ms``,
``p99_itl_ms``, ``output_throughput``, ``request_goodput`` ...)."""

from __future__ import annotations

import statistics
from decimal import Decimal
from typing import Any

from tokenomy.bench.loadgen import Sample
from tokenomy.money import MILLION, round_price_per_mtok

PERCENTILES = (50, 90, 95, 99)


def _percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * p / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _describe(name: str, seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    out = {
        f"mean_{name}_ms": statistics.fmean(ms) if ms else 0.0,
        f"median_{name}_ms": statistics.median(ms) if ms else 0.0,
        f"std_{name}_ms": statistics.pstdev(ms) if ms else 0.0,
    }
    for p in PERCENTILES:
        out[f"p{p}_{name}_ms"] = _percentile(ms, p)
    return {k: round(v, 3) for k, v in out.items()}


def summarize(
    samples: list[Sample],
    duration_s: float,
    *,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    slo_e2el_ms: float | None = None,
    gpu_hour_usd: Decimal | None = None,
    gpus: int = 1,
) -> dict[str, Any]:
    ok = [s for s in samples if s.ok]
    output = sum(s.output_tokens for s in ok)
    total_input = sum(s.input_tokens for s in ok)
    tpots = [t for s in ok if (t := s.tpot_s) is not None]
    result: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(samples) - len(ok),
        "duration": round(duration_s, 3),
        "total_input_tokens": total_input,
        "total_output_tokens": output,
        "request_throughput": round(len(ok) / duration_s, 3) if duration_s else 0.0,
        "output_throughput": round(output / duration_s, 3) if duration_s else 0.0,
        "total_token_throughput": round((output + total_input) / duration_s, 3)
        if duration_s
        else 0.0,
        **_describe("ttft", [s.ttft_s for s in ok]),
        **_describe("tpot", tpots),
        **_describe("itl", [gap for s in ok for gap in s.itl_s]),
        **_describe("e2el", [s.e2e_s for s in ok]),
    }
    if any(v is not None for v in (slo_ttft_ms, slo_tpot_ms, slo_e2el_ms)):
        good = [s for s in ok if _meets(s, slo_ttft_ms, slo_tpot_ms, slo_e2el_ms)]
        result["request_goodput"] = round(len(good) / duration_s, 3) if duration_s else 0.0
        result["goodput_share"] = round(len(good) / len(samples), 4) if samples else 0.0
    if gpu_hour_usd is not None and output:
        per_second = gpu_hour_usd * gpus / 3600
        per_mtok = per_second * MILLION / (Decimal(output) / Decimal(repr(duration_s)))
        result["usd_per_mtok_output"] = float(round_price_per_mtok(per_mtok))
    errors = sorted({s.error for s in samples if s.error})
    if errors:
        result["errors"] = errors
    return result


def _meets(s: Sample, ttft: float | None, tpot: float | None, e2el: float | None) -> bool:
    if ttft is not None and s.ttft_s * 1000 > ttft:
        return False
    if tpot is not None and (s.tpot_s or 0.0) * 1000 > tpot:
        return False
    return not (e2el is not None and s.e2e_s * 1000 > e2el)
