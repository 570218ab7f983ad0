"""Fine-tuning and cross-validating the cross-encoder hit verifier.

``python -m tokenomy.cache.train_cross_encoder --pairs qqp_pairs_dev.jsonl`` runs grouped
5-fold cross-validation (out-of-fold scores for every pair; Quora reuses questions, so
pairs sharing a question text always sit in the same fold), then fits the shipped model on
all pairs and writes ``cross_encoder_v1/`` (the fine-tuned layers as fp16 safetensors and a
JSON manifest with the cross-validated figures).

The model: the packaged all-MiniLM-L6-v2 read as a BERT pair classifier
(``[CLS] a [SEP] b [SEP]``), a linear head on the [CLS] output, BCE loss. Only the top
``--layers`` transformer layers and the head are trained; the rest stay the packaged
weights, so the frozen layers' outputs are computed once and every epoch only runs the top
layers. Each pair is trained in both orders and scored as the mean of both orders.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenomy.cache.cross_encoder import (
    ARTIFACT_DIR,
    CV_SCORES,
    FORMAT_VERSION,
    MANIFEST,
    WEIGHTS,
    PairEncoder,
    base_weights_sha256,
)
from tokenomy.cache.training import grouped_folds, groups_of

if TYPE_CHECKING:
    import numpy.typing as npt
    import torch

VERSION = "ce1"
LAYERS = 2
MAX_LENGTH = 96
EPOCHS = 3
BATCH = 32
LR_LAYERS = 5e-5
LR_HEAD = 1e-3
SEED = 0


class FrozenFeatures:
    """The frozen bottom layers' output for every pair in both orders, computed once."""

    def __init__(self, encoder: PairEncoder, a: Sequence[str], b: Sequence[str]) -> None:
        import torch

        self.hidden: list[torch.Tensor] = []  # per sequence, (tokens, 384) fp16
        self.order: list[tuple[int, int]] = []  # (pair, order)
        texts = [(x, y) for x, y in zip(a, b, strict=True)] + [
            (y, x) for x, y in zip(a, b, strict=True)
        ]
        n = len(a)
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(texts), 64):
                chunk = texts[start : start + 64]
                ids, mask, types = encoder.tokenize(chunk)
                h = encoder.bottom(ids, mask, types)
                lengths = mask.sum(dim=1).tolist()
                for row, length in enumerate(lengths):
                    self.hidden.append(h[row, : int(length)].to(torch.float16).clone())
        self.seconds = time.perf_counter() - started
        self.n = n

    def index(self, pairs: npt.NDArray[np.int_]) -> list[int]:
        """Sequence rows (both orders) of these pairs."""
        return [int(p) for p in pairs] + [int(p) + self.n for p in pairs]

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        longest = max(self.hidden[r].shape[0] for r in rows)
        width = self.hidden[rows[0]].shape[1]
        h = torch.zeros(len(rows), longest, width)
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, r in enumerate(rows):
            t = self.hidden[r].shape[0]
            h[i, :t] = self.hidden[r].float()
            mask[i, :t] = 1
        return h, mask


def train(
    encoder: PairEncoder,
    frozen: FrozenFeatures,
    pairs: npt.NDArray[np.int_],
    labels: npt.NDArray[np.int_],
    *,
    epochs: int = EPOCHS,
    seed: int = SEED,
    log: bool = True,
) -> None:
    """Fine-tune ``encoder``'s trainable part in place on these pairs (both orders)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = frozen.index(pairs)
    y_all = np.concatenate([labels, labels])
    y_of = {r: int(y) for r, y in zip(rows, y_all, strict=True)}
    encoder.reset_trainable()
    layer_params = [p for m in encoder.top_layers() for p in m.parameters()]
    optimizer = torch.optim.AdamW(
        [
            {"params": layer_params, "lr": LR_LAYERS},
            {"params": list(encoder.head.parameters()), "lr": LR_HEAD},
        ],
        weight_decay=0.01,
    )
    steps = epochs * math.ceil(len(rows) / BATCH)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))),
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    encoder.train_mode(True)
    for epoch in range(epochs):
        started = time.perf_counter()
        # batches of similar length (far less padding), in random order
        order = sorted(
            range(len(rows)), key=lambda i: frozen.hidden[rows[i]].shape[0] // 8 + rng.random()
        )
        chunks = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        total = 0.0
        for chunk in chunks:
            batch_rows = [rows[i] for i in chunk]
            h, mask = frozen.batch(batch_rows)
            target = torch.tensor([y_of[r] for r in batch_rows], dtype=torch.float32)
            logits = encoder.top(h, mask)
            loss = loss_fn(logits, target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(layer_params, 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(chunk)
        if log:
            print(
                f"  epoch {epoch + 1}/{epochs}: loss {total / len(rows):.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    encoder.train_mode(False)


def predict(
    encoder: PairEncoder, frozen: FrozenFeatures, pairs: npt.NDArray[np.int_]
) -> npt.NDArray[np.float64]:
    """Mean of both orders' probabilities for these pairs."""
    import torch

    rows = frozen.index(pairs)
    out = np.zeros(len(rows))
    with torch.inference_mode():
        for start in range(0, len(rows), 128):
            chunk = rows[start : start + 128]
            h, mask = frozen.batch(chunk)
            out[start : start + len(chunk)] = torch.sigmoid(encoder.top(h, mask)).numpy()
    n = len(pairs)
    return (out[:n] + out[n:]) / 2.0


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main() -> None:
    import argparse

    import torch

    from tokenomy.cache.evaluate import load_pairs

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", required=True, help="labelled pairs (text_a, text_b, label)")
    parser.add_argument("--out", default=str(Path(__file__).with_name(ARTIFACT_DIR)))
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--cv", type=int, default=5, help="folds (0: no cross-validation)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--oof-out", default=None, help="write out-of-fold scores (JSON)")
    parser.add_argument("--no-final", action="store_true", help="cross-validate only")
    parser.add_argument(
        "--min-score", type=float, default=0.5, help="shipped operating point (chosen by CV)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    pairs = load_pairs(args.pairs)
    if args.limit:
        pairs = pairs.head(args.limit)
    if pairs.labels is None:
        raise SystemExit("training needs labelled pairs {text_a, text_b, label}")
    y = np.asarray(pairs.labels)
    encoder = PairEncoder.base(layers=args.layers, max_length=MAX_LENGTH)
    frozen = FrozenFeatures(encoder, pairs.a, pairs.b)
    print(f"frozen layers computed for {2 * len(y)} sequences in {frozen.seconds:.0f} s")
    groups = groups_of(pairs.a, pairs.b)
    record: dict[str, Any] = {
        "groups": int(groups.max()) + 1,
        "grouped_folds": True,
    }
    started = time.perf_counter()
    if args.cv:
        oof = np.zeros(len(y))
        fold_of = np.zeros(len(y), dtype=int)
        for i, held_out in enumerate(grouped_folds(y, groups, args.cv)):
            train_idx = np.setdiff1d(np.arange(len(y)), held_out)
            print(f"fold {i + 1}/{args.cv}: train {len(train_idx)}, test {len(held_out)}")
            train(encoder, frozen, train_idx, y[train_idx], epochs=args.epochs)
            oof[held_out] = predict(encoder, frozen, held_out)
            fold_of[held_out] = i
        record["cv_seconds"] = round(time.perf_counter() - started)
        cv_scores = {
            "training_sha256": pairs.sha256,
            "folds": args.cv,
            "grouped": True,
            "layers": args.layers,
            "epochs": args.epochs,
            "scores": [round(float(v), 5) for v in oof],
            "fold": fold_of.tolist(),
        }
        oof_path = Path(args.oof_out) if args.oof_out else Path(args.out) / CV_SCORES
        oof_path.parent.mkdir(parents=True, exist_ok=True)
        oof_path.write_text(json.dumps(cv_scores) + "\n")
        print(f"out-of-fold scores in {oof_path}")
    if args.no_final:
        return
    started = time.perf_counter()
    print(f"final model on all {len(y)} pairs")
    train(encoder, frozen, np.arange(len(y)), y, epochs=args.epochs)
    record["final_training_seconds"] = round(time.perf_counter() - started)
    encoder.save(
        Path(args.out),
        version=VERSION,
        provenance={
            "trained_on": pairs.name,
            "training_sha256": pairs.sha256,
            "pairs": len(y),
            "duplicates": int(y.sum()),
            "epochs": args.epochs,
            "max_length": MAX_LENGTH,
            "lr_layers": LR_LAYERS,
            "lr_head": LR_HEAD,
            "batch": BATCH,
            "symmetric": "trained on both orders; scored as the mean of both orders",
            **record,
            "min_score": args.min_score,
        },
    )
    print(f"wrote {args.out}/{WEIGHTS} and {MANIFEST} (format {FORMAT_VERSION})")
    print(f"base weights sha256 {base_weights_sha256()}")


if __name__ == "__main__":
    main()
