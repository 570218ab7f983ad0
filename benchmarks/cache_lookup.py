"""Vector index choice and end-to-end lookup latency of the semantic cache at 100,000 entries.

    .venv/bin/python benchmarks/cache_lookup.py [--entries 100000] [--queries 500]

Part 1 compares the candidate libraries on the same 384-d MiniLM-like vectors: build time,
search p50/p99 (one query, k=4, as the cache asks), recall@1 against exact search, resident
memory added, and whether they delete and persist. Vectors are the real embeddings of the
cache data's texts, topped up to ``--entries`` with mixtures of two real vectors plus noise
(random vectors would be unrealistically hard for graph indexes; exact copies too easy).
Queries are held-out real embeddings.

Part 2 fills a ``SemanticCache`` scope with ``--entries`` entries and times ``lookup`` with
the real embedder, the chosen index and the shipped verifier (embedding + search +
verification), p50/p99.

Data: GPTCache benchmark pairs (MIT) and Quora Question Pairs via GPTCache (Quora's terms).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cache"
K = 4


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def texts() -> tuple[list[str], list[str]]:
    pairs = json.loads((DATA / "paraphrase_pairs.json").read_text())
    quora = [json.loads(line) for line in (DATA / "qqp_pairs_dev.jsonl").read_text().splitlines()]
    base = [p["origin"] for p in pairs] + [q["text_a"] for q in quora]
    queries = [p["similar"] for p in pairs] + [q["text_b"] for q in quora]
    return list(dict.fromkeys(base)), list(dict.fromkeys(queries))


def embed(embedder: Any, items: list[str]) -> np.ndarray:
    """Batch embeddings, kept in /tmp by content hash (re-runs skip minutes of encoding)."""
    backend = getattr(embedder, "backend", "torch")
    key = hashlib.sha256("\x00".join([backend, *items]).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"tokenomy-bench-{key}.npy"
    if path.exists():
        return np.asarray(np.load(path), dtype=np.float32)
    out = np.asarray(embedder.encode(items), dtype=np.float32)
    np.save(path, out)
    return out


def vectors(embedder: Any, entries: int, queries: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    base_texts, query_texts = texts()
    base = embed(embedder, base_texts)
    rng = np.random.default_rng(0)
    query_texts = [query_texts[i] for i in rng.choice(len(query_texts), queries, replace=False)]
    query = embed(embedder, query_texts)
    extra = entries - len(base)
    if extra > 0:
        a = base[rng.integers(0, len(base), extra)]
        b = base[rng.integers(0, len(base), extra)]
        mix = rng.uniform(0.55, 0.9, (extra, 1)).astype(np.float32)
        synthetic = mix * a + (1 - mix) * b + rng.normal(0, 0.02, a.shape).astype(np.float32)
        base = np.vstack([base, synthetic])
    base = base[:entries]
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    return base, query, query_texts


def timed(
    search: Callable[[np.ndarray], list[int]], queries: np.ndarray
) -> tuple[list[int], list[float]]:
    tops, times = [], []
    for q in queries:
        started = time.perf_counter()
        found = search(q)
        times.append((time.perf_counter() - started) * 1000)
        tops.append(found[0] if found else -1)
    return tops, times


def bench_numpy(base: np.ndarray) -> tuple[Callable[[np.ndarray], list[int]], str, str]:
    def search(q: np.ndarray) -> list[int]:
        sims = base @ q
        top = np.argpartition(-sims, K)[:K]
        return [int(i) for i in top[np.argsort(-sims[top])]]

    return search, "yes (swap rows)", "rebuild from rows"


def bench_usearch(base: np.ndarray) -> tuple[Callable[[np.ndarray], list[int]], str, str]:
    from usearch.index import Index

    index = Index(ndim=base.shape[1], metric="cos", dtype="f32", connectivity=16)
    index.add(np.arange(len(base), dtype=np.uint64), base)

    def search(q: np.ndarray) -> list[int]:
        return [int(k) for k in index.search(q, K).keys]

    index.remove(0)  # deletes work in place
    index.add(0, base[0])
    return search, "yes (remove)", "save/load/view"


def bench_hnswlib(base: np.ndarray) -> tuple[Callable[[np.ndarray], list[int]], str, str]:
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), ef_construction=128, M=16, allow_replace_deleted=True)
    index.add_items(base, np.arange(len(base)))
    index.set_ef(64)

    def search(q: np.ndarray) -> list[int]:
        labels, _ = index.knn_query(q, k=K)
        return [int(k) for k in labels[0]]

    index.mark_deleted(0)
    index.add_items(base[:1], [0], replace_deleted=True)
    return search, "mark_deleted (slot reuse)", "save_index/load_index"


def bench_faiss_hnsw(base: np.ndarray) -> tuple[Callable[[np.ndarray], list[int]], str, str]:
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    index.hnsw.efSearch = 64
    index.add(base)

    def search(q: np.ndarray) -> list[int]:
        _, ids = index.search(q.reshape(1, -1), K)
        return [int(i) for i in ids[0]]

    return search, "no (HNSW cannot remove)", "write_index/read_index"


def bench_faiss_flat(base: np.ndarray) -> tuple[Callable[[np.ndarray], list[int]], str, str]:
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(base.shape[1]))
    index.add_with_ids(base, np.arange(len(base), dtype=np.int64))

    def search(q: np.ndarray) -> list[int]:
        _, ids = index.search(q.reshape(1, -1), K)
        return [int(i) for i in ids[0]]

    return search, "yes (remove_ids, O(n))", "write_index/read_index"


def bench_sqlite_vec(base: np.ndarray) -> tuple[Callable[[np.ndarray], list[int]], str, str]:
    import sqlite_vec

    folder = tempfile.mkdtemp()
    conn = sqlite3.connect(Path(folder) / "vec.db", check_same_thread=False)
    if not hasattr(conn, "enable_load_extension"):
        raise ImportError("this Python's sqlite3 cannot load extensions (sqlite-vec needs it)")
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute(
        f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{base.shape[1]}]"
        " distance_metric=cosine)"
    )
    with conn:
        conn.executemany(
            "INSERT INTO v(rowid, embedding) VALUES (?, ?)",
            ((i, row.tobytes()) for i, row in enumerate(base)),
        )

    def search(q: np.ndarray) -> list[int]:
        rows = conn.execute(
            "SELECT rowid FROM v WHERE embedding MATCH ? ORDER BY distance LIMIT ?",
            (q.tobytes(), K),
        ).fetchall()
        return [int(r[0]) for r in rows]

    return search, "yes (DELETE)", "it is the database"


LIBRARIES = {
    "numpy exact": bench_numpy,
    "usearch HNSW": bench_usearch,
    "hnswlib HNSW": bench_hnswlib,
    "faiss HNSW": bench_faiss_hnsw,
    "faiss flat": bench_faiss_flat,
    "sqlite-vec": bench_sqlite_vec,
}


def compare(base: np.ndarray, queries: np.ndarray, only: list[str]) -> list[dict[str, Any]]:
    exact = np.argmax(queries @ base.T, axis=1)
    rows = []
    for name, build in LIBRARIES.items():
        if only and name not in only:
            continue
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        try:
            search, deletes, persists = build(base)
        except ImportError as exc:
            print(f"{name}: unavailable ({exc})")
            continue
        built = time.perf_counter() - started
        memory = rss_mb() - before
        search(queries[0])
        tops, times = timed(search, queries)
        recall = float(np.mean(np.asarray(tops) == exact))
        rows.append(
            {
                "library": name,
                "build_s": round(built, 1),
                "p50_ms": round(float(np.percentile(times, 50)), 3),
                "p99_ms": round(float(np.percentile(times, 99)), 3),
                "recall@1": round(recall, 4),
                "memory_mb": round(memory),
                "deletes": deletes,
                "persistence": persists,
            }
        )
        del search
    return rows


def end_to_end(embedder: Any, base: np.ndarray, query_texts: list[str]) -> dict[str, Any]:
    from tokenomy.cache.semantic import Scope, SemanticCache
    from tokenomy.cache.verifier import default_verifier

    cache = SemanticCache(embedder, verifier=default_verifier())
    scope = Scope.of("bench", "model", "system prompt")
    started = time.perf_counter()
    for i, vector in enumerate(base):
        cache.insert(scope, f"entry {i}", b"v", created_at=0.0, vector=vector)
    filled = time.perf_counter() - started
    cache.lookup(scope, "warm up the embedder")
    times, embed_times = [], []
    for text in query_texts:
        started = time.perf_counter()
        embedder.encode_one(text)
        embed_times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        cache.lookup(scope, text)
        times.append((time.perf_counter() - started) * 1000)
    return {
        "entries": len(cache),
        "fill_s": round(filled, 1),
        "lookup_p50_ms": round(float(np.percentile(times, 50)), 2),
        "lookup_p99_ms": round(float(np.percentile(times, 99)), 2),
        "embedding_alone_p50_ms": round(float(np.percentile(embed_times, 50)), 2),
        "queries": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--only", action="append", default=[], help="library name (repeatable)")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument(
        "--backend", default="torch", help="embedding backend: torch, onnx, onnx-int8"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"needs {DATA}")
    from tokenomy.embeddings import shared_embedder

    embedder = (
        shared_embedder() if args.backend == "torch" else shared_embedder(backend=args.backend)
    )
    base, queries, query_texts = vectors(embedder, args.entries, args.queries)
    out: dict[str, Any] = {
        "entries": len(base),
        "dimensions": base.shape[1],
        "queries": len(queries),
    }
    if not args.skip_compare:
        out["indexes"] = compare(base, queries, args.only)
    out["end_to_end"] = end_to_end(embedder, base, query_texts[:200])
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{out['entries']:,} vectors x {out['dimensions']}, {out['queries']} queries, k={K}")
    if "indexes" in out:
        head = (
            f"{'library':14s} {'build s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'recall@1':>9s} "
            f"{'MB':>6s}  deletes / persistence"
        )
        print(head)
        for r in out["indexes"]:
            print(
                f"{r['library']:14s} {r['build_s']:8.1f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
                f"{r['recall@1']:9.4f} {r['memory_mb']:6d}  {r['deletes']} / {r['persistence']}"
            )
    e = out["end_to_end"]
    print(
        f"\nSemanticCache.lookup at {e['entries']:,} entries (embedding + search + verification): "
        f"p50 {e['lookup_p50_ms']} ms, p99 {e['lookup_p99_ms']} ms "
        f"(embedding alone p50 {e['embedding_alone_p50_ms']} ms; fill {e['fill_s']} s)"
    )


if __name__ == "__main__":
    main()
