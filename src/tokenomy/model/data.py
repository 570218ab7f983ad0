"""Data sets for distillation and evaluation: a JSONL file (one example a line) or plain text.

A JSONL line is ``{"text": "..."}`` (tokenized with the model folder's tokenizer) or
``{"input_ids": [...]}`` (already tokens), plus ``"label"`` (a class index, or a class
name from the config's ``label2id``) for classifiers. A ``.txt`` file is one text example
per non-empty line. Examples are split into training and held-out sets by a seeded
shuffle, and batched with padding whose labels are ``-100`` (ignored by the loss).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tokenomy.errors import InvalidRequest
from tokenomy.model.loss import IGNORE_INDEX


@dataclass(frozen=True, slots=True)
class Example:
    input_ids: tuple[int, ...]
    label: int | None = None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    file = Path(path)
    if not file.is_file():
        raise InvalidRequest(f"{file}: no such data file", param="data")
    text = file.read_text("utf-8")
    if file.suffix == ".txt":
        return [{"text": line} for line in text.splitlines() if line.strip()]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{file}:{number}: not JSON ({exc.msg})", param="data") from None
        if not isinstance(record, dict) or not ({"text", "input_ids"} & record.keys()):
            raise InvalidRequest(
                f'{file}:{number}: expected an object with "text" or "input_ids"', param="data"
            )
        records.append(record)
    if not records:
        raise InvalidRequest(f"{file}: no examples", param="data")
    return records


def encode(
    records: Sequence[dict[str, Any]],
    tokenizer: Any | None,
    max_length: int,
    vocab_size: int,
    label2id: dict[str, int] | None = None,
    classes: int | None = None,
) -> list[Example]:
    """Token ids (truncated to ``max_length``) and labels, checked against the model."""
    out = []
    for number, record in enumerate(records, 1):
        if "input_ids" in record:
            ids = [int(i) for i in record["input_ids"]]
        elif tokenizer is None:
            raise InvalidRequest(
                f'example {number} has "text" but the model folder has no tokenizer: '
                'add tokenizer files to the folder, or give "input_ids"',
                param="data",
            )
        else:
            ids = list(tokenizer(str(record["text"]), truncation=False)["input_ids"])
        ids = ids[:max_length]
        if not ids:
            raise InvalidRequest(f"example {number} has no tokens", param="data")
        if max(ids) >= vocab_size or min(ids) < 0:
            raise InvalidRequest(
                f"example {number}: token ids must be in [0, {vocab_size})", param="data"
            )
        label = None
        if classes is not None:
            label = _label(record.get("label"), number, label2id or {}, classes)
        out.append(Example(tuple(ids), label))
    return out


def _label(raw: Any, number: int, label2id: dict[str, int], classes: int) -> int:
    if raw is None:
        raise InvalidRequest(f'example {number}: a classifier needs a "label"', param="data")
    if isinstance(raw, str) and not raw.lstrip("-").isdigit():
        if raw not in label2id:
            raise InvalidRequest(
                f"example {number}: label {raw!r} is not one of the model's "
                f"{', '.join(label2id) or 'numbered classes'}",
                param="data",
            )
        return label2id[raw]
    value = int(raw)
    if not 0 <= value < classes:
        raise InvalidRequest(f"example {number}: label {value} not in [0, {classes})", param="data")
    return value


def split(
    examples: list[Example], held_out: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded shuffle, then the last ``held_out`` share (at least one example) held out."""
    if not 0 < held_out < 1:
        raise InvalidRequest("the held-out share must be between 0 and 1", param="eval_fraction")
    if len(examples) < 2:
        raise InvalidRequest("need at least two examples to hold one out", param="data")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = len(order) - max(1, round(len(order) * held_out))
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


@dataclass(frozen=True, slots=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # [B, L] token labels (causal LM) or [B] classes (classifier)

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(examples: Sequence[Example], pad_id: int, causal: bool) -> Batch:
    """Right-padded ids and mask; LM labels are the ids with padding set to -100."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
        mask[row, : len(example.input_ids)] = 1
    if causal:
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    else:
        labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    return Batch(ids, mask, labels)


def batches(
    examples: Sequence[Example], batch_size: int, pad_id: int, causal: bool
) -> Iterator[Batch]:
    for start in range(0, len(examples), batch_size):
        yield collate(examples[start : start + batch_size], pad_id, causal)


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The training order of one epoch: a function of the seed and the epoch only, so a
    resumed run visits the examples in the order the uninterrupted one would have."""
    order = list(range(count))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order
