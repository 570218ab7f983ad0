"""Training and cross-validating the hit verifier on both kinds of pair files.

    python -m tokenomy.cache.training --pairs qqp_pairs_dev.jsonl --pairs paraphrase_pairs.json

rebuilds the shipped artifact (``verifier_v2.json``) from every file given and records its
cross-validated figures; the cross-validated figures are the ones to quote, never the
in-sample ones.

Training rows, by the file's shape (``rows_from``):

- ``{text_a, text_b, label}``: each pair as labelled (the query is text_b, the cached text
  text_a, as in the decision protocol).
- ``{origin, similar}``: each similar against its own origin (a duplicate) and against the
  nearest *other* origin by cosine (a hard negative: what the cache would serve if the
  question's own origin were not cached).

Cross-validation (``fold_verifiers``) is grouped: the evaluated file's decisions are split
into K folds with pairs sharing a text in the same fold (``groups_of``), and the verifier
that scores a fold is trained on every row, from every training file, that touches none
of that fold's texts (query, own origin, and the entry the cache would serve). So no
scored pair ever had a text in its training data.

``min_score`` is chosen by one rule on the pooled out-of-fold decisions of every training
file (``choose_min_score``): the lowest score at which the precision of hits, averaged over
the files (each file counts once, whatever its size), reaches ``TARGET_PRECISION``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenomy.cache.features import feature_matrix
from tokenomy.cache.semantic import normalize_text
from tokenomy.cache.verifier import ARTIFACT, LOGISTIC, TREES, Verifier

if TYPE_CHECKING:
    import numpy.typing as npt

    from tokenomy.cache.evaluate import Pairs

VERSION = "2"
SEED = 0
FOLDS = 5
DEFAULT_GUARDS: tuple[str, ...] = ("numbers", "negation")
REGULARIZATION = 1.0  # logistic: inverse strength (sklearn C); flat from 0.1 to 10
TRAIN_FLOOR = 0.7  # learn from pairs whose cosine could reach the cache threshold (0.7)
TREE_PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}
TARGET_PRECISION = 0.85  # on each training file's out-of-fold decisions
SCORE_GRID = tuple(round(0.05 * i, 2) for i in range(2, 20))  # 0.10 .. 0.95


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def features(
    cosines: Sequence[float], a: Sequence[str], b: Sequence[str]
) -> npt.NDArray[np.float64]:
    return np.asarray(feature_matrix(cosines, a, b), dtype=np.float64).reshape(len(a), -1)


@dataclass
class Rows:
    """Labelled (query, cached) training pairs derived from one file, with features."""

    source: str
    query: list[str]
    cached: list[str]
    cosine: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int_]
    x: npt.NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        self.x = features(self.cosine.tolist(), self.query, self.cached)

    def __len__(self) -> int:
        return len(self.query)

    def without(self, texts: set[str]) -> npt.NDArray[np.bool_]:
        """Rows that touch none of ``texts`` (normalized)."""
        return np.asarray(
            [
                normalize_text(q) not in texts and normalize_text(c) not in texts
                for q, c in zip(self.query, self.cached, strict=True)
            ],
            dtype=np.bool_,
        )


def _origins(
    pairs: Pairs, va: npt.NDArray[np.float32]
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int_]]:
    """The distinct origins (one cache entry per normalized text), their vectors, and each
    pair's own origin among them."""
    first: dict[str, int] = {}
    for i, text in enumerate(pairs.a):
        first.setdefault(normalize_text(text), i)
    keys = list(first)
    row = {k: j for j, k in enumerate(keys)}
    own = np.asarray([row[normalize_text(t)] for t in pairs.a], dtype=np.int_)
    return [pairs.a[first[k]] for k in keys], va[[first[k] for k in keys]], own


def nearest_origins(
    pairs: Pairs, va: npt.NDArray[np.float32], vb: npt.NDArray[np.float32]
) -> tuple[list[str], npt.NDArray[np.int_], npt.NDArray[np.int_], npt.NDArray[np.float32]]:
    """For a GPTCache file: distinct origins, each query's own origin, its nearest other
    origin, and the query-by-origin cosine matrix."""
    texts, vectors, own = _origins(pairs, va)
    sims = vb @ vectors.T
    masked = sims.copy()
    masked[np.arange(len(own)), own] = -np.inf
    other = masked.argmax(axis=1)  # meaningless with one distinct origin (callers check)
    return texts, own, other, sims


def rows_from(pairs: Pairs, va: npt.NDArray[np.float32], vb: npt.NDArray[np.float32]) -> Rows:
    """Training rows of one file (see the module doc)."""
    if pairs.labels is not None:
        cosine = (va * vb).sum(axis=1).astype(np.float64)
        return Rows(pairs.name, list(pairs.b), list(pairs.a), cosine, np.asarray(pairs.labels))
    texts, own, other, sims = nearest_origins(pairs, va, vb)
    n = np.arange(len(own))
    if len(texts) < 2:  # one distinct origin: no other to be wrong about
        cosine = sims[n, own].astype(np.float64)
        return Rows(pairs.name, list(pairs.b), [texts[0]] * len(own), cosine, np.ones_like(own))
    cosine = np.concatenate([sims[n, own], sims[n, other]]).astype(np.float64)
    labels = np.concatenate([np.ones(len(own)), np.zeros(len(own))]).astype(np.int_)
    cached = [texts[j] for j in own] + [texts[j] for j in other]
    return Rows(pairs.name, list(pairs.b) * 2, cached, cosine, labels)


def groups_of(a: Sequence[str], b: Sequence[str]) -> npt.NDArray[np.int_]:
    """Connected components of the question graph: pairs sharing a text share a group."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a, b, strict=True):
        rx, ry = find(normalize_text(x)), find(normalize_text(y))
        if rx != ry:
            parent[rx] = ry
    roots: dict[str, int] = {}
    return np.asarray(
        [roots.setdefault(find(normalize_text(x)), len(roots)) for x in a], dtype=np.int_
    )


def grouped_folds(
    labels: Sequence[int] | npt.NDArray[np.int_],
    groups: npt.NDArray[np.int_],
    k: int,
    seed: int = SEED,
) -> list[npt.NDArray[np.int_]]:
    """Held-out index sets, stratified by label, never splitting a group."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(labels)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(y)), y, groups)]


def held_out_texts(
    pairs: Pairs,
    va: npt.NDArray[np.float32],
    vb: npt.NDArray[np.float32],
    folds: Sequence[npt.NDArray[np.int_]],
) -> list[set[str]]:
    """Per fold, the normalized texts its decisions involve: the pair's two texts, and for
    a GPTCache file also the origin the cache would serve (the query's nearest)."""
    nearest: npt.NDArray[np.int_] | None = None
    texts: list[str] = []
    if pairs.labels is None:
        texts, _, _, sims = nearest_origins(pairs, va, vb)
        nearest = sims.argmax(axis=1)
    out = []
    for fold in folds:
        held = {normalize_text(pairs.a[i]) for i in fold} | {
            normalize_text(pairs.b[i]) for i in fold
        }
        if nearest is not None:
            held |= {normalize_text(texts[nearest[i]]) for i in fold}
        out.append(held)
    return out


def fit(
    rows: Sequence[Rows],
    *,
    kind: str = TREES,
    min_score: float = 0.5,
    guards: tuple[str, ...] = DEFAULT_GUARDS,
    version: str = "custom",
    provenance: dict[str, object] | None = None,
    masks: Sequence[npt.NDArray[np.bool_]] | None = None,
) -> Verifier:
    """A verifier fitted on ``rows`` (where ``masks`` keeps them), 1 = same question.

    Only pairs with cosine >= ``TRAIN_FLOOR`` are learnt from: the verifier only ever sees
    pairs above the cache threshold, and far-apart pairs would teach it mostly "low cosine
    means different", which it never needs."""
    keep = [
        (r.cosine >= TRAIN_FLOOR) & (np.ones(len(r), np.bool_) if masks is None else masks[i])
        for i, r in enumerate(rows)
    ]
    x = np.vstack([r.x[k] for r, k in zip(rows, keep, strict=True)])
    y = np.concatenate([r.labels[k] for r, k in zip(rows, keep, strict=True)])
    common: dict[str, Any] = {
        "min_score": min_score,
        "guards": guards,
        "version": version,
        "provenance": dict(provenance or {}),
    }
    if kind == TREES:
        import lightgbm

        model = lightgbm.LGBMClassifier(**TREE_PARAMS, random_state=SEED, n_jobs=1, verbose=-1)
        model.fit(x, y)
        from tokenomy.routing.learned.trees import flatten

        empty: tuple[float, ...] = ()
        return Verifier(empty, 0.0, empty, empty, trees=flatten(model.booster_), **common)
    if kind != LOGISTIC:
        raise ValueError(f"unknown verifier kind {kind!r}")
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    logistic = LogisticRegression(C=REGULARIZATION, max_iter=3000)
    logistic.fit((x - mean) / scale, y)
    return Verifier(
        weights=tuple(float(w) for w in logistic.coef_[0]),
        intercept=float(logistic.intercept_[0]),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        **common,
    )


def decision_folds(pairs: Pairs, k: int) -> list[npt.NDArray[np.int_]]:
    """Grouped, stratified folds of a file's decisions (GPTCache files: one group per
    distinct origin, so duplicated origins stay together)."""
    labels = pairs.labels if pairs.labels is not None else [1] * len(pairs)
    return grouped_folds(labels, groups_of(pairs.a, pairs.b), k)


def fold_verifiers(
    pairs: Pairs,
    va: npt.NDArray[np.float32],
    vb: npt.NDArray[np.float32],
    like: Verifier,
    k: int,
    others: Sequence[Rows] = (),
) -> list[tuple[npt.NDArray[np.int_], Verifier]]:
    """K verifiers of ``like``'s kind, guards and min_score, each with the decisions of
    ``pairs`` it never saw: trained on ``pairs``'s rows and ``others``'s that touch none of
    the held-out fold's texts."""
    rows = [rows_from(pairs, va, vb), *others]
    folds = decision_folds(pairs, k)
    out = []
    for i, (fold, held) in enumerate(zip(folds, held_out_texts(pairs, va, vb, folds), strict=True)):
        verifier = fit(
            rows,
            kind=like.kind,
            min_score=like.min_score,
            guards=like.guards,
            version=f"{like.version}-cv{i}",
            masks=[r.without(held) for r in rows],
        )
        out.append((fold, verifier))
    return out


def training_sources(
    verifier: Verifier, pairs: Pairs, embedder: Any
) -> tuple[list[Rows], list[str]]:
    """The rows of the files ``verifier`` was trained on, other than ``pairs`` itself, found
    beside ``pairs``'s file by name and checked by sha256; and the names not found."""
    from tokenomy.cache.evaluate import encode, load_pairs

    rows, missing = [], []
    for source in verifier.provenance.get("sources", []):
        if source.get("sha256") == pairs.sha256:
            continue
        path = Path(pairs.path).parent / str(source.get("file"))
        if not path.is_file() or file_sha256(path) != source.get("sha256"):
            missing.append(str(source.get("file")))
            continue
        other = load_pairs(path)
        rows.append(rows_from(other, encode(embedder, other.a), encode(embedder, other.b)))
    return rows, missing


def choose_min_score(sweeps: Sequence[Sequence[dict[str, Any]]]) -> float:
    """The lowest score whose precision of hits reaches ``TARGET_PRECISION`` on every
    file's out-of-fold sweep (rows of ``{"min_score", "precision"}``): the file with the
    hardest near-misses decides, so a wrong answer stays rare on that kind of traffic too.
    The score whose worst file is most precise when none reaches it."""
    by_score: dict[float, list[float]] = {}
    for sweep in sweeps:
        for row in sweep:
            precision = row["precision"]
            by_score.setdefault(float(row["min_score"]), []).append(
                0.0 if precision is None else float(precision)
            )
    worst = {s: min(p) for s, p in by_score.items() if len(p) == len(sweeps)}
    reaching = [s for s, p in worst.items() if p >= TARGET_PRECISION]
    return min(reaching) if reaching else max(worst, key=worst.__getitem__)


def main() -> None:
    import argparse
    import json

    from tokenomy.cache.evaluate import encode, evaluate, load_pairs
    from tokenomy.embeddings import shared_embedder

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", action="append", required=True, help="a pair file (repeat)")
    parser.add_argument("--kind", choices=(TREES, LOGISTIC), default=TREES)
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--out", default=str(Path(__file__).with_name(ARTIFACT)))
    args = parser.parse_args()
    embedder = shared_embedder(backend="onnx")
    files = [load_pairs(p) for p in args.pairs]
    vectors = [(encode(embedder, f.a), encode(embedder, f.b)) for f in files]
    rows = [rows_from(f, va, vb) for f, (va, vb) in zip(files, vectors, strict=True)]
    provenance: dict[str, object] = {
        "sources": [
            {
                "file": f.name,
                "sha256": f.sha256,
                "protocol": f.kind,
                "pairs": len(f),
                "training_rows": len(r),
                "duplicates_in_rows": int(r.labels.sum()),
            }
            for f, r in zip(files, rows, strict=True)
        ],
        "embedding_model": embedder.model,
        "kind": args.kind,
        "train_floor": TRAIN_FLOOR,
        "params": TREE_PARAMS if args.kind == TREES else {"C": REGULARIZATION},
        "min_score_rule": f"lowest score whose out-of-fold precision reaches "
        f"{TARGET_PRECISION} on every file",
    }
    draft = fit(rows, kind=args.kind, version=VERSION, provenance=provenance)
    provenance = draft.provenance  # fit keeps a copy: the figures below go into the artifact
    reports = []
    for f, (va, vb) in zip(files, vectors, strict=True):
        others = [r for r in rows if r.source != f.name]
        report = evaluate(
            f, embedder, verifier=draft, cv=args.folds, vectors=(va, vb), cv_sources=others
        )
        reports.append(report)
    min_score = choose_min_score([r["score_sweep"] for r in reports])
    figures = {}
    for f, report in zip(files, reports, strict=True):
        row = next(r for r in report["score_sweep"] if r["min_score"] == min_score)
        figures[f.name] = {
            key: row[key] for key in ("hit_rate", "false_hit_rate", "precision", "hits")
        } | {"threshold": report["threshold"], "folds": args.folds}
    provenance["cross_validated"] = figures
    provenance["cross_validated_sweep"] = {
        f.name: [
            [row["min_score"], row["hit_rate"], row["precision"]] for row in report["score_sweep"]
        ]
        for f, report in zip(files, reports, strict=True)
    }
    verifier = draft.with_options(min_score=min_score)
    verifier.save(args.out)
    print(json.dumps(provenance, indent=1))
    print(f"min_score {min_score}; out-of-fold sweep (hit rate / precision):")
    for s, *cells in zip(
        *[[row["min_score"] for row in reports[0]["score_sweep"]]]
        + [[_pct(row) for row in report["score_sweep"]] for report in reports],
        strict=True,
    ):
        print(f"  {s:5.2f}  " + "  ".join(cells))


def _pct(row: dict[str, Any]) -> str:
    precision = "-" if row["precision"] is None else f"{100 * row['precision']:.1f}%"
    return f"{100 * (row['hit_rate'] or 0.0):5.1f}% / {precision:>6s}"


if __name__ == "__main__":
    main()
