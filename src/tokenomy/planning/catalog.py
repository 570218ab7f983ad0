"""Catalogs of open models and GPUs: data files shipped in the package, plus custom entries.

A custom file (YAML or JSON) has the same shape as the shipped ones, ``{"models": {...},
"gpus": {...}}``; its entries add to or replace the shipped ones by name. Names are
case-insensitive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tokenomy.errors import InvalidRequest
from tokenomy.money import parse_usd

# Bytes per stored value. 4-bit weights carry one 16-bit scale per group of 128 values
# (AWQ/GPTQ/Marlin layout), so 4.125 bits each.
BYTES_PER_VALUE = {
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.515625,
    "fp4": 0.5625,  # NVFP4: one 8-bit scale per 16 values
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    params: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int = 32000
    active_params: float | None = None  # MoE: weights one token passes through
    experts: int = 1
    experts_per_token: int = 1

    @property
    def active(self) -> float:
        return self.active_params or self.params

    @property
    def is_moe(self) -> bool:
        return self.experts > 1 and self.active_params is not None

    @property
    def expert_params(self) -> float:
        """Weights in all experts together: active = shared + (k/E) x experts."""
        if not self.is_moe:
            return 0.0
        routed = self.experts_per_token / self.experts
        return (self.params - self.active) / (1.0 - routed)

    def kv_values_per_token(self) -> int:
        """Key and value vectors of one token over all layers (GQA: kv_heads, not heads)."""
        return 2 * self.layers * self.kv_heads * self.head_dim

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "active_params": self.active,
            "layers": self.layers,
            "hidden": self.hidden,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "experts": self.experts,
            "experts_per_token": self.experts_per_token,
        }


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    memory_gb: float
    bandwidth_tbs: float
    tflops: dict[str, float]
    tdp_w: float
    link_gbs: float = 32.0
    hour_usd: Decimal = Decimal("2")
    price_usd: Decimal = Decimal("25000")
    extra: dict[str, Any] = field(default_factory=dict)

    def compute_tflops(self, precision: str) -> tuple[float, str]:
        """Dense tensor throughput for matmuls whose weights are stored in ``precision``.

        8-bit weights run on 8-bit tensor cores where the GPU has them (FP8 or INT8);
        otherwise, and for 4-bit weights, they are dequantized and multiplied in 16 bits
        (weight-only quantization, as vLLM's Marlin kernels do on A100).
        """
        if precision in ("fp8", "int8", "fp4"):
            for candidate in (precision, "fp8", "int8"):
                if candidate in self.tflops:
                    return self.tflops[candidate], candidate
        return self.tflops["bf16"], "bf16"

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "memory_gb": self.memory_gb,
            "bandwidth_tbs": self.bandwidth_tbs,
            "tflops": self.tflops,
            "tdp_w": self.tdp_w,
            "link_gbs": self.link_gbs,
            "hour_usd": str(self.hour_usd),
            "price_usd": str(self.price_usd),
        }


@dataclass(frozen=True, slots=True)
class Catalogs:
    models: dict[str, ModelSpec]
    gpus: dict[str, GpuSpec]

    def model(self, name: str) -> ModelSpec:
        found = self.models.get(name.lower())
        if found is None:
            raise InvalidRequest(
                f"unknown model {name!r}; known: {', '.join(sorted(self.models))} "
                "(or add it with --catalog FILE)",
                param="model",
            )
        return found

    def gpu(self, name: str) -> GpuSpec:
        found = self.gpus.get(name.lower())
        if found is None:
            raise InvalidRequest(
                f"unknown GPU {name!r}; known: {', '.join(sorted(self.gpus))} "
                "(or add it with --catalog FILE)",
                param="gpu",
            )
        return found


def _shipped(name: str) -> dict[str, Any]:
    text = resources.files("tokenomy.planning").joinpath("data", name).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _number(raw: dict[str, Any], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidRequest(f"{where}: {key} must be a positive number", param=key)
    return float(value)


def parse_model(name: str, raw: dict[str, Any]) -> ModelSpec:
    where = f"model {name!r}"
    integers = {k: int(_number(raw, k, where)) for k in ("layers", "hidden", "heads", "kv_heads")}
    head_dim = int(raw.get("head_dim") or integers["hidden"] // integers["heads"])
    active = raw.get("active_params")
    spec = ModelSpec(
        name=name,
        params=_number(raw, "params", where),
        head_dim=head_dim,
        vocab=int(raw.get("vocab", 32000)),
        active_params=float(active) if active else None,
        experts=int(raw.get("experts", 1)),
        experts_per_token=int(raw.get("experts_per_token", 1)),
        **integers,
    )
    if spec.active > spec.params:
        raise InvalidRequest(f"{where}: active_params exceeds params", param="active_params")
    return spec


def parse_gpu(name: str, raw: dict[str, Any]) -> GpuSpec:
    where = f"GPU {name!r}"
    tflops = raw.get("tflops")
    if not isinstance(tflops, dict) or "bf16" not in tflops:
        raise InvalidRequest(f"{where}: tflops needs at least a bf16 figure", param="tflops")
    return GpuSpec(
        name=name,
        memory_gb=_number(raw, "memory_gb", where),
        bandwidth_tbs=_number(raw, "bandwidth_tbs", where),
        tflops={str(k): float(v) for k, v in tflops.items()},
        tdp_w=_number(raw, "tdp_w", where),
        link_gbs=float(raw.get("link_gbs", 32.0)),
        hour_usd=parse_usd(str(raw.get("hour_usd", "2"))),
        price_usd=parse_usd(str(raw.get("price_usd", "25000"))),
    )


def load_catalogs(custom: str | Path | None = None) -> Catalogs:
    """The shipped catalogs, with a custom file's entries added or replacing by name."""
    models_raw = dict(_shipped("models.json")["models"])
    gpus_raw = dict(_shipped("gpus.json")["gpus"])
    if custom is not None:
        text = Path(custom).read_text("utf-8")
        extra = yaml.safe_load(text) or {}
        if not isinstance(extra, dict):
            raise InvalidRequest(f"{custom}: expected a mapping with models and/or gpus")
        models_raw.update({str(k).lower(): v for k, v in (extra.get("models") or {}).items()})
        gpus_raw.update({str(k).lower(): v for k, v in (extra.get("gpus") or {}).items()})
    return Catalogs(
        models={name: parse_model(name, raw) for name, raw in models_raw.items()},
        gpus={name: parse_gpu(name, raw) for name, raw in gpus_raw.items()},
    )
