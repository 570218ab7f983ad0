"""Training a router and measuring it with subject-grouped cross-validation.

A *spec* says what to fit: one or more components, each a model family on some feature
blocks predicting some target. Each component's output is standardised on its training
scores and the components are summed with their weights, so an ensemble is just a spec
with several components.

Targets (from per-prompt outcomes ``w`` = weak correct, ``t`` = strong correct):

- ``weak_wrong``: P(weak model fails). Routes away the prompts the weak model gets wrong,
  including those the strong model also fails (wasted strong calls).
- ``gain``: the expected quality a strong call buys, E[strong right - weak right]: a
  regression for trees, two heads P(strong right) - P(weak right) for the other families;
  prompts both models fail score near 0.
- ``strong_only``: P(only the strong model is right), the oracle's own label.

Cross-validation never scores a group (an MMLU subject) that its model trained on: the
router has to generalise to new kinds of prompts, as it does on live traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenomy.routing.learned import metrics as M
from tokenomy.routing.learned.router import (
    DEFAULT_MODEL,
    Head,
    LearnedRouter,
    assemble,
    feature_blocks,
    prompt_hashes,
)
from tokenomy.routing.learned.trees import flatten as flatten_trees

Blocks = dict[str, npt.NDArray[np.float32]]
FloatArray = npt.NDArray[np.float64]

FAMILIES = ("logreg", "mlp", "lgbm")
TARGETS = ("weak_wrong", "gain", "strong_only")


@dataclass(frozen=True)
class Component:
    family: str
    target: str
    inputs: tuple[str, ...]
    weight: float = 1.0
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, key: str, default: Any) -> Any:
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class Spec:
    name: str
    components: tuple[Component, ...]
    disagreement_weight: float = 1.0  # sample weight of rows where the two models differ

    @property
    def inputs(self) -> set[str]:
        return {i for c in self.components for i in c.inputs}


def _targets(target: str, w: FloatArray, t: FloatArray) -> list[tuple[FloatArray, float]]:
    """(label, sign) per head of a target."""
    if target == "weak_wrong":
        return [(1.0 - w, 1.0)]
    if target == "gain":
        return [(t, 1.0), (w, -1.0)]
    if target == "strong_only":
        return [(t * (1.0 - w), 1.0)]
    raise ValueError(f"unknown target {target!r}; one of {TARGETS}")


def _fit_linear(
    x: npt.NDArray[np.float32], y: FloatArray, sw: FloatArray, c: Component
) -> dict[str, npt.NDArray[Any]]:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0).astype(np.float64)
    scale = x.std(0).astype(np.float64)
    scale[scale == 0] = 1.0
    xs = (x - mean) / scale
    model = LogisticRegression(C=float(c.param("C", 0.05)), max_iter=2000)
    model.fit(xs, y, sample_weight=sw)
    return {
        "x_mean": mean,
        "x_scale": scale,
        "W0": model.coef_.T.astype(np.float64),
        "b0": model.intercept_.astype(np.float64),
    }


def _fit_mlp(
    x: npt.NDArray[np.float32], y: FloatArray, sw: FloatArray, c: Component, seed: int
) -> dict[str, npt.NDArray[Any]]:
    from sklearn.neural_network import MLPClassifier

    mean = x.mean(0).astype(np.float64)
    scale = x.std(0).astype(np.float64)
    scale[scale == 0] = 1.0
    xs = (x - mean) / scale
    hidden = tuple(c.param("hidden", (64,)))
    model = MLPClassifier(
        hidden_layer_sizes=hidden,
        alpha=float(c.param("alpha", 1.0)),
        max_iter=int(c.param("max_iter", 200)),
        early_stopping=False,
        random_state=seed,
    )
    # MLPClassifier has no sample weights in older scikit-learn: repeat rows instead
    reps = np.maximum(np.rint(sw).astype(int), 1)
    model.fit(np.repeat(xs, reps, axis=0), np.repeat(y, reps))
    arrays: dict[str, npt.NDArray[Any]] = {"x_mean": mean, "x_scale": scale}
    for i, (wm, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        arrays[f"W{i}"] = wm.astype(np.float64)
        arrays[f"b{i}"] = b.astype(np.float64)
    return arrays


def _fit_lgbm(
    x: npt.NDArray[np.float32],
    y: FloatArray,
    sw: FloatArray,
    c: Component,
    seed: int,
    objective: str = "binary",
) -> dict[str, npt.NDArray[Any]]:
    try:
        import lightgbm
    except ImportError:
        raise RuntimeError(
            "training the lgbm family needs lightgbm (pip install lightgbm)"
        ) from None

    params = {
        "objective": objective,
        "learning_rate": float(c.param("learning_rate", 0.03)),
        "num_leaves": int(c.param("num_leaves", 7)),
        "min_data_in_leaf": int(c.param("min_data_in_leaf", 40)),
        "feature_fraction": float(c.param("feature_fraction", 0.5)),
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": float(c.param("lambda_l2", 10.0)),
        "verbose": -1,
        "seed": seed + int(c.param("seed", 0)),  # a bag of components: one seed each
        "num_threads": int(c.param("threads", 1)),  # OpenMP spin-waits on a busy machine
        "force_col_wise": True,
        "deterministic": True,
    }
    monotone = c.param("monotone", None)  # {feature index: +1 | -1} of the assembled x
    if monotone:
        params["monotone_constraints"] = [int(dict(monotone).get(i, 0)) for i in range(x.shape[1])]
        params["monotone_constraints_method"] = "advanced"
    data = lightgbm.Dataset(x, label=y, weight=sw)
    booster = lightgbm.train(params, data, num_boost_round=int(c.param("rounds", 300)))
    return flatten_trees(booster)


def fit_heads(
    spec: Spec, blocks: Blocks, w: FloatArray, t: FloatArray, seed: int = 0
) -> list[Head]:
    """The heads of ``spec`` fitted on these rows, standardised on their own scores."""
    sw = np.where(w != t, spec.disagreement_weight, 1.0)
    heads: list[Head] = []
    for ci, comp in enumerate(spec.components):
        x = assemble(blocks, list(comp.inputs))
        parts: list[Head] = []
        if comp.family == "lgbm" and comp.target == "gain":
            # one regression on the gain itself: trees need no two-head difference
            arrays = _fit_lgbm(x, t - w, sw, comp, seed, objective="regression")
            parts.append(Head(f"c{ci}h0", "trees", list(comp.inputs), "raw", 1.0, arrays=arrays))
            targets: list[tuple[FloatArray, float]] = []
        else:
            targets = _targets(comp.target, w, t)
        for hi, (y, sign) in enumerate(targets):
            name = f"c{ci}h{hi}"
            output = "prob" if comp.target == "gain" else "raw"
            inputs = list(comp.inputs)
            if comp.family == "logreg":
                arrays = _fit_linear(x, y, sw, comp)
                head = Head(name, "linear", inputs, output, sign, arrays=arrays)
            elif comp.family == "mlp":
                arrays = _fit_mlp(x, y, sw, comp, seed)
                head = Head(name, "mlp", inputs, output, sign, arrays=arrays)
            elif comp.family == "lgbm":
                arrays = _fit_lgbm(x, y, sw, comp, seed)
                head = Head(name, "trees", inputs, output, sign, arrays=arrays)
            else:
                raise ValueError(f"unknown model family {comp.family!r}; one of {FAMILIES}")
            parts.append(head)
        # standardise the component's summed output on its training rows
        raws = [h.raw(x) for h in parts]
        total = sum(h.weight * r for h, r in zip(parts, raws, strict=True))
        scale = float(np.std(total)) or 1.0
        for h, r in zip(parts, raws, strict=True):
            h.center = float(np.mean(r))
            h.scale = scale
            h.weight *= comp.weight
        heads.extend(parts)
    return heads


def score_with(heads: list[Head], blocks: Blocks) -> FloatArray:
    total = np.zeros(len(next(iter(blocks.values()))))
    for h in heads:
        total += h.contribution(assemble(blocks, h.inputs))
    return total


# -- cross-validation -----------------------------------------------------------------


def group_folds(groups: npt.NDArray[Any], k: int, seed: int) -> list[npt.NDArray[np.intp]]:
    """Test indices of ``k`` folds of whole groups, of similar sizes (seeded shuffle)."""
    names, counts = np.unique(groups, return_counts=True)
    rng = np.random.default_rng(seed)
    order = sorted(range(len(names)), key=lambda i: -counts[i] * (0.5 + rng.random()))
    load = [0] * k
    members: list[list[str]] = [[] for _ in range(k)]
    for i in order:
        f = int(np.argmin(load))
        members[f].append(str(names[i]))
        load[f] += int(counts[i])
    return [np.flatnonzero(np.isin(groups, m)) for m in members if m]


def row_folds(n: int, k: int, seed: int) -> list[npt.NDArray[np.intp]]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]


@dataclass
class CVResult:
    """Per-fold figures (each fold's held-out groups) and the pooled out-of-fold curve."""

    spec: str
    grouped: bool
    folds: list[dict[str, float]] = field(default_factory=list)
    pooled: list[dict[str, float]] = field(default_factory=list)  # one per repeat
    curve: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        keys = ("apgr", "cpt50", "cpt80", "strong_share_at_95")
        out: dict[str, Any] = {"spec": self.spec, "grouped": self.grouped, "folds": len(self.folds)}
        for key in keys:
            vals = np.array([f[key] for f in self.folds], dtype=np.float64)
            out[key] = float(np.nanmean(vals))
            out[key + "_sd"] = float(np.nanstd(vals))
            pooled = np.array([p[key] for p in self.pooled], dtype=np.float64)
            out["pooled_" + key] = float(np.nanmean(pooled))
        return out


def cross_validate(
    spec: Spec,
    blocks: Blocks,
    w: FloatArray,
    t: FloatArray,
    groups: npt.NDArray[Any] | None,
    k: int = 5,
    repeats: int = 1,
    seed: int = 0,
) -> CVResult:
    """Out-of-fold metrics; with ``groups`` no group is ever scored by a model that saw it."""
    started = time.perf_counter()
    n = len(w)
    result = CVResult(spec.name, groups is not None)
    curve_quality = np.zeros(201)
    grid = np.linspace(0, 1, 201)
    q_strong = float(t.mean())
    for rep in range(repeats):
        folds = (
            group_folds(groups, k, seed + rep)
            if groups is not None
            else row_folds(n, k, seed + rep)
        )
        oof = np.zeros(n)
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            heads = fit_heads(
                spec, {b: v[train] for b, v in blocks.items()}, w[train], t[train], seed + rep
            )
            s = score_with(heads, {b: v[test] for b, v in blocks.items()})
            # each fold's scores as percentiles of its own training scores: pooled folds
            # then share one scale, as a deployed router's percentile threshold would
            ref = np.sort(score_with(heads, {b: v[train] for b, v in blocks.items()}))
            oof[test] = np.searchsorted(ref, s) / len(ref)
            if w[test].mean() != t[test].mean():  # else PGR is undefined
                result.folds.append(M.evaluate(s, w[test], t[test]).as_dict())
        result.pooled.append(M.evaluate(oof, w, t).as_dict())
        c = M.curve(oof, w, t)
        curve_quality += np.interp(grid, c.share, c.quality)
    result.curve = {
        "share": [round(float(x), 4) for x in grid],
        "quality": [round(float(x), 5) for x in curve_quality / repeats],
        "q_weak": float(w.mean()),
        "q_strong": q_strong,
    }
    result.seconds = time.perf_counter() - started
    return result


# -- the default spec and the public entry point ---------------------------------------

SPECS: dict[str, Spec] = {}


def _register(spec: Spec) -> Spec:
    SPECS[spec.name] = spec
    return spec


EMB = ("emb_full",)
SURFACE = ("surface",)
RICH = ("surface", "lexical", "options_sim")
LEAN = ("surface", "lexical", "options_alike")
_register(Spec("logreg", (Component("logreg", "weak_wrong", EMB, params=(("C", 0.05),)),)))
_register(
    Spec("mlp", (Component("mlp", "weak_wrong", EMB, params=(("hidden", (64,)), ("alpha", 10.0))),))
)
_register(
    Spec(
        "logreg+surface",
        (
            Component("logreg", "weak_wrong", EMB, params=(("C", 0.05),)),
            Component("logreg", "weak_wrong", SURFACE, params=(("C", 1.0),)),
        ),
    )
)
_register(Spec("lgbm-rich", (Component("lgbm", "gain", RICH),)))
# the best measured (benchmarks/router_quality.py): boosted trees on the expected gain of a
# strong call, from surface counts, vocabulary rarity and how alike the answer options are.
# It embeds only the options (short), never the whole prompt: fast decisions.
_register(Spec("lgbm", (Component("lgbm", "gain", LEAN),)))
# slightly better curve (APGR +0.004, 95% share -0.01) for one more, longer, encoder pass
_register(
    Spec(
        "lgbm+logreg",
        (
            Component("lgbm", "gain", LEAN),
            Component("logreg", "weak_wrong", EMB, params=(("C", 0.05),), weight=0.5),
        ),
    )
)
# the gain trees averaged with trees on other targets (P(weak wrong), P(only strong right)):
# the same features, so the same decision time; grouped CV on fresh deals: APGR +0.004,
# 95% share -0.016 (benchmarks/router_quality.py), short of the 0.50 goal
_register(
    Spec(
        "lgbm-3targets",
        (
            Component("lgbm", "gain", LEAN),
            Component("lgbm", "weak_wrong", LEAN, weight=0.5),
            Component("lgbm", "strong_only", LEAN, weight=0.5),
        ),
    )
)
_register(
    Spec(
        "lgbm-2targets",
        (Component("lgbm", "gain", LEAN), Component("lgbm", "weak_wrong", LEAN, weight=0.5)),
    )
)
DEFAULT_SPEC = "lgbm"
# prompts without options: the question's embedding and its counts (no option features)
FREE_SPEC = Spec(
    "free",
    (
        Component("logreg", "weak_wrong", EMB, params=(("C", 0.05),)),
        Component("lgbm", "weak_wrong", ("surface", "lexical")),
    ),
)


def spec_for(family: str) -> Spec | None:
    """The spec a ``--model-family`` names (``default`` = the best measured)."""
    return SPECS.get(DEFAULT_SPEC if family == "default" else family)


def family_names() -> list[str]:
    return ["default", *SPECS]


OPTION_BLOCKS = {"options_sim", "options_alike", "options_shape", "emb_options"}


def _cv(
    spec: Spec,
    blocks: Blocks,
    w: FloatArray,
    t: FloatArray,
    groups: npt.NDArray[Any] | None,
    repeats: int,
) -> CVResult | None:
    n_groups = len(np.unique(groups)) if groups is not None else 0
    if groups is not None and n_groups >= 3:
        return cross_validate(spec, blocks, w, t, groups, k=min(5, n_groups), repeats=repeats)
    if len(w) >= 50:
        return cross_validate(spec, blocks, w, t, None, k=5, repeats=repeats)
    return None


def _cv_meta(cv: CVResult) -> dict[str, Any]:
    return {
        "method": "group k-fold" if cv.grouped else "k-fold (no groups in the data)",
        "spec": cv.spec,
        "summary": _finite(cv.summary()),
        "curve": cv.curve,
    }


def train_router(
    prompts: list[str],
    w: FloatArray,
    t: FloatArray,
    groups: npt.NDArray[Any] | None,
    spec: Spec,
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
    embedding: dict[str, Any],
    provenance: dict[str, Any],
    cv_repeats: int = 1,
    free_spec: Spec | None = None,
) -> tuple[LearnedRouter, CVResult | None]:
    """Cross-validate, then fit on every row: ``spec`` for multiple-choice prompts when it
    uses the options, and ``free_spec`` (default ``FREE_SPEC``) on the same questions
    without their options, for every other prompt. A spec that does not use the options
    is one model for all prompts. Returns the router and the main model's CV."""
    from tokenomy.routing.learned.features import split_prompt
    from tokenomy.routing.learned.router import Model

    parts = [split_prompt(p) for p in prompts]
    choice_rows = np.flatnonzero([len(p.options) >= 2 for p in parts])
    models: dict[str, Model] = {}
    meta: dict[str, Any] = {
        "embedding": embedding,
        "spec": spec.name,
        "training": provenance
        | {"n": len(w), "q_weak": float(w.mean()), "q_strong": float(t.mean())},
    }
    main_cv: CVResult | None = None
    reference = np.zeros(len(prompts))
    if spec.inputs & OPTION_BLOCKS and len(choice_rows) >= 30:
        texts = [prompts[i] for i in choice_rows]
        g = groups[choice_rows] if groups is not None else None
        wc, tc = w[choice_rows], t[choice_rows]
        blocks = feature_blocks(texts, spec.inputs, embed, embedding.get("model", DEFAULT_MODEL))
        main_cv = _cv(spec, blocks, wc, tc, g, cv_repeats)
        heads = fit_heads(spec, blocks, wc, tc)
        raw = score_with(heads, blocks)
        models["choice"] = Model(heads, np.sort(raw))
        reference[choice_rows] = models["choice"].percentile(raw)
        free = free_spec or FREE_SPEC
        free_texts = [p.stem for p in parts]  # the questions without their options
    else:
        free = spec
        free_texts = list(prompts)
    blocks = feature_blocks(free_texts, free.inputs, embed, embedding.get("model", DEFAULT_MODEL))
    free_cv = _cv(free, blocks, w, t, groups, cv_repeats)
    heads = fit_heads(free, blocks, w, t)
    raw = score_with(heads, blocks)
    models["free"] = Model(heads, np.sort(raw))
    # the training prompts' own scores, as the router computes them on live prompts
    free_rows = np.ones(len(prompts), dtype=bool)
    if "choice" in models:
        free_rows[choice_rows] = False
    reference[free_rows] = models["free"].percentile(raw[free_rows])
    if main_cv is None:
        main_cv = free_cv
    elif free_cv is not None:
        meta["cv_free"] = _cv_meta(free_cv)
    if main_cv is not None:
        meta["cv"] = _cv_meta(main_cv)
    meta["free_spec"] = free.name
    router = LearnedRouter(meta, models, reference.astype(np.float32), prompt_hashes(prompts))
    return router, main_cv


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
