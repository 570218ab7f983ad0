"""Normalized token usage.

Every provider reports tokens differently; this is the one shape tokenomy prices.

- ``input_tokens`` is *all* prompt tokens, cached ones included (OpenAI's ``prompt_tokens``;
  for Anthropic it is ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
- ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of ``input_tokens`` read from
  or written to the provider's prompt cache.
- ``output_tokens`` is all generated tokens, reasoning included; ``reasoning_tokens`` is the
  part of them spent on reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _int(value: Any) -> int:
    """A token count as reported, or 0 (negative, boolean and non-integer values are not
    counts)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _detail(usage: dict[str, Any], details_key: str, key: str) -> int:
    details = usage.get(details_key)
    return _int(details.get(key)) if isinstance(details, dict) else 0


def from_openai_chat(usage: dict[str, Any]) -> Usage:
    """Chat/completions/embeddings usage: ``prompt_tokens`` already includes cached tokens.
    A part is never more than its whole (a garbled report must not price negative tokens)."""
    return _openai_shape(usage, "prompt_tokens", "completion_tokens")


def from_openai_responses(usage: dict[str, Any]) -> Usage:
    """Responses API usage: ``input_tokens`` includes cached tokens (parts capped at their
    whole, as for chat)."""
    return _openai_shape(usage, "input_tokens", "output_tokens")


def _openai_shape(usage: dict[str, Any], input_name: str, output_name: str) -> Usage:
    input_tokens = _int(usage.get(input_name))
    output_tokens = _int(usage.get(output_name))
    cached = _detail(usage, f"{input_name}_details", "cached_tokens")
    reasoning = _detail(usage, f"{output_name}_details", "reasoning_tokens")
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=min(cached, input_tokens),
        reasoning_tokens=min(reasoning, output_tokens),
    )


def from_anthropic(usage: dict[str, Any]) -> Usage:
    """Anthropic usage: ``input_tokens`` *excludes* cache reads and cache writes; thinking
    tokens are part of ``output_tokens`` and count as reasoning."""
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    output = _int(usage.get("output_tokens"))
    return Usage(
        input_tokens=_int(usage.get("input_tokens")) + cache_read + cache_write,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=min(_detail(usage, "output_tokens_details", "thinking_tokens"), output),
    )
