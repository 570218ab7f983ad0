"""A small synthetic task on which soft labels carry what hard labels do not, and tiny
models built from configs (no downloads): for tests, benchmarks and trying the commands.

Bag-of-tokens classification with noisy labels: each token carries a hidden score vector
over the classes; a sequence's class probabilities are the softmax of its tokens' summed
scores, and its recorded label is *drawn* from them (about 60% agree with the most likely
class). The clean label, the most likely class, is what held-out accuracy measures. A
teacher trained on many noisy examples learns the probabilities; a student that sees few
examples learns, from hard labels, one noisy draw each, and from the teacher the whole
distribution (how likely each class is, which classes are close).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tokenomy.model.data import Example

VOCAB = 40  # token 0 is padding
LENGTH = 8
CLASSES = 5


@dataclass(frozen=True, slots=True)
class Task:
    seed: int = 1234
    vocab: int = VOCAB
    length: int = LENGTH
    classes: int = CLASSES
    sharpness: float = 2.0

    def scores(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        table = torch.randn(self.vocab, self.classes, generator=generator)
        table[0] = 0
        return table

    def sample(self, count: int, seed: int) -> tuple[list[Example], list[Example]]:
        """``count`` sequences with noisy (drawn) labels, and the same with clean labels."""
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, self.vocab, (count, self.length), generator=generator)
        logits = self.scores()[ids].sum(1) / math.sqrt(self.length) * self.sharpness
        clean = logits.argmax(-1)
        noisy = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        rows = [tuple(int(i) for i in row) for row in ids]
        return (
            [Example(r, int(y)) for r, y in zip(rows, noisy, strict=True)],
            [Example(r, int(y)) for r, y in zip(rows, clean, strict=True)],
        )


def classifier_config(hidden: int = 32, layers: int = 1, task: Task | None = None) -> Any:
    """A tiny Llama sequence classifier (last-token pooling) for the task."""
    from transformers import LlamaConfig

    task = task or Task()
    return LlamaConfig(  # type: ignore[call-arg]  # num_labels: PretrainedConfig kwargs
        vocab_size=task.vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        num_labels=task.classes,
        pad_token_id=0,
        tie_word_embeddings=False,
        architectures=["LlamaForSequenceClassification"],
    )


def causal_lm_config(
    hidden: int = 64, layers: int = 2, vocab: int = 256, intermediate: int | None = None
) -> Any:
    """A tiny Llama causal LM (grouped-query attention: 4 heads, 2 KV heads)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )


def write_jsonl(path: Path, examples: list[Example]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for e in examples:
            record: dict[str, Any] = {"input_ids": list(e.input_ids)}
            if e.label is not None:
                record["label"] = e.label
            handle.write(json.dumps(record) + "\n")
    return path


def markov_text(count: int, length: int, vocab: int, seed: int) -> list[Example]:
    """Token sequences from a sparse random Markov chain (each token has a few likely
    successors): a causal LM can learn it, so perplexity has room to move."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.full((vocab, vocab), -4.0)
    for token in range(vocab):
        nxt = torch.randint(3, vocab, (4,), generator=torch.Generator().manual_seed(token))
        table[token, nxt] = torch.tensor([3.0, 2.0, 1.5, 1.0])
    probs = torch.softmax(table, -1)
    out = []
    for _ in range(count):
        token = int(torch.randint(3, vocab, (1,), generator=generator))
        row = [1, token]
        for _ in range(length - 2):
            token = int(torch.multinomial(probs[token], 1, generator=generator))
            row.append(token)
        out.append(Example(tuple(row)))
    return out


def write_example(folder: Path) -> dict[str, Path]:
    """A folder to try ``tokenomy distill`` on: a trained teacher classifier (4,000 noisy
    examples), a student config a seventh its size, 300 noisy training examples and
    2,000 clean held-out ones, and a tiny causal LM with Markov-chain text for
    ``tokenomy quantize-eval``."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    from tokenomy.model.train import Trainer, TrainSettings

    folder.mkdir(parents=True, exist_ok=True)
    task = Task()
    noisy, _ = task.sample(4000, seed=1)
    torch.manual_seed(0)
    teacher = LlamaForSequenceClassification(classifier_config(hidden=64, layers=2))  # type: ignore[no-untyped-call]
    settings = TrainSettings(alpha=0.0, epochs=4, batch_size=64, learning_rate=3e-3)
    Trainer(None, teacher, noisy, False, 0, settings, progress=False).train()
    teacher.save_pretrained(str(folder / "teacher"))
    student = folder / "student.json"
    student.write_text(classifier_config(hidden=32, layers=1).to_json_string())
    train, _ = task.sample(300, seed=1000)
    _, clean = task.sample(2000, seed=99)
    torch.manual_seed(0)
    lm = LlamaForCausalLM(causal_lm_config(hidden=256, layers=4))
    text = markov_text(96, 64, 256, seed=3)
    settings = TrainSettings(alpha=0.0, epochs=2, batch_size=8, learning_rate=2e-3)
    Trainer(None, lm, text[:64], True, 0, settings, progress=False).train()
    lm.save_pretrained(str(folder / "lm"))
    return {
        "teacher": folder / "teacher",
        "student": student,
        "train": write_jsonl(folder / "train.jsonl", train),
        "clean": write_jsonl(folder / "clean.jsonl", clean),
        "lm": folder / "lm",
        "text": write_jsonl(folder / "text.jsonl", text[64:]),
    }


if __name__ == "__main__":
    import sys

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    for name, path in write_example(Path(sys.argv[1] if len(sys.argv) > 1 else "example")).items():
        print(f"{name}: {path}")
