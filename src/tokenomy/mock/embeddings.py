"""Deterministic embeddings.

A vector is the normalised sum of one pseudo-random vector per word (SHAKE-256 of the
word), so the same text always gives the same vector and texts that share words have a
high cosine similarity: good enough to exercise a semantic cache without a model.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
import struct
from typing import Any

import orjson

from tokenomy import tokens
from tokenomy.mock.requests import BadRequest, load_object

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 8192
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=65536)
def _word_vector(word: str, dimensions: int) -> tuple[float, ...]:
    digest = hashlib.shake_256(word.encode()).digest(dimensions)
    return tuple((byte - 127.5) / 127.5 for byte in digest)


def embed(text: str, dimensions: int) -> list[float]:
    """Unit vector of ``dimensions`` floats for ``text``."""
    words = _WORD.findall(text.lower()) or [text]
    total = [0.0] * dimensions
    for word in words:
        for index, value in enumerate(_word_vector(word, dimensions)):
            total[index] += value
    norm = math.sqrt(sum(value * value for value in total)) or 1.0
    return [value / norm for value in total]


def _inputs(raw: Any) -> list[tuple[str, int]]:
    """(text to embed, prompt tokens) per input."""
    single_tokens = isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)
    if isinstance(raw, str) or single_tokens:
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise BadRequest("Invalid 'input': expected a non-empty string or array.", "input")
    items: list[tuple[str, int]] = []
    for item in raw:
        if isinstance(item, str) and item:
            items.append((item, tokens.count(item)))
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            items.append((" ".join(map(str, item)), len(item)))
        else:
            raise BadRequest(
                "Invalid 'input': each input must be a non-empty string or token array.", "input"
            )
    return items


def embeddings_body(body: bytes) -> bytes:
    """Validate an embeddings request and answer it (raises :class:`BadRequest`)."""
    data = load_object(body)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    if data.get("input") is None:
        raise BadRequest(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    items = _inputs(data["input"])
    dimensions = data.get("dimensions", DEFAULT_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool):
        raise BadRequest("Invalid type for 'dimensions': expected an integer.", "dimensions")
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        raise BadRequest(f"Invalid 'dimensions': must be 1..{MAX_DIMENSIONS}.", "dimensions")
    encoding = data.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("Invalid 'encoding_format': use 'float' or 'base64'.", "encoding_format")
    data_items: list[dict[str, Any]] = []
    for index, (text, _) in enumerate(items):
        vector = embed(text, dimensions)
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data_items.append({"object": "embedding", "index": index, "embedding": value})
    prompt_tokens = sum(count for _, count in items)
    return orjson.dumps(
        {
            "object": "list",
            "data": data_items,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )
