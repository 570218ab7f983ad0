"""Quality and speed of a model on this machine: perplexity (causal LMs) or accuracy
(classifiers) on held-out examples, forward tokens/s, and decode tokens/s for LMs."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tokenomy.model.data import Example, batches
from tokenomy.model.loss import IGNORE_INDEX, shift_for_next_token


def logits_of(model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=input_ids, attention_mask=mask)
    logits: torch.Tensor = out.logits
    return logits


def quality(
    model: torch.nn.Module,
    examples: Sequence[Example],
    causal: bool,
    pad_id: int,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Perplexity: exp of the mean next-token negative log-likelihood over every predicted
    token. Accuracy: the share of examples whose top class is the label."""
    model.eval()
    nll, tokens, correct, count = 0.0, 0, 0, 0
    with torch.no_grad():
        for batch in batches(examples, batch_size, pad_id, causal):
            logits = logits_of(model, batch.input_ids, batch.attention_mask).float()
            if causal:
                shifted, labels = shift_for_next_token(logits, batch.labels)
                nll += float(
                    F.cross_entropy(
                        shifted.reshape(-1, shifted.shape[-1]),
                        labels.reshape(-1),
                        ignore_index=IGNORE_INDEX,
                        reduction="sum",
                    )
                )
                tokens += int((labels != IGNORE_INDEX).sum())
            else:
                correct += int((logits.argmax(-1) == batch.labels).sum())
                count += len(batch.labels)
    if causal:
        mean = nll / max(tokens, 1)
        return {"metric": "perplexity", "value": math.exp(mean), "nll": mean, "tokens": tokens}
    return {"metric": "accuracy", "value": correct / max(count, 1), "examples": count}


def forward_tokens_per_s(
    model: torch.nn.Module,
    examples: Sequence[Example],
    causal: bool,
    pad_id: int,
    batch_size: int = 16,
    min_seconds: float = 0.5,
) -> float:
    """Tokens through full forward passes per second (prefill-like), after one warm-up
    batch, repeating the data until ``min_seconds`` have passed."""
    model.eval()
    prepared = list(batches(examples, batch_size, pad_id, causal))
    with torch.no_grad():
        logits_of(model, prepared[0].input_ids, prepared[0].attention_mask)
        tokens, started = 0, time.perf_counter()
        while True:
            for batch in prepared:
                logits_of(model, batch.input_ids, batch.attention_mask)
                tokens += batch.tokens
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                return tokens / elapsed


def decode_tokens_per_s(
    model: torch.nn.Module, prompt: Sequence[int], new_tokens: int = 32, repeats: int = 3
) -> float:
    """Greedy generation with the KV cache, one sequence: new tokens per second (best of
    ``repeats``, after a warm-up)."""
    model.eval()
    ids = torch.tensor([list(prompt)], dtype=torch.long)
    mask = torch.ones_like(ids)
    generate: Any = model.generate
    options = {
        "attention_mask": mask,
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "use_cache": True,
        "pad_token_id": 0,
    }
    with torch.no_grad():
        generate(ids, **{**options, "max_new_tokens": 2, "min_new_tokens": 2})
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            generate(ids, **options)
            best = min(best, time.perf_counter() - started)
    return new_tokens / best


def alternating_speed(
    models: dict[str, Any],
    examples: Sequence[Example],
    causal: bool,
    pad_id: int,
    batch_size: int = 16,
    min_seconds: float = 1.0,
    rounds: int = 5,
) -> dict[str, dict[str, Any]]:
    """Forward (and, for LMs, decode) tokens/s of several models measured in alternating
    rounds, the order reversed every other round, so load from other processes on a
    shared machine falls on all of them alike: the median of the rounds, and each round."""
    import statistics

    names = list(models)
    samples: dict[str, dict[str, list[float]]] = {n: {"forward": [], "decode": []} for n in names}
    per_round = min_seconds / rounds
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            model = models[name]
            samples[name]["forward"].append(
                forward_tokens_per_s(model, examples, causal, pad_id, batch_size, per_round)
            )
            if causal:
                samples[name]["decode"].append(
                    decode_tokens_per_s(model, examples[0].input_ids[:16], repeats=1)
                )
    out: dict[str, dict[str, Any]] = {}
    for name, kinds in samples.items():
        out[name] = {}
        for kind, values in kinds.items():
            if values:
                out[name][f"cpu_{kind}_tokens_per_s"] = round(statistics.median(values), 1)
                out[name][f"cpu_{kind}_tokens_per_s_rounds"] = [round(v, 1) for v in values]
    return out
