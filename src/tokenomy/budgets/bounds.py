"""Upper bounds on a request's tokens, for holding its worst-case cost.

Every tokenizer in use (byte-level BPE, SentencePiece with byte fallback) spends at least
one byte of text per token, so the UTF-8 size of the prompt bounds its tokens whatever the
model. That bound is loose (about 4 bytes a token in English), so when it would refuse a
request, models with a known OpenAI tokenizer are counted exactly (plus a margin for
framing) before giving up.
"""

from __future__ import annotations

from typing import Any

from tokenomy import tokens

# Per-message framing and reply priming (OpenAI documents 3 + 3; others are similar).
TOKENS_PER_MESSAGE = 8
BASE_TOKENS = 16
# An image costs at most this many tokens at the largest size providers accept.
TOKENS_PER_IMAGE = 2_500
EXACT_MARGIN = 1.02  # on an exact count, for framing we do not model
EXACT_SLACK = 32


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


_IMAGE_TYPES = frozenset(("image_url", "input_image", "image"))


def _walk(value: Any) -> int:
    """Bytes of all text in a JSON value; images count as a fixed token budget."""
    kind = type(value)
    if kind is str:
        return len(value) if value.isascii() else _utf8_size(value)
    if kind is list:
        total = 0
        for item in value:
            total += _walk(item)
        return total
    if kind is dict:
        if value.get("type") in _IMAGE_TYPES or "image_url" in value:
            return TOKENS_PER_IMAGE
        total = 0
        for key, item in value.items():
            if key != "cache_control":
                total += (len(key) if key.isascii() else _utf8_size(key)) + _walk(item)
        return total
    if kind is int or kind is float:
        return 8  # a number's digits
    return _walk_other(value)


def _walk_other(value: Any) -> int:
    """Booleans, None and subclasses of the JSON types (parsed JSON has none of the
    latter; the exact-type checks above are the request path's fast path)."""
    if isinstance(value, str):
        return _utf8_size(value)
    if isinstance(value, list):
        return sum(_walk(item) for item in value)
    if isinstance(value, dict):
        return _walk(dict(value))
    return 8 if isinstance(value, int | float) else 0


_PROMPT_FIELDS = ("messages", "prompt", "input", "instructions", "tools", "functions", "system")


def byte_bound(payload: dict[str, Any]) -> int:
    """Tokens the prompt can at most cost, from its size in bytes."""
    total = BASE_TOKENS
    for name in _PROMPT_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if name == "prompt" and isinstance(value, list) and value and isinstance(value[0], int):
            total += len(value)  # already token ids
            continue
        if name == "input" and isinstance(value, list) and value and isinstance(value[0], int):
            total += len(value)
            continue
        total += _walk(value)
        if isinstance(value, list) and name == "messages":
            total += TOKENS_PER_MESSAGE * len(value)
    return total


def exact_bound(payload: dict[str, Any], encoding: str) -> int:
    """Tokens counted with the model's own tokenizer, plus a margin; no tighter bound exists."""
    total = 0
    for name in _PROMPT_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if name == "messages" and isinstance(value, list):
            total += tokens.count_chat(value, encoding) + _images(value) * TOKENS_PER_IMAGE
        elif isinstance(value, list) and value and isinstance(value[0], int):
            total += len(value)
        else:
            total += tokens.count(_text(value), encoding) + _images(value) * TOKENS_PER_IMAGE
    return int(total * EXACT_MARGIN) + EXACT_SLACK


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k} {_text(v)}" for k, v in value.items())
    return ""


def _images(value: Any) -> int:
    if isinstance(value, list):
        return sum(_images(v) for v in value)
    if isinstance(value, dict):
        if value.get("type") in ("image_url", "input_image", "image"):
            return 1
        return sum(_images(v) for v in value.values())
    return 0


def output_limit(payload: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
