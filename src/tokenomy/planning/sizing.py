"""From an operating point to money and watts: cost and energy per million tokens, and the
GPUs a given traffic needs."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from tokenomy.money import MILLION, round_price_per_mtok, usd_str
from tokenomy.planning.capacity import Deployment, Target, Workload, predict

# Average board power while serving at load, as a share of TDP (GPUs at full batch run
# close to their limit; 0.8 leaves room for phases that wait on memory or the network).
POWER_LOAD = 0.8


def capacity_report(
    d: Deployment,
    w: Workload,
    target: Target,
    gpu_hour_usd: Decimal | None,
    utilization: float = 1.0,
    traffic_output_tokens_per_s: float | None = None,
) -> dict[str, Any]:
    point = predict(d, w, target)
    out_tps = point["output_tokens_per_s"]
    all_tps = out_tps * (1 + w.isl / w.osl)
    served = out_tps * utilization
    report: dict[str, Any] = {
        "model": d.model.name,
        "gpu": d.gpu.name,
        "gpus": d.gpus,
        "weights": d.weights,
        "kv_cache": d.kv_precision,
        "isl": w.isl,
        "osl": w.osl,
        **{k: _round(v) for k, v in point.items()},
        "total_tokens_per_s": _round(all_tps),
        "requests_per_s": _round(out_tps / w.osl),
        "utilization": utilization,
    }
    kwh_per_hour = d.gpus * d.gpu.tdp_w * POWER_LOAD / 1000
    report["energy_kwh_per_mtok"] = _round(kwh_per_hour / (served * 3600) * 1e6)
    if gpu_hour_usd is not None:
        per_hour = gpu_hour_usd * d.gpus
        tokens_per_hour = Decimal(repr(served)) * 3600
        report["gpu_hour_usd"] = usd_str(gpu_hour_usd)
        report["usd_per_mtok"] = float(round_price_per_mtok(per_hour * MILLION / tokens_per_hour))
        report["usd_per_mtok_all_tokens"] = float(
            round_price_per_mtok(
                per_hour * MILLION / (tokens_per_hour * Decimal(all_tps / out_tps))
            )
        )
    if traffic_output_tokens_per_s is not None:
        per_gpu = served / d.gpus
        tp = point["tp"]
        replicas = math.ceil(traffic_output_tokens_per_s / (per_gpu * tp))
        report["traffic_output_tokens_per_s"] = traffic_output_tokens_per_s
        report["gpus_needed"] = replicas * tp
    return report


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def all_tokens_per_s(d: Deployment, w: Workload) -> float:
    """Input plus output tokens per second at the maximum-throughput point (what a TCO
    compares against per-token API prices, which charge both)."""
    point = predict(d, w)
    return float(point["output_tokens_per_s"]) * (1 + w.isl / w.osl)


def concurrency_sweep(
    d: Deployment, w: Workload, points: int = 16, include: tuple[int, ...] = ()
) -> list[dict[str, Any]]:
    """Throughput and latencies from one request up to the most the KV cache holds, at
    doubling concurrencies, the maximum itself and any of ``include`` within that range."""
    top = int(predict(d, w)["max_batch"])
    levels: list[int] = []
    level = 1
    while level < top and len(levels) < points - 1:
        levels.append(level)
        level *= 2
    levels.append(max(top, 1))
    levels = sorted(set(levels) | {c for c in include if 1 <= c <= top})
    sweep = []
    for concurrency in levels:
        point = predict(d, w, Target(concurrency=concurrency))
        sweep.append(
            {
                "concurrency": concurrency,
                "output_tokens_per_s": _round(point["output_tokens_per_s"]),
                "tpot_ms": _round(point["tpot_ms"]),
                "ttft_ms": _round(point["ttft_ms"]),
            }
        )
    return sweep
