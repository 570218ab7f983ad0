"""Measuring the cache's decisions on real pairs (``tokenomy cache eval``).

Two protocols, chosen by the file's shape:

- ``{origin, similar}`` (all duplicates; GPTCache's protocol): every origin goes into one
  cache, each ``similar`` is looked up; a hit is correct when it returns that query's own
  origin (compared as text: an origin that appears twice is one cache entry).
- ``{text_a, text_b, label}`` (decision protocol): for each pair a cache holding ``text_a``
  is queried with ``text_b`` (every pair gets its own scope in one cache, which also
  exercises scoping); a hit on a label-0 pair serves a wrong answer.

``hit_rate`` counts correct hits over duplicate pairs, ``false_hit_rate`` hits over
non-duplicates, ``precision`` correct hits over all hits. Embeddings are computed in
batches up front; the latency figures come from separate real ``lookup`` calls, embedding
included.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenomy.cache.semantic import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    Hit,
    Scope,
    SemanticCache,
    normalize_text,
)
from tokenomy.cache.verifier import Verifier

if TYPE_CHECKING:
    import numpy.typing as npt

    from tokenomy.cache.training import Rows

SWEEP = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99)
SCORE_SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
LATENCY_SAMPLES = 200


class PairsError(ValueError):
    """The pairs file cannot be evaluated (missing, not JSON, wrong shape)."""


@dataclass(frozen=True)
class Pairs:
    kind: str  # "gptcache" ({origin, similar}) or "decision" ({text_a, text_b, label})
    a: list[str]  # cached texts (origin / text_a)
    b: list[str]  # queries (similar / text_b)
    labels: list[int] | None  # None: every pair is a duplicate
    sha256: str
    name: str
    path: str = ""  # where it was read (cross-validation finds the other training files there)

    def __len__(self) -> int:
        return len(self.a)

    def head(self, limit: int) -> Pairs:
        labels = None if self.labels is None else self.labels[:limit]
        return Pairs(
            self.kind, self.a[:limit], self.b[:limit], labels, self.sha256, self.name, self.path
        )


def load_pairs(path: str | Path) -> Pairs:
    """Read a JSON list or JSONL file of pairs and tell which protocol it needs."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PairsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode()
        stripped = text.lstrip()
        if stripped.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PairsError(f"{path.name} is neither a JSON list nor JSON lines: {exc}") from None
    if not isinstance(rows, list) or not rows:
        raise PairsError(f"{path.name} holds no pairs")
    first = rows[0]
    if not isinstance(first, dict):
        raise PairsError(f"{path.name}: each pair must be an object")
    if {"origin", "similar"} <= first.keys():
        kind, fields = "gptcache", ("origin", "similar")
    elif {"text_a", "text_b", "label"} <= first.keys():
        kind, fields = "decision", ("text_a", "text_b")
    else:
        raise PairsError(
            f"{path.name}: pairs need {{origin, similar}} or {{text_a, text_b, label}}, "
            f"found {sorted(first.keys())}"
        )
    a: list[str] = []
    b: list[str] = []
    labels: list[int] = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise PairsError(f"{path.name}: pair {number} is not an object")
        x, y = row.get(fields[0]), row.get(fields[1])
        if not isinstance(x, str) or not isinstance(y, str) or not x.strip() or not y.strip():
            raise PairsError(f"{path.name}: pair {number} needs non-empty texts {fields}")
        a.append(x)
        b.append(y)
        if kind == "decision":
            label = row.get("label")
            if label not in (0, 1) or isinstance(label, bool):
                raise PairsError(f"{path.name}: pair {number} label must be 0 or 1")
            labels.append(int(label))
    return Pairs(
        kind,
        a,
        b,
        labels if kind == "decision" else None,
        hashlib.sha256(raw).hexdigest(),
        path.name,
        str(path),
    )


def encode(embedder: Any, texts: Sequence[str]) -> npt.NDArray[np.float32]:
    unique = list(dict.fromkeys(texts))
    vectors = np.asarray(embedder.encode(unique), dtype=np.float32)
    row = {t: i for i, t in enumerate(unique)}
    return vectors[[row[t] for t in texts]]


def trained_on(verifier: Verifier, pairs: Pairs) -> bool:
    """Whether ``verifier`` was trained on this very file (its figures are then in-sample)."""
    shas = {verifier.provenance.get("training_sha256")}
    shas |= {s.get("sha256") for s in verifier.provenance.get("sources", [])}
    return pairs.sha256 in shas


def _rates(
    decisions: Sequence[Hit | None], correct: Sequence[bool], labels: Sequence[int] | None
) -> dict[str, Any]:
    n = len(decisions)
    hits = sum(d is not None for d in decisions)
    good = sum(d is not None and ok for d, ok in zip(decisions, correct, strict=True))
    if labels is None:
        duplicates, wrong_pool = n, 0
    else:
        duplicates = sum(labels)
        wrong_pool = n - duplicates
    out: dict[str, Any] = {
        "hits": hits,
        "correct_hits": good,
        "wrong_hits": hits - good,
        "hit_rate": good / duplicates if duplicates else None,
        "false_hit_rate": (hits - good) / wrong_pool if wrong_pool else None,
        "precision": good / hits if hits else None,
    }
    if labels is None:
        out["any_hit_rate"] = hits / n if n else None
    return out


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def evaluate(
    pairs: Pairs,
    embedder: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    verifier: Verifier | None = None,
    cv: int | None = None,
    margin: float = DEFAULT_MARGIN,
    vectors: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
    latency_samples: int = LATENCY_SAMPLES,
    cv_sources: Sequence[Rows] | None = None,
) -> dict[str, Any]:
    """Run the protocol the file needs; one JSON-able report (see the module doc).

    ``cv``: each decision is made by a verifier of the same recipe trained without its
    fold's texts (``training.fold_verifiers``), on this file's other folds plus
    ``cv_sources`` (default: the other files ``verifier`` was trained on, found beside this
    one)."""
    va, vb = (
        vectors if vectors is not None else (encode(embedder, pairs.a), encode(embedder, pairs.b))
    )
    n = len(pairs)
    # (cache, scope) per query; with --cv each fold gets a cache with its own verifier
    caches: list[SemanticCache] = []
    where: list[tuple[int, Scope]] = []
    cv_training: list[str] | None = None
    fold_of = np.zeros(n, dtype=int)
    if cv is not None:
        if verifier is None:
            raise PairsError("--cv cross-validates the verifier; drop --no-verifier")
        from tokenomy.cache.training import fold_verifiers, training_sources

        missing: list[str] = []
        if cv_sources is None:
            cv_sources, missing = training_sources(verifier, pairs, embedder)
        cv_training = [f"{pairs.name} (other folds)", *(r.source for r in cv_sources)]
        cv_training += [f"{name} (not found beside {pairs.name}: left out)" for name in missing]
        for i, (held_out, fold_verifier) in enumerate(
            fold_verifiers(pairs, va, vb, verifier, cv, cv_sources)
        ):
            fold_of[held_out] = i
            caches.append(
                SemanticCache(embedder, threshold=threshold, verifier=fold_verifier, margin=margin)
            )
    else:
        caches.append(
            SemanticCache(embedder, threshold=threshold, verifier=verifier, margin=margin)
        )
    if pairs.kind == "gptcache":
        scope = Scope("eval", "eval")
        for cache in caches:  # with --cv, one cache per fold, each holding every origin
            for i in range(n):
                cache.insert(scope, pairs.a[i], b"", created_at=0.0, vector=va[i])
        where = [(int(fold_of[i]), scope) for i in range(n)]
    else:
        for i in range(n):
            scope = Scope(f"pair-{i}", "eval")
            caches[fold_of[i]].insert(scope, pairs.a[i], b"", created_at=0.0, vector=va[i])
            where.append((int(fold_of[i]), scope))
    probes = [
        caches[c].probe(scope, pairs.b[i], vector=vb[i]) for i, (c, scope) in enumerate(where)
    ]
    own = [normalize_text(t) for t in pairs.a]
    labels = pairs.labels

    def correct(i: int, hit: Hit | None) -> bool:
        if hit is None:
            return False
        if labels is not None:
            return labels[i] == 1
        return normalize_text(hit.matched_text) == own[i]

    min_score, margin = caches[0].min_score, caches[0].margin

    def decide(t: float, s: float) -> dict[str, Any]:
        decisions = [p.decide(t, s, margin) for p in probes]
        ok = [correct(i, d) for i, d in enumerate(decisions)]
        return _rates(decisions, ok, labels)

    report: dict[str, Any] = {
        "protocol": pairs.kind,
        "file": pairs.name,
        "n": n,
        "duplicates": n if labels is None else sum(labels),
        "non_duplicates": 0 if labels is None else n - sum(labels),
        "threshold": threshold,
        "verifier": None if verifier is None else verifier.version,
        "embedding_backend": getattr(embedder, "backend", "torch"),
        "min_score": None if verifier is None else verifier.min_score,
        "margin": margin,
        "guards": [] if verifier is None else list(verifier.guards),
        "cv": cv,
        "cv_training": cv_training,
        "in_sample": verifier is not None and cv is None and trained_on(verifier, pairs),
    }
    report.update(decide(threshold, min_score))
    report["sweep"] = [{"threshold": t, **decide(t, min_score)} for t in SWEEP]
    if verifier is not None:
        report["score_sweep"] = [{"min_score": s, **decide(threshold, s)} for s in SCORE_SWEEP]
    report.update(_latency(caches, where, pairs.b, latency_samples))
    report["entries"] = sum(len(c) for c in caches)
    return report


def _latency(
    caches: Sequence[SemanticCache],
    where: Sequence[tuple[int, Scope]],
    queries: Sequence[str],
    samples: int,
) -> dict[str, Any]:
    """Real lookups (embedding + search + verification) on evenly spaced queries."""
    if not queries or samples <= 0:
        return {"lookup_p50_ms": None, "lookup_p99_ms": None, "latency_samples": 0}
    picks = np.linspace(0, len(queries) - 1, min(samples, len(queries))).astype(int)
    cache, scope = caches[where[picks[0]][0]], where[picks[0]][1]
    cache.lookup(scope, queries[picks[0]] + " warm-up")
    timings = []
    for i in picks:
        c, scope = where[i]
        started = time.perf_counter()
        caches[c].lookup(scope, queries[i])
        timings.append((time.perf_counter() - started) * 1000.0)
    return {
        "lookup_p50_ms": _percentile(timings, 50),
        "lookup_p99_ms": _percentile(timings, 99),
        "latency_samples": len(timings),
    }
