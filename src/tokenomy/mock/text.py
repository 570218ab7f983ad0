"""Deterministic completions and usage figures.

Completion text: words drawn by a small LCG seeded from a CRC-32 of the prompt. Every
piece (a capitalised first word, `` word`` for the rest, a final ``.``) is exactly one
o200k_base token and o200k's pre-tokenizer never merges them, so the text of ``n`` pieces
tokenizes to exactly ``n`` tokens and a stream of ``n`` chunks carries ``n`` tokens.

Prompt caching: a prompt of at least 1024 tokens reports
``cached = (prompt_tokens // 2) // 128 * 128`` tokens read from cache (OpenAI counts them
inside ``prompt_tokens``; Anthropic reports them as ``cache_read_input_tokens`` and leaves
them out of ``input_tokens``). Nothing is ever reported as a cache write.

Reasoning: a model whose name contains ``reason`` spends ``completion_tokens // 2`` of its
completion tokens on reasoning (included in ``completion_tokens`` / ``output_tokens``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# Each word is one o200k token, capitalised and with a leading space.
_WORD_LIST = (
    "the of and to in is that for it as with was on be by at this from or an are not but have "
    "which one all they were can their more has will there some what about when other time so "
    "into only new its also after first would could these people may any most over such like "
    "very just made where through"
)
_WORDS = tuple(_WORD_LIST.split())
_MASK = len(_WORDS) - 1  # 64 words: a power of two
_CAPITALISED = tuple(word.capitalize() for word in _WORDS)
_SPACED = tuple(" " + word for word in _WORDS)
CACHE_MIN_PROMPT_TOKENS = 1024
CACHE_BLOCK = 128


def completion_pieces(prompt_key: bytes, n: int) -> list[str]:
    """``n`` text pieces of one token each, the same for the same prompt."""
    state = zlib.crc32(prompt_key) or 1
    pieces: list[str] = []
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        index = (state >> 40) & _MASK
        if i == 0:
            pieces.append(_CAPITALISED[index])
        elif i == n - 1 and n >= 3:
            pieces.append(".")
        else:
            pieces.append(_SPACED[index])
    return pieces


def cached_tokens(prompt_tokens: int) -> int:
    if prompt_tokens < CACHE_MIN_PROMPT_TOKENS:
        return 0
    return (prompt_tokens // 2) // CACHE_BLOCK * CACHE_BLOCK


def reasoning_tokens(model: str, completion_tokens: int) -> int:
    return completion_tokens // 2 if "reason" in model else 0


@dataclass(frozen=True, slots=True)
class Generation:
    """A validated generation request, whatever API it came through."""

    model: str
    prompt_tokens: int
    pieces: list[str]
    stream: bool
    include_usage: bool
    hit_limit: bool  # the completion stopped at the caller's max tokens

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)

    @property
    def cached_tokens(self) -> int:
        return cached_tokens(self.prompt_tokens)

    @property
    def reasoning_tokens(self) -> int:
        return reasoning_tokens(self.model, len(self.pieces))

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def openai_usage(self) -> dict[str, object]:
        completion = len(self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
