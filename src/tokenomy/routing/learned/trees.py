"""Gradient-boosted trees as plain arrays, evaluated with numpy.

LightGBM fits the trees; the artifact keeps only their split features, thresholds, child
links and leaf values. Scoring then needs neither LightGBM nor its model file, is
thread-safe by construction (read-only arrays) and walks all the trees of a batch at once,
one tree level per numpy step.

Node links: ``i >= 0`` is internal node ``i``; ``i < 0`` is leaf ``-i - 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def flatten(booster: Any) -> dict[str, npt.NDArray[Any]]:
    """The trees of a LightGBM booster (numerical splits only) as arrays."""
    dump = booster.dump_model()
    feature: list[int] = []
    threshold: list[float] = []
    default_left: list[bool] = []
    left: list[int] = []
    right: list[int] = []
    leaf_value: list[float] = []
    roots: list[int] = []

    def visit(node: dict[str, Any]) -> int:
        if "leaf_value" in node or "split_feature" not in node:
            leaf_value.append(float(node.get("leaf_value", 0.0)))
            return -len(leaf_value)
        if node.get("decision_type", "<=") != "<=":
            raise ValueError("only numerical '<=' splits are supported")
        index = len(feature)
        feature.append(int(node["split_feature"]))
        threshold.append(float(node["threshold"]))
        default_left.append(bool(node.get("default_left", True)))
        left.append(0)
        right.append(0)
        left[index] = visit(node["left_child"])
        right[index] = visit(node["right_child"])
        return index

    for tree in dump["tree_info"]:
        roots.append(visit(tree["tree_structure"]))
    return {
        "roots": np.asarray(roots, dtype=np.int32),
        "feature": np.asarray(feature, dtype=np.int32),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "default_left": np.asarray(default_left, dtype=np.bool_),
        "left": np.asarray(left, dtype=np.int32),
        "right": np.asarray(right, dtype=np.int32),
        "leaf_value": np.asarray(leaf_value, dtype=np.float64),
    }


def predict(trees: dict[str, npt.NDArray[Any]], x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Raw score (sum of the trees' leaves) of each row of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    cur = np.broadcast_to(trees["roots"], (n, len(trees["roots"]))).copy()
    rows = np.broadcast_to(np.arange(n)[:, None], cur.shape)
    while True:
        inner = cur >= 0
        if not inner.any():
            break
        node = cur[inner]
        value = x[rows[inner], trees["feature"][node]]
        go_left = np.where(
            np.isnan(value), trees["default_left"][node], value <= trees["threshold"][node]
        )
        cur[inner] = np.where(go_left, trees["left"][node], trees["right"][node])
    return trees["leaf_value"][-cur - 1].sum(axis=1)  # type: ignore[no-any-return]
