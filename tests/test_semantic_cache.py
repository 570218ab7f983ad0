"""The semantic cache engine through its public API, with the real MiniLM embedder."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from tokenomy.cache.semantic import (
    ANN_MIN_ENTRIES,
    MemoryStore,
    Scope,
    SemanticCache,
)
from tokenomy.cache.verifier import default_verifier
from tokenomy.embeddings import Embedder, shared_embedder

QUESTION = "How can I learn to play the guitar on my own?"
PARAPHRASE = "How do I teach myself to play guitar?"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


def make_cache(embedder: Embedder, **options: Any) -> SemanticCache:
    return SemanticCache(embedder, verifier=default_verifier(), **options)


def test_a_paraphrase_hits_in_the_same_scope(embedder: Embedder) -> None:
    cache = make_cache(embedder)
    scope = Scope.of("acme", "gpt-4o", "You are a helpful assistant.")
    cache.insert(scope, QUESTION, b"answer")
    hit = cache.lookup(scope, PARAPHRASE)
    assert hit is not None
    assert hit.value == b"answer"
    assert hit.matched_text == QUESTION
    assert 0.8 <= hit.similarity < 1.0
    assert hit.score >= default_verifier().min_score
    exact = cache.lookup(scope, "  how can I learn to play the GUITAR on my own? ")
    assert exact is not None and exact.score == 1.0


def test_no_hit_across_tenants_models_or_system_prompts(embedder: Embedder) -> None:
    cache = make_cache(embedder)
    home = Scope.of("acme", "gpt-4o", "You are a helpful assistant.")
    cache.insert(home, QUESTION, b"acme's answer")
    others = [
        Scope.of("globex", "gpt-4o", "You are a helpful assistant."),
        Scope.of("acme", "claude-sonnet", "You are a helpful assistant."),
        Scope.of("acme", "gpt-4o", "You are a pirate. Answer in pirate speak."),
        Scope.of("acme", "gpt-4o"),
    ]
    for scope in others:
        assert cache.lookup(scope, QUESTION) is None, scope
        assert cache.lookup(scope, PARAPHRASE) is None, scope
    # the other scopes' own entries do not leak back either
    for scope in others:
        cache.insert(scope, QUESTION, b"other answer")
    hit = cache.lookup(home, PARAPHRASE)
    assert hit is not None and hit.value == b"acme's answer"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Where can I buy Jordan 3 shoes?", "Where can I buy Jordan 6 shoes?"),
        (
            "Is it safe to take castor oil at 37 weeks pregnant?",
            "Is it safe to take castor oil at 35 weeks pregnant?",
        ),
        (
            "Why do people worry about global warming?",
            "Why don't people worry about global warming?",
        ),
        (
            "What are the things a woman should do after getting married?",
            "What are the things a woman should not do after getting married?",
        ),
        ("How can I learn to play the guitar on my own?", "What is the capital of Australia?"),
    ],
)
def test_different_questions_do_not_hit(embedder: Embedder, cached: str, query: str) -> None:
    cache = make_cache(embedder)
    scope = Scope("t", "m")
    cache.insert(scope, cached, b"x")
    assert cache.lookup(scope, query) is None


def test_cosine_alone_would_have_served_them(embedder: Embedder) -> None:
    """The guards and verifier are what refuse the near-misses above."""
    cache = SemanticCache(embedder, verifier=None, threshold=0.8)
    scope = Scope("t", "m")
    cache.insert(scope, "Where can I buy Jordan 3 shoes?", b"x")
    assert cache.lookup(scope, "Where can I buy Jordan 6 shoes?") is not None


def test_ambiguous_neighbours_do_not_hit(embedder: Embedder) -> None:
    cache = make_cache(embedder)
    scope = Scope("t", "m")
    cache.insert(scope, "How do I cook rice in a rice cooker?", b"cooker")
    cache.insert(scope, "How do I cook rice in a pot?", b"pot")
    probe = cache.probe(scope, "How do I cook rice?")
    assert probe.nearest is not None and probe.runner_up is not None
    assert probe.nearest.similarity - probe.runner_up < cache.margin
    assert cache.lookup(scope, "How do I cook rice?") is None


def test_purge_by_tenant_model_and_age(embedder: Embedder) -> None:
    cache = make_cache(embedder)
    a, b, c = Scope("a", "m1"), Scope("b", "m1"), Scope("a", "m2")
    cache.insert(a, QUESTION, b"1", created_at=100.0)
    cache.insert(b, QUESTION, b"2", created_at=200.0)
    cache.insert(c, QUESTION, b"3", created_at=300.0)
    assert len(cache) == 3
    assert cache.purge(older_than=150.0) == 1
    assert cache.lookup(a, QUESTION) is None
    assert cache.purge(model="m2") == 1
    assert cache.purge(tenant="b") == 1
    assert len(cache) == 0 and cache.scopes() == []


def test_max_age_hides_old_entries(embedder: Embedder) -> None:
    now = [1000.0]
    cache = make_cache(embedder, max_age_s=60.0, clock=lambda: now[0])
    scope = Scope("t", "m")
    cache.insert(scope, QUESTION, b"x")
    assert cache.lookup(scope, PARAPHRASE) is not None
    now[0] += 61.0
    assert cache.lookup(scope, PARAPHRASE) is None
    assert cache.lookup(scope, QUESTION) is None


def test_the_index_is_rebuilt_from_stored_rows(embedder: Embedder) -> None:
    store = MemoryStore()
    first = make_cache(embedder, store=store)
    scope = Scope.of("acme", "gpt-4o", "system")
    first.insert(scope, QUESTION, b"answer", created_at=5.0)
    first.insert(Scope("other", "m"), "What is the capital of Australia?", b"Canberra")
    first.insert(scope, QUESTION, b"newer answer", created_at=6.0)  # same text replaces
    assert len(store.rows) == 2
    second = make_cache(embedder, store=store)
    assert len(second) == 2
    hit = second.lookup(scope, PARAPHRASE)
    assert hit is not None and hit.value == b"newer answer" and hit.created_at == 6.0
    assert second.lookup(Scope("acme", "gpt-4o"), PARAPHRASE) is None
    new_key = second.insert(scope, "Another question about cooking pasta?", b"y")
    assert [row.key for row in store.load()].count(new_key) == 1  # keys never collide
    assert second.purge(tenant="acme") == 2
    assert [row.scope.tenant for row in store.load()] == ["other"]


def test_large_scope_uses_the_ann_index_and_keeps_scopes(embedder: Embedder) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((ANN_MIN_ENTRIES + 100, embedder.dimensions)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cache = SemanticCache(embedder, verifier=None, threshold=0.9)
    big, small = Scope("big", "m"), Scope("small", "m")
    for i, vector in enumerate(vectors):
        cache.insert(big, f"entry {i}", str(i).encode(), vector=vector)
    cache.insert(small, "entry 7", b"small", vector=vectors[7])
    for i in (0, 7, 1500, ANN_MIN_ENTRIES + 50):
        hit = cache.lookup(big, f"query {i}", vector=vectors[i])
        assert hit is not None and hit.value == str(i).encode()
    hit = cache.lookup(small, "query", vector=vectors[7])
    assert hit is not None and hit.value == b"small"
    assert cache.lookup(small, "query", vector=vectors[8]) is None
    assert cache.purge(scope=big) == len(vectors)
    assert cache.lookup(big, "query", vector=vectors[0]) is None


def test_concurrent_inserts_and_lookups(embedder: Embedder) -> None:
    cache = SemanticCache(embedder, verifier=None)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((400, embedder.dimensions)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    errors: list[BaseException] = []

    def work(part: int) -> None:
        try:
            for i in range(part, 400, 4):
                scope = Scope(f"t{i % 3}", "m")
                cache.insert(scope, f"text {i}", b"v", vector=vectors[i])
                hit = cache.lookup(scope, f"q {i}", vector=vectors[i])
                assert hit is not None and hit.matched_text == f"text {i}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache) == 400


def test_wrong_vector_size_is_refused(embedder: Embedder) -> None:
    cache = SemanticCache(embedder)
    with pytest.raises(ValueError, match="dimensions"):
        cache.insert(Scope("t", "m"), "x", b"v", vector=np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize(
    ("cached", "query", "veto"),
    [
        (
            "Why do people worry about global warming?",
            "Why don't people worry about global warming?",
            "negation",
        ),
        (  # a reworded paraphrase says "zero-copy" as "without any copying": no veto
            "The `slice` method computes a zero-copy slice of the table.",
            "The `slice` method produces a slice of the table without any copying.",
            None,
        ),
        ("Where can I buy Jordan 3 shoes?", "Where can I buy Jordan 6 shoes?", "numbers"),
    ],
)
def test_hard_vetoes(cached: str, query: str, veto: str | None) -> None:
    from tokenomy.cache.features import vetoed

    assert vetoed(default_verifier().guards, query, cached) == veto
