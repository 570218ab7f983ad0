"""Parsing and validation of request bodies and of the ``x-mock-*`` headers.

Validation follows the real APIs closely enough that SDKs and the gateway see the same
400s: the message names the field in ``param``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from tokenomy import tokens
from tokenomy.mock.options import Fault
from tokenomy.mock.text import Generation, completion_pieces

FAULT_HEADER = b"x-mock-fault"
SEQUENCE_HEADER = b"x-mock-fault-sequence"
COMPLETION_TOKENS_HEADER = b"x-mock-completion-tokens"
LATENCY_HEADER = b"x-mock-latency-ms"
# Larger completions are refused (400), as a real model refuses max_tokens over its limit.
MAX_COMPLETION_TOKENS = 262_144


class BadRequest(Exception):
    """A 400 (or other client error) answered in the dialect of the route."""

    def __init__(
        self, message: str, param: str | None = None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Directives:
    """What the caller asked of the mock itself through headers."""

    fault: Fault | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    # Faults in turn ("ok": none), for successive requests sending the same sequence.
    sequence: tuple[Fault | None, ...] = ()


NO_DIRECTIVES = Directives()


def _header_number(name: bytes, value: bytes, minimum: float, maximum: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not minimum <= number <= maximum:
        raise BadRequest(f"Invalid {name.decode()} header: {value.decode(errors='replace')!r}")
    return number


def parse_directives(headers: list[tuple[bytes, bytes]]) -> Directives:
    fault: Fault | None = None
    completion: int | None = None
    latency: float | None = None
    sequence: tuple[Fault | None, ...] = ()
    seen = False
    for name, value in headers:
        if not name.startswith(b"x-mock-"):
            continue
        seen = True
        if name == FAULT_HEADER:
            fault = _fault(value.decode(errors="replace"))
        elif name == SEQUENCE_HEADER:
            items = value.decode(errors="replace").split(",")
            sequence = tuple(None if i.strip() == "ok" else _fault(i) for i in items)
        elif name == COMPLETION_TOKENS_HEADER:
            number = _header_number(name, value, 1, MAX_COMPLETION_TOKENS)
            if not number.is_integer():
                raise BadRequest(f"Invalid {name.decode()} header: expected an integer")
            completion = int(number)
        elif name == LATENCY_HEADER:
            latency = _header_number(name, value, 0, 3_600_000)
    if not seen:
        return NO_DIRECTIVES
    return Directives(fault, completion, latency, sequence)


def _fault(text: str) -> Fault:
    try:
        return Fault(text.strip().lower())
    except ValueError:
        allowed = ", ".join(f.value for f in Fault)
        raise BadRequest(f"Unknown x-mock-fault {text!r}; use one of {allowed} (or ok)") from None


def load_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "We could not parse the JSON body of your request. The API expects a JSON payload."
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise BadRequest(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        raise BadRequest("Invalid 'model': expected a non-empty string.", "model", "invalid_type")
    return model


def _max_tokens(data: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(
                f"Invalid type for '{name}': expected an integer.", name, "invalid_type"
            )
        if value < 1:
            raise BadRequest(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                f"but got {value} instead.",
                name,
                "integer_below_min_value",
            )
        if value > MAX_COMPLETION_TOKENS:
            raise BadRequest(
                f"Invalid '{name}': integer above maximum value. Expected a value <= "
                f"{MAX_COMPLETION_TOKENS}, but got {value} instead.",
                name,
                "integer_above_max_value",
            )
        return value
    return None


def _required_list(data: dict[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if value is None:
        raise BadRequest(
            f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
        )
    if not isinstance(value, list):
        raise BadRequest(f"Invalid type for '{name}': expected an array.", name, "invalid_type")
    if not value:
        raise BadRequest(
            f"Invalid '{name}': empty array. Expected an array with minimum length 1.",
            name,
            "empty_array",
        )
    return value


def _generation(
    model: str,
    prompt_tokens: int,
    prompt_key: bytes,
    requested_max: int | None,
    data: dict[str, Any],
    directives: Directives,
    default_tokens: int,
) -> Generation:
    if directives.completion_tokens is not None:
        n = directives.completion_tokens
    elif requested_max is not None:
        n = requested_max
    else:
        n = default_tokens
    stream_options = data.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return Generation(
        model=model,
        prompt_tokens=prompt_tokens,
        pieces=completion_pieces(prompt_key, n),
        stream=data.get("stream") is True,
        include_usage=include_usage,
        hit_limit=requested_max is not None and n >= requested_max,
    )


def parse_chat(body: bytes, directives: Directives, default_tokens: int) -> Generation:
    data = load_object(body)
    model = _model(data)
    messages = _required_list(data, "messages")
    limit = _max_tokens(data, "max_completion_tokens", "max_tokens")
    key = orjson.dumps(messages)
    count = tokens.count_chat(messages)
    return _generation(model, count, key, limit, data, directives, default_tokens)


def _prompt_tokens(prompt: Any, name: str) -> int:
    """Tokens of a string, a list of strings, a token array or a list of token arrays."""
    if isinstance(prompt, str):
        return tokens.count(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, int) and not isinstance(item, bool) for item in prompt):
            return len(prompt)
        total = 0
        for item in prompt:
            if isinstance(item, str):
                total += tokens.count(item)
            elif isinstance(item, list) and all(isinstance(t, int) for t in item):
                total += len(item)
            else:
                break
        else:
            return total
    raise BadRequest(
        f"Invalid '{name}': expected a string, an array of strings or an array of token arrays.",
        name,
        "invalid_type",
    )


def parse_completion(body: bytes, directives: Directives, default_tokens: int) -> Generation:
    data = load_object(body)
    model = _model(data)
    if data.get("prompt") is None:
        raise BadRequest(
            "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
        )
    count = _prompt_tokens(data["prompt"], "prompt")
    limit = _max_tokens(data, "max_tokens")
    key = orjson.dumps(data["prompt"])
    return _generation(model, count, key, limit, data, directives, default_tokens)


def parse_responses(body: bytes, directives: Directives, default_tokens: int) -> Generation:
    data = load_object(body)
    model = _model(data)
    raw = data.get("input")
    if raw is None:
        raise BadRequest(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    if isinstance(raw, str):
        items: list[Any] = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise BadRequest("Invalid 'input': expected a string or an array of items.", "input")
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("Invalid type for 'instructions': expected a string.", "instructions")
    if instructions:
        items = [{"role": "system", "content": instructions}, *items]
    limit = _max_tokens(data, "max_output_tokens")
    count = tokens.count_chat(items)
    return _generation(model, count, orjson.dumps(items), limit, data, directives, default_tokens)


def parse_messages(body: bytes, directives: Directives, default_tokens: int) -> Generation:
    """Anthropic Messages: ``max_tokens`` is required there, as in the real API."""
    data = load_object(body)
    for name in ("model", "messages", "max_tokens"):
        if data.get(name) is None:
            raise BadRequest(f"{name}: Field required", name)
    model = _model(data)
    messages = _required_list(data, "messages")
    limit = _max_tokens(data, "max_tokens")
    system = data.get("system")
    if system is not None and not isinstance(system, str | list):
        raise BadRequest("system: Input should be a valid string or list of blocks", "system")
    items = [{"role": "system", "content": system}, *messages] if system else messages
    count = tokens.count_chat(items)
    return _generation(model, count, orjson.dumps(items), limit, data, directives, default_tokens)
