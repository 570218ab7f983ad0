"""Training and cross-validating the hit verifier on labelled pairs.

``python -m tokenomy.cache.training --pairs qqp_pairs_dev.jsonl`` rebuilds the shipped
artifact (``verifier_v1.json``) from all pairs and records its cross-validated figures; the
cross-validated figures are the ones to quote, never the in-sample ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tokenomy.cache.features import FEATURE_NAMES, feature_matrix
from tokenomy.cache.verifier import ARTIFACT, Verifier

if TYPE_CHECKING:
    import numpy.typing as npt

VERSION = "1"
DEFAULT_MIN_SCORE = 0.8
DEFAULT_GUARDS: tuple[str, ...] = ("numbers", "negation")
REGULARIZATION = 1.0  # inverse strength (sklearn C); the figures are flat from 0.1 to 10
TRAIN_FLOOR = 0.7  # learn from pairs whose cosine could reach the cache threshold (0.8)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def features(
    cosines: Sequence[float], a: Sequence[str], b: Sequence[str]
) -> npt.NDArray[np.float64]:
    return np.asarray(feature_matrix(cosines, a, b), dtype=np.float64)


def fit(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int_],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    guards: tuple[str, ...] = DEFAULT_GUARDS,
    version: str = "custom",
    provenance: dict[str, object] | None = None,
) -> Verifier:
    """A verifier fitted on feature rows ``x`` with labels ``y`` (1 = same question).

    Only pairs with cosine >= ``TRAIN_FLOOR`` are learnt from: the verifier only ever sees
    pairs above the cache threshold, and far-apart pairs would teach it mostly "low cosine
    means different", which it never needs."""
    from sklearn.linear_model import LogisticRegression

    near = x[:, 0] >= TRAIN_FLOOR
    x, y = x[near], y[near]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=REGULARIZATION, max_iter=2000)
    model.fit((x - mean) / scale, y)
    return Verifier(
        weights=tuple(float(w) for w in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        min_score=min_score,
        guards=guards,
        version=version,
        provenance=dict(provenance or {}),
    )


def folds(labels: Sequence[int], k: int, seed: int = 0) -> list[npt.NDArray[np.int_]]:
    """Stratified fold indices: each pair lands in exactly one held-out fold."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(y)), y)]


def fold_verifiers(
    x: npt.NDArray[np.float64],
    labels: Sequence[int],
    k: int,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    guards: tuple[str, ...] = DEFAULT_GUARDS,
    seed: int = 0,
) -> list[tuple[npt.NDArray[np.int_], Verifier]]:
    """K verifiers, each with the fold it never saw (cross-validation)."""
    y = np.asarray(labels)
    out = []
    for i, held_out in enumerate(folds(labels, k, seed)):
        train = np.setdiff1d(np.arange(len(y)), held_out)
        verifier = fit(x[train], y[train], min_score=min_score, guards=guards, version=f"cv{i}")
        out.append((held_out, verifier))
    return out


def main() -> None:
    import argparse
    import json

    from tokenomy.cache.evaluate import evaluate, load_pairs
    from tokenomy.embeddings import shared_embedder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", required=True, help="labelled pairs (text_a, text_b, label)")
    parser.add_argument("--out", default=str(Path(__file__).with_name(ARTIFACT)))
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)
    if pairs.labels is None:
        raise SystemExit("training needs labelled pairs {text_a, text_b, label}")
    embedder = shared_embedder()
    va = np.asarray(embedder.encode(pairs.a), dtype=np.float32)
    vb = np.asarray(embedder.encode(pairs.b), dtype=np.float32)
    cosines = (va * vb).sum(axis=1).tolist()
    x = features(cosines, pairs.a, pairs.b)
    y = np.asarray(pairs.labels)
    provenance: dict[str, object] = {
        "trained_on": Path(args.pairs).name,
        "training_sha256": pairs.sha256,
        "pairs": len(y),
        "duplicates": int(y.sum()),
        "embedding_model": embedder.model,
        "regularization_C": REGULARIZATION,
        "train_floor": TRAIN_FLOOR,
    }
    verifier = fit(x, y, version=VERSION, provenance=provenance)
    report = evaluate(pairs, embedder, verifier=verifier, cv=5, vectors=(va, vb))
    verifier.provenance["cross_validated_5fold"] = {
        k: report[k] for k in ("hit_rate", "false_hit_rate", "precision", "threshold")
    }
    verifier.save(args.out)
    print(json.dumps(verifier.to_json()["provenance"], indent=1))
    for name, weight in zip(FEATURE_NAMES, verifier.weights, strict=True):
        print(f"{name:24s} {weight:+.3f}")


if __name__ == "__main__":
    main()
