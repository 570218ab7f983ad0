"""The model layer's figures, measured on this machine (README: Distillation and
quantization).

1. The distillation loss against a direct computation of the formula.
2. Distillation vs hard labels on the synthetic noisy-label task
   (:mod:`tokenomy.model.synthetic`): a teacher trained on 4,000 noisy examples; students
   (a quarter of its size) trained on 300 examples, with hard labels alone (alpha 0) or
   distilled (alpha 0.9, T 2); clean held-out accuracy, mean ± sd over seeds.
3. Quantization: a small Llama-shaped causal LM trained briefly on a Markov chain, then
   measured original vs int8 (torchao) vs int4 (optimum-quanto), each in its own process:
   weight bytes, process RSS, forward and decode tokens/s, perplexity, projected cost.

    nice .venv/bin/python benchmarks/model_layer.py [--seeds 8] [--hidden 512 --layers 6]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

from tokenomy.model.cost import PRECISION_OF_BITS, project, spec
from tokenomy.model.loss import distillation_loss
from tokenomy.model.measure import quality
from tokenomy.model.models import shape_of
from tokenomy.model.quantize import evaluate
from tokenomy.model.synthetic import (
    Task,
    causal_lm_config,
    classifier_config,
    markov_text,
    write_jsonl,
)
from tokenomy.model.train import Trainer, TrainSettings


def loss_check() -> None:
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for alpha, t in ((0.0, 1.0), (0.5, 2.0), (0.9, 4.0), (1.0, 8.0)):
        zs = torch.randn(4, 16, 50, generator=gen, dtype=torch.float64) * 3
        zt = torch.randn(4, 16, 50, generator=gen, dtype=torch.float64) * 3
        y = torch.randint(0, 50, (4, 16), generator=gen)
        y[:, 12:] = -100
        got = float(distillation_loss(zs, zt, y, alpha, t).total)
        keep = y != -100
        p_t = torch.softmax(zt[keep] / t, -1)
        p_s = torch.softmax(zs[keep] / t, -1)
        kl = (p_t * (p_t.log() - p_s.log())).sum(-1)
        ce = -torch.log_softmax(zs[keep], -1).gather(-1, y[keep][:, None]).squeeze(-1)
        direct = float((alpha * t * t * kl + (1 - alpha) * ce).mean())
        worst = max(worst, abs(got - direct) / abs(direct))
    print(f"1. loss vs direct formula: largest relative difference {worst:.1e} (float32 path)")


def distillation(seeds: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster
    task = Task()
    noisy, _ = task.sample(4000, seed=1)
    _, test = task.sample(2000, seed=99)
    torch.manual_seed(0)
    teacher = LlamaForSequenceClassification(classifier_config(hidden=64, layers=2))
    Trainer(None, teacher, noisy, False, 0,
            TrainSettings(alpha=0.0, epochs=4, batch_size=64, learning_rate=3e-3),
            progress=False).train()  # fmt: skip
    teacher.eval()
    t_acc = quality(teacher, test, False, 0)["value"]
    results: dict[str, list[float]] = {"hard labels (alpha 0)": [], "distilled (alpha 0.9)": []}
    for seed in range(seeds):
        train, _ = task.sample(300, seed=1000 + seed)
        for name, alpha in (("hard labels (alpha 0)", 0.0), ("distilled (alpha 0.9)", 0.9)):
            torch.manual_seed(seed)
            student = LlamaForSequenceClassification(classifier_config(hidden=32, layers=1))
            settings = TrainSettings(
                alpha=alpha, temperature=2.0, epochs=8, batch_size=32, learning_rate=3e-3,
                seed=seed,
            )  # fmt: skip
            Trainer(teacher if alpha else None, student, train, False, 0, settings,
                    progress=False).train()  # fmt: skip
            results[name].append(quality(student, test, False, 0)["value"])
    params_t = sum(p.numel() for p in teacher.parameters())
    params_s = sum(p.numel() for p in student.parameters())
    print(f"\n2. distillation vs hard labels, clean held-out accuracy, {seeds} seeds")
    print(f"   teacher ({params_t:,} params, 4,000 noisy examples): {t_acc:.3f}")
    for name, values in results.items():
        print(
            f"   student ({params_s:,} params, 300 noisy examples), {name}: "
            f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
        )
    hard, soft = results.values()
    gains = [s - h for s, h in zip(soft, hard, strict=True)]
    print(f"   paired gain: {statistics.mean(gains):+.3f} ± {statistics.stdev(gains):.3f}")
    torch.set_num_threads(threads)


def quantization(hidden: int, layers: int, gpu: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        config = causal_lm_config(hidden=hidden, layers=layers, vocab=256,
                                  intermediate=int(hidden * 2.6875))  # fmt: skip
        model = LlamaForCausalLM(config)
        data = markov_text(160, 128, 256, seed=3)
        train, held_out = data[:128], data[128:]
        started = time.perf_counter()
        Trainer(None, model, train, True, 0,
                TrainSettings(alpha=0.0, epochs=2, batch_size=8, learning_rate=1e-3),
                progress=False).train()  # fmt: skip
        trained_s = time.perf_counter() - started
        model.save_pretrained(root / "lm")
        write_jsonl(root / "held_out.jsonl", held_out)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"\n3. quantization: Llama-shaped LM, {params / 1e6:.1f}M params "
            f"({layers} layers, hidden {hidden}, GQA 4/2 heads), trained {trained_s:.0f} s; "
            f"{len(held_out)} held-out sequences of 128 tokens; each variant measured in its "
            "own process (default torch threads)"
        )
        runs = {bits: evaluate(str(root / "lm"), bits, str(root / "held_out.jsonl"))
                for bits in (8, 4)}  # fmt: skip
        original = runs[8]["original"]
        shape = shape_of(config)
        model_spec = spec("bench", params, shape)
        cost = {
            b: project(model_spec, gpu, PRECISION_OF_BITS[b], 1024, 256)["usd_per_mtok"]
            for b in (16, 8, 4)
        }
        header = (
            f"   {'':28}{'float32':>14}{'int8':>14}{'int4':>14}{'int8/fp32':>11}{'int4/fp32':>11}"
        )
        print(header)

        def row(label: str, key: str, scale: float = 1.0, fmt: str = ",.1f") -> None:
            # Each ratio is against the original measured in the same run (for speed: in
            # the same process, alternating rounds); the float32 column is the int8 run's.
            a = original[key] / scale
            b = runs[8]["quantized"][key] / scale
            c = runs[4]["quantized"][key] / scale
            r8 = runs[8]["quantized"][key] / runs[8]["original"][key]
            r4 = runs[4]["quantized"][key] / runs[4]["original"][key]
            print(f"   {label:28}{a:>14{fmt}}{b:>14{fmt}}{c:>14{fmt}}{r8:>11.3f}{r4:>11.3f}")

        row("weights (MiB)", "weight_bytes", 2**20, ",.2f")
        row("process RSS for model (MiB)", "rss_bytes_model", 2**20, ",.1f")
        row("peak process RSS (MiB)", "peak_rss_bytes", 2**20, ",.1f")
        row("forward tokens/s", "cpu_forward_tokens_per_s", 1, ",.0f")
        row("decode tokens/s (1 seq)", "cpu_decode_tokens_per_s", 1, ",.1f")
        a = original["quality"]["value"]
        b, c = (runs[x]["quantized"]["quality"]["value"] for x in (8, 4))
        print(f"   {'perplexity':28}{a:>14.3f}{b:>14.3f}{c:>14.3f}{b / a:>11.4f}{c / a:>11.4f}")
        print(
            f"   {'$/M output tokens, ' + gpu:28}{cost[16]:>14.4g}{cost[8]:>14.4g}{cost[4]:>14.4g}"
            f"{cost[8] / cost[16]:>11.3f}{cost[4] / cost[16]:>11.3f}"
            "   (capacity model: bf16 / int8 / int4 weights)"
        )
        if not math.isfinite(a):
            raise SystemExit("perplexity is not finite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--gpu", default="l4")
    parser.add_argument("--skip-quantization", action="store_true")
    parser.add_argument("--skip-distillation", action="store_true")
    args = parser.parse_args()
    loss_check()
    if not args.skip_distillation:
        distillation(args.seeds)
    if not args.skip_quantization:
        quantization(args.hidden, args.layers, args.gpu)


if __name__ == "__main__":
    main()
