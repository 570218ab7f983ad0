"""Capacity of a model on GPUs: a per-kernel roofline of continuous batching.

One engine step (one output token for every running request, plus chunks of the prompts
of requests that are starting) costs the sum of its kernels, each bound by whichever of
memory traffic or arithmetic takes longer:

- linear layers: read the weights once per step (memory) or do ``2 x active params``
  FLOPs per token in the step (compute); MoE reads only the experts the step's tokens
  reach (``1 - (1 - k/E)^tokens`` of them);
- attention: read every running request's KV cache (memory) or do its FLOPs (compute);
- tensor parallelism: two all-reduces of the activations per layer over the GPU link;
- a fixed cost per layer per step (kernel launches, synchronisation, sampling).

Under steady continuous batching each request's prompt is processed while ``osl`` steps
pass, so a step carries ``B x (1 + isl/osl)`` tokens: decode for all ``B``, prefill for
their share of new prompts (chunked prefill). Throughput is ``B / step``. TPOT is one
step. TTFT is the request's own prefill plus, when others are running, the rest of the
step in flight (half a step on average) and the step that carries the prompt.

Physical peaks are derated by two efficiencies (the fraction of datasheet FLOPS and
bandwidth real kernels sustain), calibrated once on the MLPerf figures (see
``benchmarks/capacity_calibration.py`` and the README's Planning section); they are the
same for every model, GPU and precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tokenomy.errors import InvalidRequest
from tokenomy.planning.catalog import BYTES_PER_VALUE, GpuSpec, ModelSpec

GB = 1e9


@dataclass(frozen=True, slots=True)
class Efficiency:
    """What real kernels and engines sustain, as fractions of datasheet peaks or as times.

    ``compute`` and ``bandwidth`` are calibrated (benchmarks/capacity_calibration.py); the
    others are engine facts: vLLM reserves 90% of memory by default, CUDA context +
    activations + graphs take a few GB per GPU, an NVLink all-reduce costs ~10 us.
    """

    compute: float = 0.70  # dense GEMMs: 70% of datasheet tensor FLOPS
    bandwidth: float = 0.80  # streaming weights: 80% of HBM peak (STREAM-like copies)
    kv_bandwidth: float = 0.50  # paged KV gathers in decode attention stream less well
    link: float = 0.50  # all-reduce bus bandwidth over the datasheet link rate (NCCL)
    layer_overhead_s: float = 15e-6
    allreduce_latency_s: float = 10e-6
    memory_utilization: float = 0.90
    runtime_gb_per_gpu: float = 2.0
    max_num_seqs: int = 2048  # scheduler cap on running requests per replica


DEFAULT_EFFICIENCY = Efficiency()


@dataclass(frozen=True, slots=True)
class Workload:
    isl: int  # input (prompt) tokens per request, mean
    osl: int  # output tokens per request, mean

    def __post_init__(self) -> None:
        if self.isl < 1 or self.osl < 1:
            raise InvalidRequest("input and output lengths must be >= 1 token", param="isl")


@dataclass(frozen=True, slots=True)
class Deployment:
    model: ModelSpec
    gpu: GpuSpec
    gpus: int
    weights: str = "bf16"
    kv_cache: str | None = None  # default: 8-bit when weights are 8-bit, else 16-bit
    tp: int | None = None  # GPUs per replica; default: the fastest that fits
    efficiency: Efficiency = DEFAULT_EFFICIENCY

    def __post_init__(self) -> None:
        for name, value in (("weights", self.weights), ("kv_cache", self.kv_cache)):
            if value is not None and value not in BYTES_PER_VALUE:
                raise InvalidRequest(
                    f"{name} precision {value!r}: choose from {', '.join(BYTES_PER_VALUE)}",
                    param=name,
                )
        if self.gpus < 1:
            raise InvalidRequest("gpus must be >= 1", param="gpus")

    @property
    def kv_precision(self) -> str:
        if self.kv_cache:
            return self.kv_cache
        return "fp8" if self.weights in ("fp8", "int8", "fp4") else "fp16"


@dataclass(frozen=True, slots=True)
class _Replica:
    """One tensor-parallel group and the rates it runs at."""

    d: Deployment
    tp: int

    @property
    def bandwidth(self) -> float:  # bytes/s sustained
        return self.tp * self.d.gpu.bandwidth_tbs * 1e12 * self.d.efficiency.bandwidth

    @property
    def flops(self) -> float:  # FLOP/s sustained by the linear layers
        peak, _ = self.d.gpu.compute_tflops(self.d.weights)
        return self.tp * peak * 1e12 * self.d.efficiency.compute

    @property
    def attention_flops(self) -> float:  # attention runs in 16-bit (FlashAttention)
        return self.tp * self.d.gpu.tflops["bf16"] * 1e12 * self.d.efficiency.compute

    @property
    def weight_bytes(self) -> float:
        return self.d.model.params * BYTES_PER_VALUE[self.d.weights]

    @property
    def kv_bytes_per_token(self) -> float:
        return self.d.model.kv_values_per_token() * BYTES_PER_VALUE[self.d.kv_precision]

    def kv_capacity_bytes(self) -> float:
        """The KV pool: a fraction of what weights and the runtime leave free (TensorRT-LLM's
        ``kv_cache_free_gpu_mem_fraction``; vLLM's ``gpu_memory_utilization`` is close)."""
        e = self.d.efficiency
        free = self.tp * (self.d.gpu.memory_gb - e.runtime_gb_per_gpu) * GB - self.weight_bytes
        return free * e.memory_utilization

    def max_batch(self, w: Workload) -> int:
        """Requests whose KV cache fits at once. Paged KV caches hold what a request has
        so far, so in steady state a request occupies its prompt plus half its output."""
        footprint = self.kv_bytes_per_token * (w.isl + w.osl / 2)
        fits = int(self.kv_capacity_bytes() // footprint)
        return max(0, min(fits, self.d.efficiency.max_num_seqs))

    def _weights_read(self, tokens: float) -> float:
        m = self.d.model
        if not m.is_moe:
            return self.weight_bytes
        missed: float = (1.0 - m.experts_per_token / m.experts) ** max(tokens, 1.0)
        reached = 1.0 - missed
        stored = BYTES_PER_VALUE[self.d.weights]
        return (m.params - m.expert_params * (1.0 - reached)) * stored

    def step_seconds(self, decode: float, prefill_tokens: float, isl: int, context: float) -> float:
        """One engine step: ``decode`` requests at mean ``context``, plus prompt tokens."""
        m, e = self.d.model, self.d.efficiency
        tokens = decode + prefill_tokens
        linear = max(
            self._weights_read(tokens) / self.bandwidth, 2 * m.active * tokens / self.flops
        )
        per_token_attention = 4 * m.layers * m.heads * m.head_dim  # QK^T and PV, per position
        attention_compute = (decode * context + prefill_tokens * isl / 2) * per_token_attention
        kv_read = decode * context * self.kv_bytes_per_token
        kv_rate = self.bandwidth / e.bandwidth * e.kv_bandwidth
        attention = max(kv_read / kv_rate, attention_compute / self.attention_flops)
        comm = 0.0
        if self.tp > 1:
            link = self.d.gpu.link_gbs * GB * e.link
            ring = 2 * (self.tp - 1) / self.tp * tokens * m.hidden * 2 / link
            comm = 2 * m.layers * (e.allreduce_latency_s + ring)
        return linear + attention + comm + m.layers * e.layer_overhead_s

    def prefill_seconds(self, isl: int) -> float:
        return self.step_seconds(0, isl, isl, 0)

    def point(self, batch: int, w: Workload) -> dict[str, float]:
        """Throughput and latencies with ``batch`` requests running on this replica."""
        context = w.isl + w.osl / 2
        share = w.isl / w.osl  # prompt tokens per decode step, per running request
        full_step = self.step_seconds(batch, batch * share, w.isl, context)
        tpot = self.step_seconds(batch, (batch - 1) * share, w.isl, context)
        ttft = self.prefill_seconds(w.isl)
        if batch > 1:
            ttft += 1.5 * tpot
        # One request alone never shares a step with anyone's prefill: its own prompt is one
        # pass, then ``osl - 1`` decode steps.
        per_s = batch / full_step if batch > 1 else w.osl / (ttft + (w.osl - 1) * tpot)
        return {
            "output_tokens_per_s": per_s,
            "tpot_s": tpot,
            "ttft_s": ttft,
        }


def _tp_options(d: Deployment) -> list[int]:
    if d.tp is not None:
        if d.gpus % d.tp:
            raise InvalidRequest(f"--tp {d.tp} does not divide --gpus {d.gpus}", param="tp")
        return [d.tp]
    return [tp for tp in (1, 2, 4, 8, 16, 32, 64) if tp <= d.gpus and d.gpus % tp == 0]


@dataclass(frozen=True, slots=True)
class Target:
    """What to solve for: a concurrency, latency limits, or (neither) maximum throughput."""

    concurrency: int | None = None
    max_tpot_ms: float | None = None
    max_ttft_ms: float | None = None


def _batch_for(replica: _Replica, w: Workload, target: Target, replicas: int) -> int:
    limit = replica.max_batch(w)
    if target.concurrency is not None:
        return min(limit, max(1, math.ceil(target.concurrency / replicas)))

    def meets(batch: int) -> bool:
        p = replica.point(batch, w)
        return (target.max_tpot_ms is None or p["tpot_s"] * 1000 <= target.max_tpot_ms) and (
            target.max_ttft_ms is None or p["ttft_s"] * 1000 <= target.max_ttft_ms
        )

    if limit < 1 or not meets(1):
        return 0
    low, high = 1, limit  # latency grows with the batch: the largest batch that meets it
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if meets(middle) else (low, middle - 1)
    return low


def predict(d: Deployment, w: Workload, target: Target | None = None) -> dict[str, Any]:
    """The operating point of a deployment: the fastest tensor-parallel layout that fits."""
    target = target or Target()
    best: dict[str, Any] | None = None
    for tp in _tp_options(d):
        replica = _Replica(d, tp)
        replicas = d.gpus // tp
        batch = _batch_for(replica, w, target, replicas)
        if batch < 1:
            continue
        p = replica.point(batch, w)
        busy = replicas
        if target.concurrency is not None:  # fewer requests than replicas leave some idle
            busy = min(replicas, math.ceil(target.concurrency / batch))
        result = {
            "tp": tp,
            "replicas": replicas,
            "batch_per_replica": batch,
            "max_batch_per_replica": replica.max_batch(w),
            "output_tokens_per_s": p["output_tokens_per_s"] * busy,
            "ttft_ms": p["ttft_s"] * 1000,
            "tpot_ms": p["tpot_s"] * 1000,
            "kv_bytes_per_token": replica.kv_bytes_per_token,
            "weights_gb_per_gpu": replica.weight_bytes / tp / GB,
        }
        if target.concurrency is not None:
            result["concurrency_served"] = min(target.concurrency, batch * replicas)
        if best is None or result["output_tokens_per_s"] > best["output_tokens_per_s"]:
            best = result
    if best is None:
        raise InvalidRequest(_why_not(d, w, target), param="gpus")
    best["max_batch"] = best["max_batch_per_replica"] * best["replicas"]
    return best


def _why_not(d: Deployment, w: Workload, target: Target) -> str:
    largest = _Replica(d, max(_tp_options(d)))
    if largest.max_batch(w) < 1:
        need = largest.weight_bytes / GB
        return (
            f"{d.model.name} in {d.weights} needs {need:.0f} GB of weights plus KV cache for "
            f"{w.isl + w.osl} tokens; {d.gpus} x {d.gpu.name} ({d.gpu.memory_gb:g} GB) is not "
            "enough: add GPUs or quantize"
        )
    return "no batch size meets the latency target on this deployment, even one request"


def with_efficiency(d: Deployment, **changes: Any) -> Deployment:
    return replace(d, efficiency=replace(d.efficiency, **changes))
