"""The hit verifier: is the cached question the same question as the new one?

A logistic regression over ``features.FEATURE_NAMES`` (cosine, lexical overlap, numbers,
names, negation, question word, word order, how informative the unshared words are), plus
hard guards that veto a pair outright. Logistic regression, not boosted trees: with a few
thousand noisy training pairs it ranks as well in cross-validation (boosted trees, with or
without the embedding vectors as features, did not do better), it is a few numbers in JSON
(no pickle), and its score is a calibrated probability, so ``min_score`` reads as "serve
when at least this sure".

What it learns from Quora pairs, and its limit: at a given cosine, much shared wording is a
warning sign (Quora's hard negatives differ by one name or number), so it is strict on
long declarative paraphrases. Cross-validated on Quora it roughly doubles the hits cosine
alone gets at the same precision, but no setting of these features reaches 95% precision
with a useful hit rate there (about 87% at 29%); see benchmarks/cache_quality.py.
``version`` changes whenever the features or the training change.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tokenomy.cache.features import FEATURE_NAMES, GUARDS, pair_features, vetoed

ARTIFACT = "verifier_v1.json"


@dataclass(frozen=True)
class Verifier:
    """Scores a (query, cached text) pair in [0, 1]; a hit needs ``min_score``."""

    weights: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    min_score: float
    guards: tuple[str, ...] = ()
    version: str = "custom"
    feature_names: tuple[str, ...] = FEATURE_NAMES
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

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
        z = self.intercept
        for x, w, m, s in zip(features, self.weights, self.mean, self.scale, strict=True):
            z += w * (x - m) / s
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def with_options(
        self, *, min_score: float | None = None, guards: tuple[str, ...] | None = None
    ) -> Verifier:
        return Verifier(
            self.weights,
            self.intercept,
            self.mean,
            self.scale,
            self.min_score if min_score is None else min_score,
            self.guards if guards is None else guards,
            self.version,
            self.feature_names,
            self.provenance,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "logistic-regression",
            "version": self.version,
            "feature_names": list(self.feature_names),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "min_score": self.min_score,
            "guards": list(self.guards),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verifier:
        if data.get("kind") != "logistic-regression":
            raise ValueError(f"not a verifier artifact: kind={data.get('kind')!r}")
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            intercept=float(data["intercept"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            min_score=float(data["min_score"]),
            guards=tuple(data.get("guards", ())),
            version=str(data["version"]),
            feature_names=tuple(data["feature_names"]),
            provenance=dict(data.get("provenance", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> Verifier:
        return cls.from_json(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


@cache
def logistic_verifier() -> Verifier:
    """The shipped logistic verifier (trained on all of qqp_pairs_dev.jsonl; see its
    provenance)."""
    text = resources.files("tokenomy.cache").joinpath(ARTIFACT).read_text()
    return Verifier.from_json(json.loads(text))


# The cross-encoder (cross_encoder.py) is not the default: out of domain on GPTCache's
# paraphrases it serves 6% of queries (goal 80%), and it costs ~90 ms a lookup here.
DEFAULT_KIND = "logistic"


@cache
def default_verifier() -> Verifier:
    """The verifier the cache uses by default: ``$TOKENOMY_CACHE_VERIFIER`` (``logistic``
    or ``cross-encoder``) when set, else ``DEFAULT_KIND``."""
    kind = os.environ.get("TOKENOMY_CACHE_VERIFIER", "").strip() or DEFAULT_KIND
    if kind == "logistic":
        return logistic_verifier()
    if kind == "cross-encoder":
        from tokenomy.cache.cross_encoder import shipped_cross_encoder

        return shipped_cross_encoder()
    raise ValueError(f"TOKENOMY_CACHE_VERIFIER must be logistic or cross-encoder, not {kind!r}")
