"""The hit verifier: is the cached question the same question as the new one?

A model over ``features.FEATURE_NAMES`` (cosine, lexical overlap, numbers, names, negation,
question word, word order, how informative the unshared words are), plus hard guards that
veto a pair outright. Two model kinds share this class:

- ``gradient-boosted-trees`` (the default, ``verifier_v2.json``): LightGBM trees fitted on
  Quora pairs *and* pairs derived from GPTCache's paraphrases, shipped as plain node arrays
  in JSON and walked with numpy (``tokenomy.routing.learned.trees``): no LightGBM, no
  pickle at run time.
- ``logistic-regression`` (``verifier_v1.json``, trained on Quora pairs only): a few
  numbers in JSON.

Both scores are probabilities; ``min_score`` reads as "serve when at least this sure" and
is chosen at training time from cross-validated scores (see ``training``). What neither
reaches: 95% precision on Quora's hard negatives at a useful hit rate (about 87% at 25%,
cross-validated; most of the top-scored "wrong" pairs there are label noise). See
benchmarks/cache_quality.py. ``version`` changes whenever the features or the training
change.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tokenomy.cache.features import FEATURE_NAMES, GUARDS, pair_features, vetoed

ARTIFACT = "verifier_v2.json"  # the default (trees, mixed data)
LOGISTIC_ARTIFACT = "verifier_v1.json"  # logistic regression, Quora only
LOGISTIC = "logistic-regression"
TREES = "gradient-boosted-trees"
TREE_ARRAYS = ("roots", "feature", "threshold", "default_left", "left", "right", "leaf_value")


@dataclass(frozen=True)
class Verifier:
    """Scores a (query, cached text) pair in [0, 1]; a hit needs ``min_score``.

    ``trees`` (node arrays, see ``tokenomy.routing.learned.trees``) makes it a boosted-trees
    verifier; otherwise ``weights``/``intercept`` over standardised features (``mean``,
    ``scale``) make it a logistic regression."""

    weights: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    min_score: float
    guards: tuple[str, ...] = ()
    version: str = "custom"
    feature_names: tuple[str, ...] = FEATURE_NAMES
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)
    trees: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return LOGISTIC if self.trees is None else TREES

    def __post_init__(self) -> None:
        if self.feature_names != FEATURE_NAMES:
            raise ValueError(
                f"verifier {self.version} was trained on other features; retrain it "
                "(python -m tokenomy.cache.training)"
            )
        unknown = set(self.guards) - GUARDS.keys()
        if unknown:
            raise ValueError(f"unknown guards: {sorted(unknown)}")

    def score(self, query: str, cached: str, cosine: float) -> float:
        """Probability-like score that both texts ask the same; 0.0 when a guard vetoes."""
        if self.guards and vetoed(self.guards, query, cached):
            return 0.0
        return self.probability(pair_features(cosine, query, cached))

    def probability(self, features: list[float]) -> float:
        if self.trees is not None:
            import numpy as np

            from tokenomy.routing.learned.trees import predict

            raw = float(predict(self.trees, np.asarray([features], dtype=np.float64))[0])
            return 1.0 / (1.0 + math.exp(-max(min(raw, 40.0), -40.0)))
        z = self.intercept
        for x, w, m, s in zip(features, self.weights, self.mean, self.scale, strict=True):
            z += w * (x - m) / s
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def with_options(
        self, *, min_score: float | None = None, guards: tuple[str, ...] | None = None
    ) -> Verifier:
        return replace(
            self,
            min_score=self.min_score if min_score is None else min_score,
            guards=self.guards if guards is None else guards,
        )

    def to_json(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "kind": self.kind,
            "version": self.version,
            "feature_names": list(self.feature_names),
        }
        if self.trees is not None:
            model: dict[str, Any] = {
                "trees": {name: self.trees[name].tolist() for name in TREE_ARRAYS}
            }
        else:
            model = {
                "weights": list(self.weights),
                "intercept": self.intercept,
                "mean": list(self.mean),
                "scale": list(self.scale),
            }
        return {
            **head,
            "min_score": self.min_score,
            "guards": list(self.guards),
            "provenance": self.provenance,
            **model,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verifier:
        kind = data.get("kind")
        if kind not in (LOGISTIC, TREES):
            raise ValueError(f"not a verifier artifact: kind={kind!r}")
        trees: dict[str, Any] | None = None
        if kind == TREES:
            import numpy as np

            dtypes = {"threshold": np.float64, "leaf_value": np.float64, "default_left": np.bool_}
            trees = {
                name: np.asarray(data["trees"][name], dtype=dtypes.get(name, np.int32))
                for name in TREE_ARRAYS
            }
        return cls(
            weights=tuple(float(w) for w in data.get("weights", ())),
            intercept=float(data.get("intercept", 0.0)),
            mean=tuple(float(v) for v in data.get("mean", ())),
            scale=tuple(float(v) for v in data.get("scale", ())),
            min_score=float(data["min_score"]),
            guards=tuple(data.get("guards", ())),
            version=str(data["version"]),
            feature_names=tuple(data["feature_names"]),
            provenance=dict(data.get("provenance", {})),
            trees=trees,
        )

    @classmethod
    def load(cls, path: str | Path) -> Verifier:
        return cls.from_json(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def _shipped(name: str) -> Verifier:
    text = resources.files("tokenomy.cache").joinpath(name).read_text()
    return Verifier.from_json(json.loads(text))


@cache
def trees_verifier() -> Verifier:
    """The shipped default: boosted trees trained on Quora pairs and GPTCache paraphrases
    (see its provenance for the files, the recipe and the cross-validated figures)."""
    return _shipped(ARTIFACT)


@cache
def logistic_verifier() -> Verifier:
    """The first verifier: logistic regression trained on Quora pairs only (kept to compare)."""
    return _shipped(LOGISTIC_ARTIFACT)


# The cross-encoder (cross_encoder.py) is not the default: out of domain on GPTCache's
# paraphrases it serves 6% of queries (goal 80%), and it costs ~90 ms a lookup here.
KINDS = ("trees", "logistic", "cross-encoder")
DEFAULT_KIND = "trees"


def verifier_of(kind: str) -> Verifier:
    """A shipped verifier by kind: ``trees`` (the default), ``logistic``, ``cross-encoder``."""
    if kind == "trees":
        return trees_verifier()
    if kind == "logistic":
        return logistic_verifier()
    if kind == "cross-encoder":
        from tokenomy.cache.cross_encoder import shipped_cross_encoder

        return shipped_cross_encoder()
    raise ValueError(f"a verifier is one of {', '.join(KINDS)}, not {kind!r}")


@cache
def default_verifier() -> Verifier:
    """The verifier the cache uses by default: ``$TOKENOMY_CACHE_VERIFIER`` (one of
    ``KINDS``) when set, else ``DEFAULT_KIND``."""
    kind = os.environ.get("TOKENOMY_CACHE_VERIFIER", "").strip() or DEFAULT_KIND
    try:
        return verifier_of(kind)
    except ValueError:
        raise ValueError(
            f"TOKENOMY_CACHE_VERIFIER must be one of {', '.join(KINDS)}, not {kind!r}"
        ) from None
