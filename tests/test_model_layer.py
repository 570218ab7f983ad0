"""The model layer (the ``model`` extra): the distillation objective, a frozen teacher, a
real gain of distillation over hard labels on a synthetic task (over seeds), resumable
training, quantization measured on this machine, and candidates priced by the planner.

Everything is built from configs (tiny Llama models); nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import LlamaForCausalLM, LlamaForSequenceClassification  # noqa: E402

from conftest import database_url  # noqa: E402
from tokenomy.cli.main import cli  # noqa: E402
from tokenomy.model.data import Example  # noqa: E402
from tokenomy.model.loss import distillation_loss  # noqa: E402
from tokenomy.model.measure import quality  # noqa: E402
from tokenomy.model.synthetic import (  # noqa: E402
    Task,
    causal_lm_config,
    classifier_config,
    markov_text,
    write_jsonl,
)
from tokenomy.model.train import Trainer, TrainSettings  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny models train faster on one thread than on two shared ones (and leave a core
    free); the setting is put back for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return json.loads(result.stdout) if "--json" in args and code == 0 else result.output


# -- the objective -------------------------------------------------------------------------


def _direct(
    zs: list[list[float]], zt: list[list[float]], ys: list[int], alpha: float, t: float
) -> float:
    """The formula, position by position, in plain Python floats."""

    def softmax(z: list[float], temp: float) -> list[float]:
        top = max(z)
        e = [math.exp((v - top) / temp) for v in z]
        return [v / sum(e) for v in e]

    total = 0.0
    for s_row, t_row, y in zip(zs, zt, ys, strict=True):
        p_t, p_s = softmax(t_row, t), softmax(s_row, t)
        kl = sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s, strict=True))
        ce = -math.log(softmax(s_row, 1.0)[y])
        total += alpha * t * t * kl + (1 - alpha) * ce
    return total / len(ys)


@pytest.mark.parametrize("alpha, temperature", [(0.5, 2.0), (0.9, 4.0), (0.0, 1.0), (1.0, 3.0)])
def test_loss_equals_the_formula_per_token_ignoring_padding(alpha: float, temperature: float):
    gen = torch.Generator().manual_seed(7)
    student = torch.randn(3, 5, 11, generator=gen) * 3
    teacher = torch.randn(3, 5, 11, generator=gen) * 3
    labels = torch.randint(0, 11, (3, 5), generator=gen)
    labels[0, 3:] = -100  # padding
    labels[2, 0] = -100  # a prompt token
    got = distillation_loss(student, teacher, labels, alpha, temperature)
    keep = [(b, i) for b in range(3) for i in range(5) if labels[b, i] != -100]
    expected = _direct(
        [student[b, i].tolist() for b, i in keep],
        [teacher[b, i].tolist() for b, i in keep],
        [int(labels[b, i]) for b, i in keep],
        alpha,
        temperature,
    )
    assert got.positions == len(keep) == 12
    assert float(got.total) == pytest.approx(expected, rel=1e-5)


def test_loss_for_a_classifier_and_its_bounds():
    gen = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    labels = torch.randint(0, 4, (6,), generator=gen)
    got = distillation_loss(student, teacher, labels, 0.3, 2.0)
    expected = _direct(student.tolist(), teacher.tolist(), labels.tolist(), 0.3, 2.0)
    assert float(got.total) == pytest.approx(expected, rel=1e-5)
    same = distillation_loss(student, student.clone(), labels, 1.0, 2.0)
    assert float(same.total) == pytest.approx(0.0, abs=1e-6)  # KL of a distribution to itself
    with pytest.raises(ValueError, match="same vocabulary"):
        distillation_loss(student, torch.randn(6, 5), labels, 0.5, 2.0)


# -- a frozen teacher ----------------------------------------------------------------------


def test_gradients_reach_the_student_only():
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(causal_lm_config(hidden=64, layers=2, vocab=64))
    student = LlamaForCausalLM(causal_lm_config(hidden=32, layers=1, vocab=64))
    teacher.train()  # the trainer must put it in eval mode itself
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    examples = markov_text(8, 12, 64, seed=1)
    trainer = Trainer(
        teacher, student, examples, True, 0, TrainSettings(alpha=0.7, temperature=2.0),
        progress=False,
    )  # fmt: skip
    assert not teacher.training
    loss = trainer.loss_of(range(8))
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    grads = [p.grad for p in student.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    trainer.train()
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# -- distillation beats hard labels (a real effect, over seeds) ---------------------------

SEEDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def teacher_classifier() -> Any:
    task = Task()
    noisy, _ = task.sample(4000, seed=1)
    torch.manual_seed(0)
    teacher = LlamaForSequenceClassification(classifier_config(hidden=64, layers=2))
    settings = TrainSettings(alpha=0.0, epochs=4, batch_size=64, learning_rate=3e-3)
    Trainer(None, teacher, noisy, False, 0, settings, progress=False).train()
    teacher.eval()
    return teacher


def _student_accuracy(teacher: Any, train: list[Example], test: list[Example], alpha: float,
                      seed: int) -> float:  # fmt: skip
    torch.manual_seed(seed)
    student = LlamaForSequenceClassification(classifier_config(hidden=32, layers=1))
    settings = TrainSettings(
        alpha=alpha, temperature=2.0, epochs=8, batch_size=32, learning_rate=3e-3, seed=seed
    )
    Trainer(teacher if alpha else None, student, train, False, 0, settings, progress=False).train()
    return float(quality(student, test, False, 0)["value"])


def test_distilled_student_beats_hard_labels_over_seeds(teacher_classifier: Any) -> None:
    task = Task()
    _, clean_test = task.sample(2000, seed=99)
    teacher_accuracy = quality(teacher_classifier, clean_test, False, 0)["value"]
    hard, soft = [], []
    for seed in SEEDS:
        train, _ = task.sample(300, seed=1000 + seed)  # few examples, noisy labels
        hard.append(_student_accuracy(teacher_classifier, train, clean_test, 0.0, seed))
        soft.append(_student_accuracy(teacher_classifier, train, clean_test, 0.9, seed))
    h_mean, h_sd = statistics.mean(hard), statistics.stdev(hard)
    s_mean, s_sd = statistics.mean(soft), statistics.stdev(soft)
    print(
        f"\nteacher {teacher_accuracy:.3f}; hard labels {h_mean:.3f} ± {h_sd:.3f}; "
        f"distilled {s_mean:.3f} ± {s_sd:.3f} (clean held-out accuracy, {len(SEEDS)} seeds)"
    )
    assert teacher_accuracy > 0.8
    assert all(s > h for s, h in zip(soft, hard, strict=True))  # every seed
    # Far beyond the seed-to-seed spread: the paired gains' mean is > 3 standard errors.
    gains = [s - h for s, h in zip(soft, hard, strict=True)]
    assert statistics.mean(gains) > 3 * statistics.stdev(gains) / math.sqrt(len(gains))
    assert s_mean - h_mean > 0.1


# -- the command: distill, resume, evaluate, record ---------------------------------------


@pytest.fixture()
def lm_setup(tmp_path: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(causal_lm_config(hidden=64, layers=2, vocab=96))
    # Teach the teacher the Markov chain briefly, so it has something to pass on.
    data = markov_text(96, 24, 96, seed=5)
    settings = TrainSettings(alpha=0.0, epochs=3, batch_size=16, learning_rate=5e-3)
    Trainer(None, teacher, data, True, 0, settings, progress=False).train()
    teacher.save_pretrained(tmp_path / "teacher")
    student = tmp_path / "student.json"
    student.write_text(causal_lm_config(hidden=32, layers=1, vocab=96).to_json_string())
    config = tmp_path / "tokenomy.yaml"
    config.write_text(f"database: {database_url(tmp_path / 'ledger.db')}\n")
    return {
        "teacher": tmp_path / "teacher",
        "student": student,
        "data": write_jsonl(tmp_path / "data.jsonl", data),
        "config": config,
        "root": tmp_path,
    }


def _distill(s: dict[str, Path], out: Path, *extra: str) -> Any:
    return invoke(
        "distill", "--teacher", str(s["teacher"]), "--student", str(s["student"]),
        "--data", str(s["data"]), "--alpha", "0.8", "--temperature", "2", "--epochs", "2",
        "--batch-size", "8", "--lr", "3e-3", "--checkpoint-every", "4", "--out", str(out),
        "--config", str(s["config"]), "--min-seconds", "0.3", "--quiet", "--json", *extra,
    )  # fmt: skip


def test_distill_command_reports_quality_speed_and_cost_and_records_a_candidate(
    lm_setup: dict[str, Path],
) -> None:
    out = lm_setup["root"] / "run"
    report = _distill(lm_setup, out, "--name", "tiny-student", "--gpu", "l4")
    assert report["finished"] and report["steps"] == report["total_steps"] == 2 * 11
    assert report["last_loss"] < report["first_loss"]
    teacher, student = report["teacher"], report["student"]
    assert student["params"] < teacher["params"]
    assert student["params"] == sum(
        v.numel() for v in load_file(out / "student" / "model.safetensors").values()
    )
    for side in (teacher, student):
        assert side["quality"]["metric"] == "perplexity" and 1 < side["quality"]["value"] < 96
        assert side["cpu_forward_tokens_per_s"] > 0 and side["cpu_decode_tokens_per_s"] > 0
        assert side["projected"]["gpu"] == "l4" and side["projected"]["usd_per_mtok"] > 0
    # A smaller model costs less per token on the same GPU (the capacity model).
    assert student["projected"]["usd_per_mtok"] < teacher["projected"]["usd_per_mtok"]
    assert report["comparison"]["cost_ratio"] < 1
    assert report["candidate"] == {"recorded": True, "name": "tiny-student"}
    listed = invoke("candidates", "list", "--config", str(lm_setup["config"]), "--json")
    assert [c["name"] for c in listed] == ["tiny-student"]
    assert listed[0]["params"] == student["params"]
    assert listed[0]["quality"] == pytest.approx(student["quality"]["value"])

    # The planner's what-if prices traffic switched to the candidate at its projected cost.
    trace = lm_setup["root"] / "trace.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2026-11-01 10:00:01,1000,200\n2026-11-01 10:30:00,3000,500\n"
    )
    result = invoke(
        "plan", "whatif", "--config", str(lm_setup["config"]), "--trace", str(trace),
        "--trace-model", "big", "--base-price", "big:2:10", "--switch",
        "model=big:tiny-student", "--json",
    )  # fmt: skip
    from decimal import Decimal

    per_mtok = Decimal(listed[0]["usd_per_mtok_all_tokens"])
    expected = (Decimal(4000 + 700) * per_mtok / Decimal(1_000_000)).quantize(Decimal("1e-6"))
    assert Decimal(result["total"]["switch model=big:tiny-student"]) == expected
    assert Decimal(result["total"]["baseline"]) == Decimal("0.015000")
    assert result["self_hosted_candidates"]["tiny-student"]["source"] == "distilled"


def test_a_stopped_run_resumed_from_its_checkpoint_ends_with_the_same_weights(
    lm_setup: dict[str, Path],
) -> None:
    whole = lm_setup["root"] / "whole"
    _distill(lm_setup, whole, "--no-register")
    parts = lm_setup["root"] / "parts"
    first = _distill(lm_setup, parts, "--no-register", "--stop-after", "9")
    assert not first["finished"] and first["steps"] == 9
    # Checkpoints at 8 and 9; a kill in the middle of writing leaves a .partial file only.
    (parts / "checkpoints" / "step-00000099.pt.partial").write_bytes(b"torn")
    second = _distill(lm_setup, parts, "--no-register", "--resume")
    assert second["finished"] and second["resumed_from_step"] == 9
    a = load_file(whole / "student" / "model.safetensors")
    b = load_file(parts / "student" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert second["last_loss"] == first_or_whole(whole)["last_loss"]
    # Another run's checkpoints are refused, not silently mixed in.
    result = CliRunner().invoke(cli, [
        "distill", "--teacher", str(lm_setup["teacher"]), "--student", str(lm_setup["student"]),
        "--data", str(lm_setup["data"]), "--alpha", "0.3", "--out", str(parts), "--resume",
        "--quiet", "--no-register",
    ])  # fmt: skip
    assert result.exit_code == 1 and "belongs to another run" in result.output


def test_a_run_killed_mid_training_resumes_to_the_same_weights(
    lm_setup: dict[str, Path],
) -> None:
    """SIGKILL at the first checkpoint, then --resume: the weights of an uninterrupted run."""
    import signal
    import time

    long = ("--epochs", "12", "--checkpoint-every", "4")  # 132 steps
    whole = lm_setup["root"] / "whole"
    _distill(lm_setup, whole, "--no-register", *long)
    killed = lm_setup["root"] / "killed"
    args = [
        sys.executable, "-m", "tokenomy", "distill", "--teacher", str(lm_setup["teacher"]),
        "--student", str(lm_setup["student"]), "--data", str(lm_setup["data"]),
        "--alpha", "0.8", "--temperature", "2", "--batch-size", "8", "--lr", "3e-3",
        "--out", str(killed), "--quiet", "--no-register", *long,
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list((killed / "checkpoints").glob("step-*.pt")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "student").exists()  # it never got to the end
    resumed = _distill(lm_setup, killed, "--no-register", "--resume", *long)
    assert resumed["finished"] and 4 <= resumed["resumed_from_step"] < 132
    a = load_file(whole / "student" / "model.safetensors")
    b = load_file(killed / "student" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def first_or_whole(out: Path) -> Any:
    return json.loads((out / "report.json").read_text())


# -- quantization measured here ------------------------------------------------------------


@pytest.fixture(scope="module")
def quant_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quant")
    torch.manual_seed(0)
    model = LlamaForCausalLM(causal_lm_config(hidden=256, layers=2, vocab=128))
    data = markov_text(32, 48, 128, seed=3)
    Trainer(None, model, data, True, 0, TrainSettings(alpha=0.0, epochs=2, batch_size=8,
            learning_rate=3e-3), progress=False).train()  # fmt: skip
    model.save_pretrained(root / "lm")
    config = root / "tokenomy.yaml"
    config.write_text(f"database: sqlite:///{root / 'ledger.db'}\n")
    return {"model": root / "lm", "data": write_jsonl(root / "text.jsonl", data), "config": config}


def test_quantize_eval_measures_memory_speed_and_quality_here(
    quant_model: dict[str, Path],
) -> None:
    pytest.importorskip("optimum.quanto")
    report = invoke(
        "quantize-eval", "--model", str(quant_model["model"]), "--bits", "4",
        "--data", str(quant_model["data"]), "--gpu", "a10g", "--min-seconds", "0.2",
        "--rounds", "2", "--config", str(quant_model["config"]), "--json",
    )  # fmt: skip
    original, quantized, ratios = report["original"], report["quantized"], report["ratios"]
    # The original's weight bytes are what the saved float32 tensors hold.
    stored = load_file(quant_model["model"] / "model.safetensors")
    assert original["weight_bytes"] >= sum(t.numel() * t.element_size() for t in stored.values())
    linear = sum(t.numel() for k, t in stored.items() if k.endswith("proj.weight") or
                 k == "lm_head.weight")  # fmt: skip
    rest = original["weight_bytes"] - 4 * linear
    assert quantized["quantized_linear_layers"] == 2 * 7 + 1
    # Half a byte per linear weight, plus a scale and a shift per group of 128 (~6%).
    assert rest + 0.5 * linear <= quantized["weight_bytes"] <= rest + 0.5 * linear * 1.2
    assert ratios["weight_bytes"] < 0.2
    for variant in (original, quantized):
        assert variant["rss_bytes_loaded"] > variant["rss_bytes_before_load"] > 10 * 2**20
        assert variant["peak_rss_bytes"] >= variant["rss_bytes_loaded"]
        assert variant["cpu_forward_tokens_per_s"] > 0 and variant["cpu_decode_tokens_per_s"] > 0
        # Speed: the median of alternating rounds in one process (fair under shared load).
        assert len(variant["cpu_forward_tokens_per_s_rounds"]) == 2
    # Quality moves a little, not a lot (a trained model: perplexity well below the vocab).
    assert original["quality"]["value"] < 64
    assert abs(ratios["quality_ratio"] - 1) < 0.25
    assert report["candidate"]["name"] == "lm-int4"

    # The cost is the capacity model's for this config: `plan capacity` with the config's
    # shape (read here from config.json) as a custom catalog entry gives the same figure.
    cfg = json.loads((quant_model["model"] / "config.json").read_text())
    params = sum(t.numel() for t in stored.values())
    catalog = quant_model["model"].parent / "catalog.yaml"
    catalog.write_text(json.dumps({"models": {"mine": {
        "params": params, "layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"],
        "heads": cfg["num_attention_heads"], "kv_heads": cfg["num_key_value_heads"],
        "vocab": cfg["vocab_size"],
    }}}))  # fmt: skip
    for variant, weights in ((original, "bf16"), (quantized, "int4")):
        planned = invoke(
            "plan", "capacity", "--catalog", str(catalog), "--model", "mine", "--gpu", "a10g",
            "--weights", weights, "--isl", "1024", "--osl", "256", "--gpu-hour-usd", "1.00",
            "--json",
        )  # fmt: skip
        assert variant["projected"]["usd_per_mtok"] == planned["usd_per_mtok"]
    assert ratios["projected_usd_per_mtok"] <= 1


def test_int8_weights_take_a_quarter_of_float32_and_keep_quality(
    quant_model: dict[str, Path],
) -> None:
    pytest.importorskip("torchao")
    from tokenomy.model import models
    from tokenomy.model.data import encode, read_records
    from tokenomy.model.quantize import quantize, weight_bytes

    loaded = models.load(quant_model["model"])
    examples = encode(read_records(quant_model["data"]), None, 512, 128)
    before_bytes = weight_bytes(loaded.model)
    before = quality(loaded.model, examples, True, 0)["value"]
    linear = sum(m.weight.numel() for m in loaded.model.modules()
                 if isinstance(m, torch.nn.Linear))  # fmt: skip
    assert quantize(loaded.model, 8) == 15
    after_bytes = weight_bytes(loaded.model)
    after = quality(loaded.model, examples, True, 0)["value"]
    rest = before_bytes - 4 * linear
    # One byte per weight plus a float32 scale per output channel (and per-token activations).
    assert rest + linear <= after_bytes <= rest + 1.05 * linear
    assert abs(after / before - 1) < 0.05


def test_quantize_eval_table_and_errors(quant_model: dict[str, Path]) -> None:
    out = invoke("quantize-eval", "--model", str(quant_model["model"]), "--bits", "3",
                 "--data", str(quant_model["data"]), code=2)  # fmt: skip
    assert "'3' is not one of '8', '4'" in out
    out = invoke("distill", "--teacher", "meta-llama/Llama-3.1-8B", "--student", "x",
                 "--data", str(quant_model["data"]), code=2)  # fmt: skip
    assert "does not exist" in out


def test_the_core_install_does_not_import_torch() -> None:
    code = (
        "import sys, tokenomy.cli.main; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
