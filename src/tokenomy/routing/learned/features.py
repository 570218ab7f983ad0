"""What the router sees of a prompt besides its embedding.

Multiple-choice prompts (``question\\nA. ...\\nB. ...\\nAnswer:``) are split into the stem
and the options, so the stem can be embedded on its own: a long list of options otherwise
fills MiniLM's token window and drowns out the question. Any other prompt is all stem.

The surface features are cheap counts that carry difficulty across subjects where the
embedding's topic does not: length, numbers and arithmetic, formal-logic statements,
negations ("EXCEPT", "NOT"), code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_OPTION = re.compile(r"\n(?=[A-J][.)] )")
_ANSWER_TAIL = re.compile(r"\s*\n?Answer:\s*$")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MATH = re.compile(r"[=+\-*/^<>√∫∑π≤≥≠±\u00d7÷%]|\\[a-z]+|\b(?:sqrt|log|sin|cos|mod)\b")
_NEGATION = re.compile(r"\b(?:NOT|EXCEPT|LEAST|FALSE|never|incorrect)\b")
_STATEMENT = re.compile(r"Statement \d\s*\|")
_CODE = re.compile(r"[{};]|\bdef |\breturn\b|\bprint\(|==|!=")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Parts:
    stem: str
    options: list[str]


def split_prompt(prompt: str) -> Parts:
    """The question and its options (none for a prompt that is not multiple choice)."""
    body = _ANSWER_TAIL.sub("", prompt)
    pieces = _OPTION.split(body)
    if len(pieces) < 3:  # fewer than two options: not multiple choice
        return Parts(prompt.strip(), [])
    return Parts(pieces[0].strip(), [p[3:].strip() for p in pieces[1:]])


SURFACE_NAMES = (
    "log_stem_chars",
    "log_stem_words",
    "log_option_chars",
    "max_option_share",
    "n_options",
    "numbers_per_word",
    "log_numbers",
    "math_per_char",
    "log_math",
    "negation",
    "statements",
    "code_per_char",
    "newlines",
    "question_marks",
    "mean_word_len",
    "upper_share",
)


def surface(prompt: str) -> list[float]:
    """Surface features of one prompt, in the order of ``SURFACE_NAMES``."""
    parts = split_prompt(prompt)
    stem = parts.stem
    words = _WORD.findall(prompt)
    n_words = max(len(words), 1)
    option_chars = [len(o) for o in parts.options]
    total_opt = sum(option_chars)
    numbers = len(_NUMBER.findall(prompt))
    maths = len(_MATH.findall(prompt))
    chars = max(len(prompt), 1)
    letters = [c for c in prompt if c.isalpha()]
    return [
        math.log1p(len(stem)),
        math.log1p(len(_WORD.findall(stem))),
        math.log1p(total_opt),
        (max(option_chars) / total_opt) if total_opt else 0.0,
        float(len(parts.options)),
        numbers / n_words,
        math.log1p(numbers),
        maths / chars,
        math.log1p(maths),
        float(bool(_NEGATION.search(stem))),
        float(bool(_STATEMENT.search(stem))),
        len(_CODE.findall(prompt)) / chars,
        math.log1p(prompt.count("\n")),
        math.log1p(prompt.count("?")),
        sum(len(w) for w in words) / n_words,
        (sum(c.isupper() for c in letters) / len(letters)) if letters else 0.0,
    ]


def surface_matrix(prompts: list[str]) -> npt.NDArray[np.float32]:
    return np.asarray([surface(p) for p in prompts], dtype=np.float32).reshape(
        len(prompts), len(SURFACE_NAMES)
    )


def stems(prompts: list[str]) -> list[str]:
    return [split_prompt(p).stem for p in prompts]


def options_text(prompts: list[str]) -> list[str]:
    """The options joined into one text ('' for a prompt without options)."""
    return [" | ".join(split_prompt(p).options) for p in prompts]
