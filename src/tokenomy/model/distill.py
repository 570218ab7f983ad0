"""``tokenomy distill`` end to end: load the teacher and the student, read and split the
data, train (resumably), save the student as a model folder, and evaluate both models on
the held-out examples: quality, parameters, tokens/s here, and projected cost per million
tokens on a GPU through the capacity model."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenomy.errors import InvalidRequest
from tokenomy.model import cost, data, measure, models
from tokenomy.model.train import Trainer, TrainSettings


@dataclass(frozen=True, slots=True)
class Projection:
    gpu: str = "l4"
    weights: str = "bf16"
    isl: int = 1024
    osl: int = 256
    catalog: str | None = None


def _compatible(teacher: models.Loaded, student: models.Loaded) -> None:
    if teacher.kind != student.kind:
        raise InvalidRequest(
            f"the teacher is a {teacher.kind} and the student a {student.kind}", param="student"
        )
    if teacher.causal and teacher.vocab_size != student.vocab_size:
        raise InvalidRequest(
            f"the teacher's vocabulary has {teacher.vocab_size} tokens and the student's "
            f"{student.vocab_size}: distillation compares their distributions token by token",
            param="student",
        )
    if not teacher.causal and teacher.classes != student.classes:
        raise InvalidRequest(
            f"the teacher has {teacher.classes} classes and the student {student.classes}",
            param="student",
        )


def evaluate(
    loaded: models.Loaded,
    held_out: list[data.Example],
    name: str,
    projection: Projection,
    batch_size: int,
) -> dict[str, Any]:
    """Quality on the held-out examples, parameters, cost on a GPU (tokens/s here are
    measured for both models together, in alternating rounds: see :func:`run`)."""
    model = loaded.model
    params = models.parameter_count(model)
    shape = models.shape_of(loaded.config)
    report: dict[str, Any] = {
        "path": str(loaded.path),
        "params": params,
        **shape,
        "quality": measure.quality(model, held_out, loaded.causal, loaded.pad_id, batch_size),
    }
    report["projected"] = cost.project(
        cost.spec(name, params, shape),
        projection.gpu,
        projection.weights,
        projection.isl,
        projection.osl,
        catalog=projection.catalog,
    )
    return report


def run(
    teacher_path: str,
    student_path: str,
    data_path: str,
    settings: TrainSettings,
    out: Path,
    resume: bool = False,
    stop_after: int | None = None,
    eval_data: str | None = None,
    eval_fraction: float = 0.1,
    max_length: int = 512,
    task: str | None = None,
    projection: Projection | None = None,
    progress: bool = True,
    min_seconds: float = 2.0,
) -> dict[str, Any]:
    projection = projection or Projection()
    teacher = models.load(teacher_path, task)
    if not teacher.pretrained:
        raise InvalidRequest(f"{teacher_path}: the teacher folder has no weights", param="teacher")
    student = models.load(student_path, teacher.kind, seed=settings.seed)
    _compatible(teacher, student)
    tokenizer = teacher.tokenizer or student.tokenizer

    def examples(path: str) -> list[data.Example]:
        return data.encode(
            data.read_records(path),
            tokenizer,
            max_length,
            teacher.vocab_size,
            teacher.label2id(),
            teacher.classes,
        )

    train_set = examples(data_path)
    if eval_data:
        held_out = examples(eval_data)
    else:
        train_set, held_out = data.split(train_set, eval_fraction, settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    identity = json.dumps(
        {"teacher": str(Path(teacher_path).resolve()), "student": str(Path(student_path).resolve())}
    )
    trainer = Trainer(
        teacher.model,
        student.model,
        train_set,
        teacher.causal,
        teacher.pad_id,
        settings,
        checkpoints=out / "checkpoints",
        identity=identity,
        progress=progress,
    )
    result = trainer.train(resume=resume, stop_after=stop_after)
    report: dict[str, Any] = {
        "task": teacher.kind,
        "settings": asdict(settings),
        "train_examples": len(train_set),
        "held_out_examples": len(held_out),
        "steps": result.steps,
        "total_steps": result.total_steps,
        "resumed_from_step": result.resumed_from,
        "finished": result.finished,
        "first_loss": result.losses[0] if result.losses else None,
        "last_loss": result.losses[-1] if result.losses else None,
        "out": str(out),
    }
    if not result.finished:
        report["note"] = f"stopped after step {result.steps}; continue with --resume"
        return report
    folder = out / "student"
    save: Any = student.model.save_pretrained
    save(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    student.path = folder
    batch = settings.batch_size
    report["teacher"] = evaluate(teacher, held_out, "teacher", projection, batch)
    report["student"] = evaluate(student, held_out, "student", projection, batch)
    speed = measure.alternating_speed(
        {"teacher": teacher.model, "student": student.model},
        held_out,
        teacher.causal,
        teacher.pad_id,
        batch,
        min_seconds,
        rounds=5,
    )
    report["teacher"].update(speed["teacher"])
    report["student"].update(speed["student"])
    report["comparison"] = compare(report["teacher"], report["student"])
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def compare(teacher: dict[str, Any], student: dict[str, Any]) -> dict[str, Any]:
    t, s = teacher["quality"], student["quality"]
    out: dict[str, Any] = {
        "params_ratio": round(student["params"] / teacher["params"], 4),
        "cpu_speedup": round(
            student["cpu_forward_tokens_per_s"] / teacher["cpu_forward_tokens_per_s"], 3
        ),
    }
    if t["metric"] == "perplexity":
        out["perplexity_ratio"] = round(s["value"] / t["value"], 4)
    else:
        out["accuracy_retained"] = round(s["value"] / t["value"], 4) if t["value"] else None
    tc, sc = teacher["projected"].get("usd_per_mtok"), student["projected"].get("usd_per_mtok")
    if tc and sc:
        out["cost_ratio"] = round(sc / tc, 4)
    return out


def clear(out: Path) -> None:
    """Start over: remove a previous run's checkpoints (not --resume)."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


__all__ = ["Projection", "clear", "compare", "evaluate", "run"]
