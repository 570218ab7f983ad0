"""The cascade's check: is the cheap model's answer good enough to return (FrugalGPT's
idea, with configurable rules instead of a trained scorer)? Any failing rule escalates."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import orjson

from tokenomy.config import CascadeCheck
from tokenomy.usage import Usage


@cache
def _patterns(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


def escalation_reason(
    answer: dict[str, Any], payload: dict[str, Any], usage: Usage, check: CascadeCheck
) -> str | None:
    """Why this chat answer is not good enough (None: it is)."""
    choices = answer.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return "no choice"
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish not in check.finish_reasons:
        return f"finish_reason={finish}"
    if usage.output_tokens < check.min_output_tokens:
        return "too short"
    message = choice.get("message") or {}
    if message.get("refusal"):
        return "refusal"
    text = message.get("content") or ""
    for pattern in _patterns(tuple(check.refusal_patterns)):
        if pattern.search(text):
            return "declined"
    response_format = payload.get("response_format")
    wants_json = isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    if check.json_valid and wants_json and not message.get("tool_calls"):
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            return "invalid JSON"
    return None
