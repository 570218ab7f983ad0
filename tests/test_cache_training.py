"""Training the hit verifier: rows from both file shapes, grouped folds that never train on
a scored text, the trees artifact without LightGBM at run time, and ``--cv`` across files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tokenomy.cache.evaluate import Pairs, encode, load_pairs
from tokenomy.cache.semantic import normalize_text
from tokenomy.cache.training import (
    TREE_PARAMS,
    Rows,
    choose_min_score,
    decision_folds,
    fit,
    held_out_texts,
    rows_from,
)
from tokenomy.cache.verifier import TREES, Verifier, trees_verifier
from tokenomy.cli.main import cli
from tokenomy.embeddings import Embedder, shared_embedder

TOPICS = ["python", "rust", "docker", "redis", "linux", "git", "sql", "kafka", "nginx", "java"]


def gptcache_file(path: Path) -> Path:
    rows = []
    for topic in TOPICS:
        rows.append(
            {
                "origin": f"How do I install {topic}?",
                "similar": f"What are the steps to install {topic}?",
            }
        )
        rows.append(
            {"origin": f"Why is {topic} slow?", "similar": f"What makes {topic} run slowly?"}
        )
    path.write_text(json.dumps(rows))
    return path


def decision_file(path: Path) -> Path:
    lines = []
    for topic in TOPICS:
        lines.append(
            {
                "text_a": f"Is {topic} hard to learn?",
                "text_b": f"Is learning {topic} difficult?",
                "label": 1,
            }
        )
        lines.append(
            {"text_a": f"Is {topic} free?", "text_b": f"Is {topic} open source?", "label": 0}
        )
        lines.append(
            {"text_a": f"Who created {topic}?", "text_b": f"Who invented {topic}?", "label": 1}
        )
        lines.append(
            {"text_a": f"Who uses {topic}?", "text_b": f"Who maintains {topic}?", "label": 0}
        )
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


def vectors(embedder: Embedder, pairs: Pairs) -> tuple[Any, Any]:
    return encode(embedder, pairs.a), encode(embedder, pairs.b)


def test_paraphrase_rows_are_own_origin_and_nearest_other(
    tmp_path: Path, embedder: Embedder
) -> None:
    pairs = load_pairs(gptcache_file(tmp_path / "p.json"))
    va, vb = vectors(embedder, pairs)
    rows = rows_from(pairs, va, vb)
    n = len(pairs)
    assert len(rows) == 2 * n and rows.labels.tolist() == [1] * n + [0] * n
    assert rows.cached[:n] == pairs.a and rows.query == pairs.b * 2
    for i in range(n):
        negative = rows.cached[n + i]
        assert negative != pairs.a[i]
        others = [j for j in range(n) if pairs.a[j] != pairs.a[i]]
        best = max(others, key=lambda j: float(vb[i] @ va[j]))
        assert negative == pairs.a[best]
        assert rows.cosine[n + i] == pytest.approx(float(vb[i] @ va[best]), abs=1e-5)


def test_folds_never_train_on_a_scored_text(tmp_path: Path, embedder: Embedder) -> None:
    pairs = load_pairs(gptcache_file(tmp_path / "p.json"))
    quora = load_pairs(decision_file(tmp_path / "q.jsonl"))
    va, vb = vectors(embedder, pairs)
    rows = [rows_from(pairs, va, vb), rows_from(quora, *vectors(embedder, quora))]
    folds = decision_folds(pairs, 3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(pairs)))
    for fold, held in zip(folds, held_out_texts(pairs, va, vb, folds), strict=True):
        for i in fold:  # the query, its own origin, and what the cache would serve
            nearest = max(range(len(pairs)), key=lambda j: float(vb[i] @ va[j]))
            assert {normalize_text(pairs.b[i]), normalize_text(pairs.a[nearest])} <= held
        for r in rows:
            kept = r.without(held)
            assert 0 < kept.sum() < len(r) or r.source == "q.jsonl"
            for q, c, k in zip(r.query, r.cached, kept, strict=True):
                touches = normalize_text(q) in held or normalize_text(c) in held
                assert k != touches


def test_trees_verifier_matches_lightgbm_and_round_trips(
    tmp_path: Path, embedder: Embedder
) -> None:
    import lightgbm

    quora = load_pairs(decision_file(tmp_path / "q.jsonl"))
    rows = rows_from(quora, *vectors(embedder, quora))
    rows.cosine[:] = 0.9  # all above the training floor
    params = {**TREE_PARAMS, "n_estimators": 20, "min_child_samples": 3}
    model = lightgbm.LGBMClassifier(**params, random_state=0, n_jobs=1, verbose=-1)
    model.fit(rows.x, rows.labels)
    from tokenomy.routing.learned.trees import flatten

    verifier = Verifier((), 0.0, (), (), 0.5, trees=flatten(model.booster_))
    expected = np.asarray(model.predict_proba(rows.x))[:, 1]
    got = [verifier.probability(list(row)) for row in rows.x]
    assert np.allclose(got, expected, atol=1e-9)
    again = Verifier.from_json(json.loads(json.dumps(verifier.to_json())))
    assert again.kind == TREES
    assert [again.probability(list(row)) for row in rows.x] == got


def test_shipped_verifier_needs_no_lightgbm() -> None:
    code = (
        "import sys\n"
        "from tokenomy.cache.verifier import trees_verifier\n"
        "v = trees_verifier()\n"
        "s = v.score('How do I learn Python?', 'How can I learn Python?', 0.93)\n"
        "print(s, 'lightgbm' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    score, lightgbm_loaded, sklearn_loaded = out.stdout.split()
    assert 0.0 < float(score) <= 1.0
    assert lightgbm_loaded == "False" and sklearn_loaded == "False"


def test_shipped_verifier_records_its_training() -> None:
    verifier = trees_verifier()
    assert verifier.kind == TREES
    sources = {s["file"]: s for s in verifier.provenance["sources"]}
    assert set(sources) == {"qqp_pairs_dev.jsonl", "paraphrase_pairs.json"}
    assert set(verifier.provenance["cross_validated"]) == set(sources)
    assert verifier.min_score in [
        row[0] for row in verifier.provenance["cross_validated_sweep"]["qqp_pairs_dev.jsonl"]
    ]
    artifact = Path(sys.modules["tokenomy.cache.verifier"].__file__ or "").with_name(
        "verifier_v2.json"
    )
    assert artifact.stat().st_size < 10_000_000


def test_min_score_rule_needs_the_target_on_every_file() -> None:
    quora = [{"min_score": s, "precision": p} for s, p in ((0.3, 0.7), (0.5, 0.86), (0.7, 0.9))]
    para = [{"min_score": s, "precision": p} for s, p in ((0.3, 0.98), (0.5, 0.84), (0.7, 1.0))]
    assert choose_min_score([quora, para]) == 0.7  # 0.5 reaches 0.85 on Quora only
    assert choose_min_score([quora]) == 0.5
    low = [{"min_score": s, "precision": p} for s, p in ((0.3, 0.6), (0.5, 0.8), (0.7, 0.7))]
    assert choose_min_score([low]) == 0.5  # none reaches 0.85: the most precise


def test_cv_on_a_paraphrase_file_trains_on_its_sibling_files(
    tmp_path: Path, embedder: Embedder
) -> None:
    para = load_pairs(gptcache_file(tmp_path / "para.json"))
    quora = load_pairs(decision_file(tmp_path / "quora.jsonl"))
    rows: list[Rows] = [rows_from(f, *vectors(embedder, f)) for f in (para, quora)]
    verifier = fit(
        rows,
        min_score=0.3,
        guards=("numbers",),
        provenance={"sources": [{"file": f.name, "sha256": f.sha256} for f in (para, quora)]},
    )
    verifier.save(tmp_path / "v.json")

    def run(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            cli,
            [
                "cache",
                "eval",
                "--pairs",
                str(tmp_path / "para.json"),
                "--verifier",
                str(tmp_path / "v.json"),
                "--json",
                "--latency-samples",
                "3",
                *args,
            ],
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert isinstance(data, dict)
        return data

    in_sample = run()
    assert in_sample["in_sample"] is True and in_sample["cv_training"] is None
    crossed = run("--cv", "3")
    assert crossed["in_sample"] is False and crossed["cv"] == 3
    assert crossed["cv_training"] == ["para.json (other folds)", "quora.jsonl"]
    assert crossed["guards"] == ["numbers"] and crossed["min_score"] == 0.3
    assert crossed["n"] == len(para) and crossed["entries"] == 3 * len(para)
    (tmp_path / "quora.jsonl").unlink()
    alone = run("--cv", "3")
    assert alone["cv_training"] == [
        "para.json (other folds)",
        "quora.jsonl (not found beside para.json: left out)",
    ]


def test_a_single_origin_gives_no_negatives(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "one.json"
    path.write_text(
        json.dumps([{"origin": "How do I boil an egg?", "similar": "How to boil eggs?"}] * 2)
    )
    pairs = load_pairs(path)
    rows = rows_from(pairs, *vectors(embedder, pairs))
    assert rows.labels.tolist() == [1, 1] and rows.cached == [pairs.a[0]] * 2
