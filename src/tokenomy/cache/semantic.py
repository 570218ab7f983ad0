"""The semantic cache engine: scoped vector search, then verification of the best candidates.

A hit must never cross a scope (tenant, model, system prompt/context): every scope has its
own index, and the scope stored on the matched entry is checked again before a hit is
returned. Within a scope, cosine similarity only proposes candidates; guards (numbers,
negation) veto and the verifier decides, because cosine alone serves answers to different
questions ("Jordan 3 shoes" vs "Jordan 6 shoes" are 0.98 apart).

Small scopes are searched exactly (a matrix product: no recall loss, sub-millisecond);
a scope that grows past ``ANN_MIN_ENTRIES`` moves to a usearch HNSW index (see
benchmarks/cache_lookup.py for the comparison that chose it).

Persistence: a ``CacheStore`` holds rows of (key, scope, text, vector, value, created_at);
the in-memory index is rebuilt from them at start, so the index itself is never stored.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tokenomy.cache.verifier import Verifier

if TYPE_CHECKING:
    import numpy.typing as npt

    Vector = npt.NDArray[np.float32]

DEFAULT_THRESHOLD = 0.7  # cosine a candidate needs before the verifier looks at it
DEFAULT_MARGIN = 0.02  # a runner-up this close makes the nearest entry ambiguous: no hit
ANN_MIN_ENTRIES = 2048  # below this, exact search is as fast as HNSW and loses nothing
CANDIDATES = 4  # nearest entries the verifier looks at (the nearest is not always the one)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where an entry may be served: only to the same tenant, model and context."""

    tenant: str
    model: str
    context: str = ""  # hash of the system prompt / context (``Scope.of`` makes it)

    @classmethod
    def of(cls, tenant: str, model: str, system_prompt: str = "") -> Scope:
        digest = hashlib.sha256(system_prompt.encode()).hexdigest()[:32] if system_prompt else ""
        return cls(tenant, model, digest)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One cached answer as a store keeps it; the index is rebuilt from these rows."""

    key: int
    scope: Scope
    text: str
    vector: bytes  # float32, unit length, ``dimensions`` values
    value: bytes
    created_at: float  # unix seconds


class CacheStore(Protocol):
    """Persistence the gateway implements (SQLite in-process, Redis for replicas).

    ``load`` returns every live row at start; ``put`` and ``delete`` follow each change.
    Keys are unique per store; ``next_key`` lets replicas avoid clashes."""

    def load(self, keys: Iterable[int] | None = None) -> Iterable[StoredEntry]: ...

    def keys(self) -> Iterable[int]: ...

    def put(self, entry: StoredEntry) -> None: ...

    def delete(self, keys: Sequence[int]) -> None: ...


class MemoryStore:
    """A reference ``CacheStore`` in a dict (tests, and the shape a real store follows)."""

    def __init__(self) -> None:
        self.rows: dict[int, StoredEntry] = {}

    def load(self) -> Iterable[StoredEntry]:
        return list(self.rows.values())

    def put(self, entry: StoredEntry) -> None:
        self.rows[entry.key] = entry

    def delete(self, keys: Sequence[int]) -> None:
        for key in keys:
            self.rows.pop(key, None)


@dataclass(frozen=True, slots=True)
class Hit:
    value: bytes
    similarity: float  # cosine between the query and the matched text
    score: float  # verifier probability that both ask the same (1.0 for an exact text match)
    matched_text: str
    key: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Probe:
    """What a lookup found before deciding: the nearest entry, scored, and how close the
    next one is."""

    nearest: Hit | None
    runner_up: float | None = None  # cosine of the second-nearest entry

    def decide(self, threshold: float, min_score: float, margin: float) -> Hit | None:
        """Serve the nearest entry when it is close enough, verified, and unambiguous: when
        another cached text is within ``margin`` of it, the cache holds several similar
        questions and guessing between them serves the wrong one."""
        hit = self.nearest
        if hit is None or hit.similarity < threshold or hit.score < min_score:
            return None
        if self.runner_up is not None and hit.similarity - self.runner_up < margin:
            return None
        return hit


class Encoder(Protocol):
    """What the cache needs of ``tokenomy.embeddings.Embedder``."""

    dimensions: int

    def encode_one(self, text: str) -> Vector: ...


def normalize_text(text: str) -> str:
    """Exact-match key inside a scope: case and whitespace do not make a new question."""
    return " ".join(text.lower().split())


@dataclass(slots=True)
class _Entry:
    key: int
    scope: Scope
    text: str
    value: bytes
    created_at: float  # the vector lives only in the scope's index


class _ScopeIndex:
    """The entries of one scope: exact matrix search, HNSW once large."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.keys: list[int] = []
        self.rows: dict[int, int] = {}  # key -> row in ``matrix``
        self.matrix = np.zeros((1, dimensions), dtype=np.float32)  # doubles as it fills
        self.hnsw: Any = None

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: int, vector: Vector) -> None:
        if len(self.keys) == len(self.matrix):
            grown = np.zeros((len(self.matrix) * 2, self.dimensions), dtype=np.float32)
            grown[: len(self.keys)] = self.matrix[: len(self.keys)]
            self.matrix = grown
        self.rows[key] = len(self.keys)
        self.matrix[len(self.keys)] = vector
        self.keys.append(key)
        if self.hnsw is not None:
            self.hnsw.add(key, vector)
        elif len(self.keys) >= ANN_MIN_ENTRIES:
            self._build_hnsw()

    def remove(self, key: int) -> None:
        row = self.rows.pop(key)
        last = len(self.keys) - 1
        if row != last:  # move the last row into the hole
            moved = self.keys[last]
            self.keys[row] = moved
            self.matrix[row] = self.matrix[last]
            self.rows[moved] = row
        self.keys.pop()
        if self.hnsw is not None:
            self.hnsw.remove(key)
            if len(self.keys) < ANN_MIN_ENTRIES // 2:
                self.hnsw = None

    def search(self, vector: Vector, count: int) -> list[tuple[int, float]]:
        """The ``count`` nearest keys with their cosine, best first."""
        if not self.keys:
            return []
        if self.hnsw is not None:
            found = self.hnsw.search(vector, count)
            return [
                (int(k), 1.0 - float(d)) for k, d in zip(found.keys, found.distances, strict=True)
            ]
        sims = self.matrix[: len(self.keys)] @ vector
        if len(sims) <= count:
            order = np.argsort(-sims)
        else:
            top = np.argpartition(-sims, count)[:count]
            order = top[np.argsort(-sims[top])]
        return [(self.keys[i], float(sims[i])) for i in order]

    def _build_hnsw(self) -> None:
        from usearch.index import Index

        index = Index(ndim=self.dimensions, metric="cos", dtype="f32", connectivity=16)
        index.add(np.asarray(self.keys, dtype=np.uint64), self.matrix[: len(self.keys)])
        self.hnsw = index


class SemanticCache:
    """Answers by meaning within a scope, verified. Thread-safe.

    ``threshold`` is the cosine a candidate needs before the verifier looks at it; the
    verifier (``None``: cosine alone, not safe) then needs ``verifier.min_score``, and no
    other entry may be within ``margin`` of the nearest."""

    def __init__(
        self,
        embedder: Encoder,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        verifier: Verifier | None = None,
        store: CacheStore | None = None,
        margin: float = DEFAULT_MARGIN,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.verifier = verifier
        self.store = store
        self.margin = margin
        self.max_age_s = max_age_s
        self.clock = clock
        self.dimensions = int(embedder.dimensions)
        self._lock = threading.RLock()
        self._entries: dict[int, _Entry] = {}
        self._indexes: dict[Scope, _ScopeIndex] = {}
        self._exact: dict[tuple[Scope, str], int] = {}
        if store is not None:
            self._rebuild(store.load())

    def __len__(self) -> int:
        return len(self._entries)

    def scopes(self) -> list[Scope]:
        with self._lock:
            return list(self._indexes)

    def insert(
        self,
        scope: Scope,
        text: str,
        value: bytes,
        *,
        created_at: float | None = None,
        vector: Vector | None = None,
    ) -> int:
        """Cache ``value`` as the answer to ``text`` in ``scope``; the same text replaces.
        ``vector`` skips the embedding (batch loads); it must be the embedder's."""
        vec = self._vector(text, vector)
        when = self.clock() if created_at is None else created_at
        with self._lock:
            previous = self._exact.get((scope, normalize_text(text)))
            if previous is not None:
                self._remove(previous)
            key = self._new_key()
            self._add(_Entry(key, scope, text, value, when), vec)
        if self.store is not None:
            if previous is not None:
                self.store.delete([previous])
            self.store.put(StoredEntry(key, scope, text, vec.tobytes(), value, when))
        return key

    def lookup(
        self,
        scope: Scope,
        text: str,
        *,
        threshold: float | None = None,
        vector: Vector | None = None,
    ) -> Hit | None:
        """The verified answer to ``text`` in ``scope``, or None. ``threshold`` overrides
        the cache's cosine threshold (per route)."""
        floor = self.threshold if threshold is None else threshold
        return self.probe(scope, text, vector=vector).decide(floor, self.min_score, self.margin)

    @property
    def min_score(self) -> float:
        return -math.inf if self.verifier is None else self.verifier.min_score

    def probe(self, scope: Scope, text: str, *, vector: Vector | None = None) -> Probe:
        """The nearest entry of ``scope`` to ``text`` (scored by the verifier) and the
        runner-up's cosine; ``Probe.decide`` turns it into a hit or a miss. Only the nearest
        can be served: letting the verifier pick among neighbours serves near-duplicates
        of the right entry (measured: precision falls from 95% to 77% on paraphrases)."""
        oldest = None if self.max_age_s is None else self.clock() - self.max_age_s
        with self._lock:
            key = self._exact.get((scope, normalize_text(text)))
            if key is not None:
                entry = self._entries[key]
                if entry.scope == scope and (oldest is None or entry.created_at >= oldest):
                    return Probe(Hit(entry.value, 1.0, 1.0, entry.text, key, entry.created_at))
            if scope not in self._indexes:
                return Probe(None)
        vec = self._vector(text, vector)
        found: list[tuple[_Entry, float]] = []
        with self._lock:
            index = self._indexes.get(scope)
            for near, similarity in [] if index is None else index.search(vec, CANDIDATES):
                match = self._entries.get(near)
                if match is None or match.scope != scope:  # never serve across scopes
                    continue
                if oldest is not None and match.created_at < oldest:
                    continue
                found.append((match, similarity))
        if not found:
            return Probe(None)
        entry, similarity = found[0]
        score = similarity
        if self.verifier is not None:
            score = self.verifier.score(text, entry.text, similarity)
        runner_up = found[1][1] if len(found) > 1 else None
        hit = Hit(entry.value, similarity, score, entry.text, entry.key, entry.created_at)
        return Probe(hit, runner_up)

    def purge(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        scope: Scope | None = None,
        older_than: float | None = None,
    ) -> int:
        """Remove entries matching every given filter (tenant, model, exact scope, created
        before ``older_than`` unix seconds); no filter removes everything. Returns the count."""
        with self._lock:
            doomed = [
                e.key
                for e in self._entries.values()
                if (tenant is None or e.scope.tenant == tenant)
                and (model is None or e.scope.model == model)
                and (scope is None or e.scope == scope)
                and (older_than is None or e.created_at < older_than)
            ]
            for key in doomed:
                self._remove(key)
        if self.store is not None and doomed:
            self.store.delete(doomed)
        return len(doomed)

    def _vector(self, text: str, vector: Vector | None) -> Vector:
        vec = self.embedder.encode_one(text) if vector is None else vector
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dimensions:
            raise ValueError(f"vector has {vec.shape[0]} dimensions, expected {self.dimensions}")
        return vec

    def _new_key(self) -> int:
        """A random 62-bit key: replicas sharing one store never pick the same one."""
        while True:
            key = secrets.randbits(62) or 1
            if key not in self._entries:
                return key

    def _add(self, entry: _Entry, vector: Vector) -> None:
        self._entries[entry.key] = entry
        self._exact[(entry.scope, normalize_text(entry.text))] = entry.key
        index = self._indexes.get(entry.scope)
        if index is None:
            index = self._indexes[entry.scope] = _ScopeIndex(self.dimensions)
        index.add(entry.key, vector)

    def _remove(self, key: int) -> None:
        entry = self._entries.pop(key)
        exact = (entry.scope, normalize_text(entry.text))
        if self._exact.get(exact) == key:
            del self._exact[exact]
        index = self._indexes[entry.scope]
        index.remove(key)
        if not len(index):
            del self._indexes[entry.scope]

    def sync(self) -> tuple[int, int]:
        """Take in what other replicas sharing the store added or removed since the
        last sync; returns (added, removed)."""
        if self.store is None:
            return 0, 0
        stored = set(self.store.keys())
        with self._lock:
            local = set(self._entries)
            gone = local - stored
            for key in gone:
                self._remove(key)
        new = stored - local
        if new:
            self._rebuild(row for row in self.store.load(new) if row.key not in self._entries)
        return len(new), len(gone)

    def _rebuild(self, rows: Iterable[StoredEntry]) -> None:
        with self._lock:
            for row in rows:
                vec = np.frombuffer(row.vector, dtype=np.float32).copy()
                if vec.shape[0] != self.dimensions:
                    raise ValueError(f"stored vector of key {row.key} has the wrong dimensions")
                self._add(_Entry(row.key, row.scope, row.text, row.value, row.created_at), vec)


def bulk_vectors(embedder: Any, texts: Sequence[str]) -> Vector:
    """Embed many texts in batches (``Embedder.encode``), for loading or evaluating."""
    return np.asarray(embedder.encode(list(texts)), dtype=np.float32)
