"""Local models: a folder saved by ``save_pretrained`` (config.json plus weights, and
tokenizer files if any), or a config alone (a folder with only config.json, or a .json
file) for a student trained from scratch. Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub name fails at once instead of hanging

import torch

from tokenomy.errors import InvalidRequest

CAUSAL_LM = "causal-lm"
CLASSIFIER = "classifier"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@dataclass(slots=True)
class Loaded:
    model: torch.nn.Module
    kind: str
    config: Any
    tokenizer: Any | None
    path: Path
    pretrained: bool  # weights loaded (False: initialised from a config)

    @property
    def causal(self) -> bool:
        return self.kind == CAUSAL_LM

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    @property
    def classes(self) -> int | None:
        return None if self.causal else int(self.config.num_labels)

    @property
    def pad_id(self) -> int:
        for source in (self.tokenizer, self.config):
            value = getattr(source, "pad_token_id", None) if source is not None else None
            if value is not None:
                return int(value)
        return 0

    def label2id(self) -> dict[str, int]:
        mapping = getattr(self.config, "label2id", None) or {}
        return {str(k): int(v) for k, v in mapping.items()}


def task_of(config: Any, task: str | None = None) -> str:
    """``causal-lm`` or ``classifier``: given, or from the config's architectures."""
    if task:
        if task not in (CAUSAL_LM, CLASSIFIER):
            raise InvalidRequest(f"task {task!r}: choose {CAUSAL_LM} or {CLASSIFIER}", param="task")
        return task
    names = getattr(config, "architectures", None) or []
    if any(name.endswith("ForSequenceClassification") for name in names):
        return CLASSIFIER
    return CAUSAL_LM


def _config(path: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidRequest(f"{path}: not a model config ({exc})", param="model") from None


def import_model_code(path: str | Path, task: str | None = None) -> None:
    """Import the module of the model class a folder needs (without building the model),
    so memory measured after this is the model's, not its code's."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = _config(Path(path))
    auto: Any = (
        AutoModelForCausalLM
        if task_of(config, task) == CAUSAL_LM
        else (AutoModelForSequenceClassification)
    )
    mapping: Any = auto._model_mapping  # the lazy mapping imports the module on access
    with contextlib.suppress(KeyError):  # load() reports an unsupported config
        mapping[type(config)]


def has_weights(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in WEIGHT_FILES)


def load(
    path: str | Path, task: str | None = None, seed: int = 0, dtype: torch.dtype | None = None
) -> Loaded:
    """A model folder with weights, or a config (folder or .json file) initialised with
    ``seed``. The model is on CPU, in float32 unless ``dtype`` says otherwise."""
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # loading bars
    where = Path(path)
    if not where.exists():
        raise InvalidRequest(
            f"{where}: no such folder or config file (models are loaded from local folders; "
            "nothing is downloaded)",
            param="model",
        )
    config = _config(where)
    kind = task_of(config, task)
    auto: Any = AutoModelForCausalLM if kind == CAUSAL_LM else AutoModelForSequenceClassification
    pretrained = has_weights(where)
    if pretrained:
        model = auto.from_pretrained(str(where), dtype=dtype or torch.float32)
    else:
        torch.manual_seed(seed)
        model = auto.from_config(config, dtype=dtype or torch.float32)
    folder = where if where.is_dir() else where.parent
    tokenizer = None
    if any((folder / name).exists() for name in TOKENIZER_FILES):
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    loaded = Loaded(model, kind, model.config, tokenizer, where, pretrained)
    if kind == CLASSIFIER and model.config.pad_token_id is None:
        # Last-token classifiers (Llama, Qwen, GPT-2) find each sequence's end by its
        # padding; batches need a pad id (the tokenizer's, else 0).
        model.config.pad_token_id = loaded.pad_id
    return loaded


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings count once)."""
    return sum(p.numel() for p in model.parameters())


def shape_of(config: Any) -> dict[str, int]:
    """Layers, hidden size, attention and KV heads, head dim and vocabulary of a config
    (Llama, Qwen, Mistral, GPT-2, BERT, ... names through transformers' attribute maps)."""
    layers = int(config.num_hidden_layers)
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return {
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "vocab": int(config.vocab_size),
    }
