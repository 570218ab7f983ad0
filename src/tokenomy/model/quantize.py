"""Quantized weights on CPU, measured against the original.

- 8 bits: torchao's ``Int8DynamicActivationInt8WeightConfig`` (int8 weights per output
  channel, activations quantized per token at run time, int8 matmuls);
- 4 bits: optimum-quanto's ``qint4`` weights (groups of 128 values with a scale and a
  shift, two values packed per byte), dequantized in the matmul. torchao 0.18 has no
  packed 4-bit layout for x86 CPUs (its CPU int4 path keeps one value per byte), so
  quanto is the one whose 4-bit weights really take half a byte here.

Every ``nn.Linear`` is quantized except an output head that shares its weight with the
input embedding (quantizing it would add a second copy). Embeddings and norms stay as
they are.

Each variant (original, quantized) is loaded, quantized and measured in a process of its
own, so its resident memory is its own: weight bytes as stored (packed data, scales and
shifts included), process RSS after loading and after evaluating (and the peak), forward
and decode tokens/s, and quality on the given data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tokenomy.errors import InvalidRequest

BITS = (8, 4)
METHODS = {
    8: "torchao Int8DynamicActivationInt8WeightConfig (int8 weights per channel, int8 "
    "dynamic activations)",
    4: "optimum-quanto qint4 weights (group 128, scale+shift, packed 2 per byte)",
}


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds, through tensor subclasses (quantized data, scales, zero
    points, packed bytes)."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return int(tensor.numel() * tensor.element_size())


def weight_bytes(model: torch.nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor_bytes(tensor)
    return total


def _targets(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    inputs: Any = getattr(model, "get_input_embeddings", None)
    embedding = inputs() if inputs is not None else None
    tied = getattr(embedding, "weight", None)
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.weight is not tied
    }


def quantize(model: torch.nn.Module, bits: int) -> int:
    """Quantize ``model`` in place; the number of linear layers quantized."""
    targets = _targets(model)
    if not targets:
        raise InvalidRequest(
            "the model has no nn.Linear layers to quantize (GPT-2 style Conv1D layers are "
            "not supported)",
            param="model",
        )
    if bits == 8:
        logging.getLogger("torchao").setLevel(logging.ERROR)
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        chosen = set(targets.values())
        quantize_(
            model,
            Int8DynamicActivationInt8WeightConfig(),
            filter_fn=lambda module, _name: module in chosen,
        )
        return len(targets)
    if bits == 4:
        from optimum.quanto import freeze, qint4
        from optimum.quanto import quantize as quanto_quantize

        skipped = [
            name
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name not in targets
        ]
        quanto_quantize(model, weights=qint4, exclude=skipped or None)
        freeze(model)
        return len(targets)
    raise InvalidRequest(f"--bits {bits}: choose 8 or 4", param="bits")


def _release_freed_memory() -> None:
    """Hand memory freed by Python and torch back to the OS (glibc keeps freed heap pages
    otherwise), so RSS shows what the model holds now rather than what it held."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: freed pages stay
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best we have
        return _peak_rss()


def _peak_rss() -> int:
    """This process's high-water mark (VmHWM: getrusage's ru_maxrss would carry the
    parent's across exec on Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _import_libraries(bits: int) -> None:
    import transformers.models.auto.modeling_auto  # noqa: F401

    if bits == 8:
        import torchao.quantization  # noqa: F401
    elif bits == 4:
        import optimum.quanto  # noqa: F401


def measure_variant(job: dict[str, Any]) -> dict[str, Any]:
    """Load (and quantize) one model and measure it; runs in its own process."""
    from tokenomy.model import data, measure, models

    torch.manual_seed(0)
    _import_libraries(job["bits"])
    models.import_model_code(job["model"], job.get("task"))
    _release_freed_memory()
    baseline_rss = _rss()  # after imports: the difference is the model's
    loaded = models.load(job["model"], job.get("task"))
    if not loaded.pretrained:
        raise InvalidRequest(f"{job['model']}: the folder has no weights", param="model")
    original_bytes = weight_bytes(loaded.model)
    started = time.perf_counter()
    layers = quantize(loaded.model, job["bits"]) if job["bits"] else 0
    quantize_s = time.perf_counter() - started
    _release_freed_memory()  # the float weights quantization replaced
    loaded.model.eval()
    examples = data.encode(
        data.read_records(job["data"]),
        loaded.tokenizer,
        job["max_length"],
        loaded.vocab_size,
        loaded.label2id(),
        loaded.classes,
    )
    batch = job["batch_size"]
    # One forward pass touches every weight (memory-mapped ones become resident) and sets
    # up the kernels; what the process holds after it is what serving the model needs.
    warm = data.collate(examples[:batch], loaded.pad_id, loaded.causal)
    with torch.no_grad():
        measure.logits_of(loaded.model, warm.input_ids, warm.attention_mask)
    del warm
    _release_freed_memory()
    loaded_rss = _rss()
    result: dict[str, Any] = {
        "bits": job["bits"] or None,
        "method": METHODS.get(job["bits"], "original weights"),
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch.")
        if not job["bits"]
        else None,
        "quantized_linear_layers": layers,
        "quantize_seconds": round(quantize_s, 3),
        "weight_bytes": weight_bytes(loaded.model),
        "original_weight_bytes": original_bytes,
        "params": models.parameter_count(loaded.model) if not job["bits"] else None,
        "kind": loaded.kind,
        "shape": models.shape_of(loaded.config),
        "examples": len(examples),
        "quality": measure.quality(loaded.model, examples, loaded.causal, loaded.pad_id, batch),
    }
    result["rss_bytes_before_load"] = baseline_rss
    result["rss_bytes_loaded"] = loaded_rss
    result["rss_bytes_model"] = loaded_rss - baseline_rss
    result["rss_bytes_after_eval"] = _rss()
    result["peak_rss_bytes"] = _peak_rss()
    return result


def measure_speed(job: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s of the original and the quantized model, measured in one process in
    alternating rounds (the order swapped each round), so load from other processes on a
    shared machine falls on both alike; the median of the rounds, and every round."""
    from tokenomy.model import data, measure, models

    torch.manual_seed(0)
    original = models.load(job["model"], job.get("task"))
    quantized = models.load(job["model"], job.get("task"))
    quantize(quantized.model, job["bits"])
    examples = data.encode(
        data.read_records(job["data"]),
        original.tokenizer,
        job["max_length"],
        original.vocab_size,
        original.label2id(),
        original.classes,
    )
    rounds = job["rounds"]
    out: dict[str, Any] = measure.alternating_speed(
        {"original": original.model, "quantized": quantized.model},
        examples,
        original.causal,
        original.pad_id,
        job["batch_size"],
        job["min_seconds"],
        rounds,
    )
    out["rounds"] = rounds
    out["threads"] = torch.get_num_threads()
    return out


def run_variant(job: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """``measure_variant`` (or ``measure_speed``) in a fresh Python process (its memory
    is its own)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(
        [sys.executable, "-m", "tokenomy.model.quantize", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        error = lines[-1] if lines else ""
        if error:
            message = json.loads(error).get("error")
            if message:
                raise InvalidRequest(message, param="model")
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise InvalidRequest(f"measuring {job['model']} failed: {tail}", param="model")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def evaluate(
    model: str,
    bits: int,
    data_path: str,
    task: str | None = None,
    max_length: int = 512,
    batch_size: int = 16,
    min_seconds: float = 2.0,
    rounds: int = 5,
) -> dict[str, Any]:
    """The original and the quantized model: memory and quality each in a process of its
    own, speed in alternating rounds in a third; and the ratios between them."""
    if bits not in BITS:
        raise InvalidRequest(f"--bits {bits}: choose 8 or 4", param="bits")
    if not Path(model).exists():
        raise InvalidRequest(f"{model}: no such model folder", param="model")
    job = {
        "model": str(model),
        "data": str(data_path),
        "task": task,
        "max_length": max_length,
        "batch_size": batch_size,
        "min_seconds": min_seconds,
    }
    original = run_variant({**job, "bits": 0})
    quantized = run_variant({**job, "bits": bits})
    quantized["params"] = original["params"]
    speed = run_variant({**job, "bits": bits, "speed": True, "rounds": rounds})
    original.update(speed["original"])
    quantized.update(speed["quantized"])
    return {
        "model": str(model),
        "data": str(data_path),
        "bits": bits,
        "original": original,
        "quantized": quantized,
        "ratios": ratios(original, quantized),
        "speed_rounds": speed["rounds"],
        "torch_threads": speed["threads"],
    }


def ratios(original: dict[str, Any], quantized: dict[str, Any]) -> dict[str, Any]:
    def ratio(key: str) -> float | None:
        a, b = original.get(key), quantized.get(key)
        return round(b / a, 4) if a and b is not None else None

    oq, qq = original["quality"], quantized["quality"]
    out: dict[str, Any] = {
        "weight_bytes": ratio("weight_bytes"),
        "rss_bytes_model": ratio("rss_bytes_model"),
        "cpu_forward_tokens_per_s": ratio("cpu_forward_tokens_per_s"),
        "cpu_decode_tokens_per_s": ratio("cpu_decode_tokens_per_s"),
        "quality_metric": oq["metric"],
        "quality_original": oq["value"],
        "quality_quantized": qq["value"],
        "quality_change": round(qq["value"] - oq["value"], 6),
        "quality_ratio": round(qq["value"] / oq["value"], 6) if oq["value"] else None,
    }
    return out


def _main(argv: list[str]) -> int:
    logging.disable(logging.WARNING)  # torchao's notes on CUDA kernels it cannot load
    try:
        job = json.loads(argv[0])
        result = measure_speed(job) if job.get("speed") else measure_variant(job)
    except InvalidRequest as exc:
        print(json.dumps({"error": exc.message}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
