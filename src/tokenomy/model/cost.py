"""A local model priced like any other: its config as the capacity model's
:class:`~tokenomy.planning.catalog.ModelSpec`, served on a catalog GPU in a precision,
gives tokens/s and cost per million tokens (``tokenomy plan capacity``'s figures).

No torch here: the shape comes from :func:`tokenomy.model.models.shape_of`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tokenomy.planning.capacity import Deployment, Target, Workload
from tokenomy.planning.catalog import ModelSpec, load_catalogs
from tokenomy.planning.sizing import capacity_report

# Stored bits of a quantized model -> the capacity model's precision of weights.
PRECISION_OF_BITS = {16: "bf16", 8: "int8", 4: "int4"}


def spec(name: str, params: int, shape: dict[str, int]) -> ModelSpec:
    return ModelSpec(
        name=name,
        params=float(params),
        layers=shape["layers"],
        hidden=shape["hidden"],
        heads=shape["heads"],
        kv_heads=shape["kv_heads"],
        head_dim=shape["head_dim"],
        vocab=shape["vocab"],
    )


def project(
    model: ModelSpec,
    gpu: str,
    weights: str,
    isl: int,
    osl: int,
    gpus: int = 1,
    gpu_hour_usd: Decimal | None = None,
    catalog: str | None = None,
) -> dict[str, Any]:
    """The maximum-throughput operating point of ``model`` on ``gpus`` x ``gpu`` with
    ``weights`` precision, and its cost per million output (and all) tokens at the GPU's
    hourly price (the catalog's, or ``gpu_hour_usd``)."""
    spec_gpu = load_catalogs(catalog).gpu(gpu)
    deployment = Deployment(model=model, gpu=spec_gpu, gpus=gpus, weights=weights)
    hour = gpu_hour_usd if gpu_hour_usd is not None else spec_gpu.hour_usd
    report = capacity_report(deployment, Workload(isl, osl), Target(), hour)
    keep = (
        "gpu",
        "gpus",
        "weights",
        "isl",
        "osl",
        "output_tokens_per_s",
        "total_tokens_per_s",
        "tpot_ms",
        "ttft_ms",
        "max_batch",
        "gpu_hour_usd",
        "usd_per_mtok",
        "usd_per_mtok_all_tokens",
        "energy_kwh_per_mtok",
    )
    return {k: report[k] for k in keep if k in report}
