"""Reading routing data: per-prompt outcomes or pairwise preferences, as CSV.

Outcome data (the format of RouteLLM's MMLU evaluation, ``mmlu_dev.csv``): columns
``prompt``, ``weak_correct``, ``strong_correct`` (True/False, 1/0, yes/no); an optional
``subject`` (or ``group``) column groups the rows for cross-validation; others are ignored.

Pairwise preference data (as collected by an arena or by human/LLM judges): columns
``prompt`` and ``winner``. ``winner`` is ``strong``, ``weak``, ``tie`` (both good) or
``tie (bothbad)`` / ``both_bad``; it may instead name a model, matched against the
``strong_model`` / ``weak_model`` columns or the names given on the command line, or be
``model_a`` / ``model_b`` with ``model_a`` / ``model_b`` columns naming the models. Each
preference becomes an outcome pair (strong wins -> weak wrong, strong right; weak wins ->
weak right, strong wrong; tie -> both right; both bad -> both wrong), so one trainer and the
same metrics serve both kinds; "quality" then means the share of prompts answered well.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenomy.routing.learned.router import RouterError

_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}
_TIE_GOOD = {"tie", "both_good", "bothgood", "tie (bothgood)"}
_TIE_BAD = {"tie (bothbad)", "both_bad", "bothbad", "tie(bothbad)", "neither"}


@dataclass
class RoutingData:
    prompts: list[str]
    weak_correct: npt.NDArray[np.float64]
    strong_correct: npt.NDArray[np.float64]
    groups: npt.NDArray[Any] | None
    kind: str  # "outcomes" | "pairwise"
    path: str

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: npt.NDArray[np.intp]) -> RoutingData:
        return RoutingData(
            [self.prompts[i] for i in rows],
            self.weak_correct[rows],
            self.strong_correct[rows],
            None if self.groups is None else self.groups[rows],
            self.kind,
            self.path,
        )


def _bool(value: str, column: str, line: int) -> float:
    v = value.strip().lower()
    if v in _TRUE:
        return 1.0
    if v in _FALSE:
        return 0.0
    raise RouterError(f"line {line}: {column} must be True or False, not {value!r}")


def read(
    path: str | Path, strong_model: str | None = None, weak_model: str | None = None
) -> RoutingData:
    """Outcome or pairwise rows from a CSV file (``RouterError`` says what is wrong)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # Excel adds a BOM
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = list(reader)
    except FileNotFoundError:
        raise RouterError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RouterError(f"{path}: not a readable CSV file ({exc})") from None
    if "prompt" not in columns:
        raise RouterError(
            f"{path}: needs a 'prompt' column and either 'weak_correct' and 'strong_correct' "
            f"(outcomes) or 'winner' (pairwise preferences); found {columns or 'no header'}"
        )
    if not rows:
        raise RouterError(f"{path}: no rows")
    group_col = next((c for c in ("subject", "group") if c in columns), None)
    groups = np.array([r[group_col] or "" for r in rows]) if group_col else None
    prompts = [r["prompt"] or "" for r in rows]
    if "weak_correct" in columns and "strong_correct" in columns:
        w = np.array(
            [_bool(r["weak_correct"] or "", "weak_correct", i + 2) for i, r in enumerate(rows)]
        )
        t = np.array(
            [_bool(r["strong_correct"] or "", "strong_correct", i + 2) for i, r in enumerate(rows)]
        )
        return RoutingData(prompts, w, t, groups, "outcomes", str(path))
    if "winner" in columns:
        w_list, t_list = [], []
        for i, r in enumerate(rows):
            side = _winner_side(r, strong_model, weak_model, i + 2)
            w_list.append(1.0 if side in ("weak", "tie") else 0.0)
            t_list.append(1.0 if side in ("strong", "tie") else 0.0)
        return RoutingData(
            prompts, np.array(w_list), np.array(t_list), groups, "pairwise", str(path)
        )
    raise RouterError(
        f"{path}: needs 'weak_correct' and 'strong_correct' columns (outcomes) or a 'winner' "
        f"column (pairwise preferences); found {columns}"
    )


def _winner_side(row: dict[str, Any], strong: str | None, weak: str | None, line: int) -> str:
    """'strong', 'weak', 'tie' (both good) or 'bad' (both bad) for one preference row."""
    value = (row.get("winner") or "").strip()
    low = value.lower()
    if low in ("strong", "weak"):
        return low
    if low in _TIE_GOOD:
        return "tie"
    if low in _TIE_BAD:
        return "bad"
    if low in ("model_a", "model_b") and row.get(low):
        value = str(row[low]).strip()
    strong_name = strong or (row.get("strong_model") or "").strip()
    weak_name = weak or (row.get("weak_model") or "").strip()
    if strong_name and value == strong_name:
        return "strong"
    if weak_name and value == weak_name:
        return "weak"
    raise RouterError(
        f"line {line}: winner {value!r} is not strong, weak, tie or tie (bothbad), nor the "
        "strong or weak model's name (give them with --strong-model / --weak-model)"
    )
