"""Distillation training: the student learns from a frozen teacher.

The teacher is put in eval mode and its parameters stop requiring gradients; its logits
are computed under ``torch.no_grad``. Checkpoints (student, optimizer, LR schedule, RNG,
position in the data) are written every ``checkpoint_every`` steps and at the end, each
to a temporary file renamed into place, so a run killed at any moment leaves the last
complete one. The order of each epoch is a function of the seed and the epoch alone, so a
resumed run continues with exactly the batches, learning rates and random draws the
uninterrupted run would have used: the same final weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from tokenomy.errors import InvalidRequest
from tokenomy.model.data import Example, collate, epoch_order
from tokenomy.model.loss import distillation_loss, shift_for_next_token
from tokenomy.model.measure import logits_of


@dataclass(frozen=True, slots=True)
class TrainSettings:
    alpha: float = 0.5
    temperature: float = 2.0
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise InvalidRequest("alpha must be between 0 and 1", param="alpha")
        if self.temperature <= 0:
            raise InvalidRequest("temperature must be > 0", param="temperature")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise InvalidRequest("epochs, batch size and checkpoint interval must be >= 1")


@dataclass(slots=True)
class TrainResult:
    steps: int
    total_steps: int
    losses: list[float] = field(default_factory=list)  # mean loss of each step, in order
    resumed_from: int | None = None
    finished: bool = True


def freeze(teacher: torch.nn.Module) -> None:
    teacher.eval()
    teacher.requires_grad_(False)


def fingerprint(settings: TrainSettings, examples: Sequence[Example], *parts: str) -> str:
    """What a checkpoint belongs to: a resumed run must have the same settings and data."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    for example in examples:
        digest.update(repr((example.input_ids, example.label)).encode())
    for part in parts:
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _schedule(settings: TrainSettings, total: int) -> Any:
    def factor(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        remaining = max(total - settings.warmup_steps, 1)
        return max(0.0, 1.0 - (step - settings.warmup_steps) / remaining)

    return factor


class Trainer:
    def __init__(
        self,
        teacher: torch.nn.Module | None,
        student: torch.nn.Module,
        examples: Sequence[Example],
        causal: bool,
        pad_id: int,
        settings: TrainSettings,
        checkpoints: Path | None = None,
        identity: str = "",
        progress: bool = True,
    ) -> None:
        if not examples:
            raise InvalidRequest("no training examples", param="data")
        self.teacher, self.student = teacher, student
        self.examples, self.causal, self.pad_id = list(examples), causal, pad_id
        self.settings, self.checkpoints, self.progress = settings, checkpoints, progress
        self.steps_per_epoch = math.ceil(len(self.examples) / settings.batch_size)
        self.total_steps = self.steps_per_epoch * settings.epochs
        self.fingerprint = fingerprint(settings, self.examples, identity)
        if teacher is None and settings.alpha > 0:
            raise InvalidRequest("alpha > 0 needs a teacher", param="teacher")
        if teacher is not None:
            freeze(teacher)
        self.optimizer = torch.optim.AdamW(
            [p for p in student.parameters() if p.requires_grad],
            lr=settings.learning_rate,
            weight_decay=settings.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _schedule(settings, self.total_steps)
        )
        self.step = 0
        self.losses: list[float] = []

    # -- one step ---------------------------------------------------------------------------

    def loss_of(self, indices: Sequence[int]) -> torch.Tensor:
        batch = collate([self.examples[i] for i in indices], self.pad_id, self.causal)
        student_logits = logits_of(self.student, batch.input_ids, batch.attention_mask)
        if self.teacher is None:  # hard labels alone (alpha = 0): the baseline
            teacher_logits = student_logits.detach()
        else:
            with torch.no_grad():
                teacher_logits = logits_of(self.teacher, batch.input_ids, batch.attention_mask)
        labels = batch.labels
        if self.causal:
            student_logits, labels = shift_for_next_token(student_logits, labels)
            teacher_logits, _ = shift_for_next_token(teacher_logits, batch.labels)
        s = self.settings
        return distillation_loss(
            student_logits, teacher_logits, labels, s.alpha, s.temperature
        ).total

    def _train_step(self, indices: Sequence[int]) -> float:
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_of(indices)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    # -- checkpoints ------------------------------------------------------------------------

    def _checkpoint_files(self) -> list[Path]:
        if self.checkpoints is None or not self.checkpoints.is_dir():
            return []
        return sorted(self.checkpoints.glob("step-*.pt"))

    def save_checkpoint(self) -> Path | None:
        if self.checkpoints is None:
            return None
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        state = {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "student": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "losses": self.losses,
        }
        final = self.checkpoints / f"step-{self.step:08d}.pt"
        partial = final.with_suffix(".pt.partial")
        torch.save(state, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, final)
        for old in self._checkpoint_files()[: -self.settings.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return final

    def resume(self) -> int | None:
        """Load the latest complete checkpoint; the step it was taken at (None: none)."""
        files = self._checkpoint_files()
        if not files:
            return None
        state = torch.load(files[-1], map_location="cpu", weights_only=True)
        if state["fingerprint"] != self.fingerprint:
            raise InvalidRequest(
                f"{files[-1]} belongs to another run (different settings, data, teacher or "
                "student): use another --out, or drop --resume to start over",
                param="resume",
            )
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.losses = [float(v) for v in state["losses"]]
        return self.step

    # -- the loop ---------------------------------------------------------------------------

    def train(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to the end (or ``stop_after`` more steps, then checkpoint and return)."""
        resumed = self.resume() if resume else None
        if resumed is None:
            torch.manual_seed(self.settings.seed)
        budget = stop_after if stop_after is not None else self.total_steps
        done_now = 0
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="distill",
            unit="step",
            disable=not self.progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        try:
            while self.step < self.total_steps and done_now < budget:
                epoch, position = divmod(self.step, self.steps_per_epoch)
                order = epoch_order(len(self.examples), self.settings.seed, epoch)
                size = self.settings.batch_size
                loss = self._train_step(order[position * size : (position + 1) * size])
                done_now += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch + 1, refresh=False)
                if self.step % self.settings.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            bar.close()
        if self.step % self.settings.checkpoint_every:
            self.save_checkpoint()
        return TrainResult(
            steps=self.step,
            total_steps=self.total_steps,
            losses=list(self.losses),
            resumed_from=resumed,
            finished=self.step >= self.total_steps,
        )
