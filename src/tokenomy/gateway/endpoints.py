"""The proxied OpenAI routes: how each one is validated, counted and estimated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenomy import tokens
from tokenomy.errors import InvalidRequest
from tokenomy.usage import Usage, from_openai_chat, from_openai_responses

# Arrays and objects nested deeper than this are refused: orjson parses 1,024 levels but
# serializes only 255, and the recursive walks over prompts would exhaust the stack first.
# OpenAI's own JSON schemas for structured outputs nest at most 10 levels.
MAX_JSON_DEPTH = 128


def nesting_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (the
    value itself is level one). Iterative, level by level: no recursion to exhaust."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        below: list[Any] = []
        for node in level:
            items = node.values() if isinstance(node, dict) else node
            below.extend(item for item in items if isinstance(item, dict | list))
        if not below:
            return False
        level = below
    return True


def check_nesting(payload: Any, raw: bytes | None = None) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` with a 400. With the raw
    bytes, a body with few brackets in all is passed without walking it."""
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    if nesting_too_deep(payload):
        raise InvalidRequest(
            f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
        )


def _require_model(payload: dict[str, Any]) -> None:
    model = payload.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must be a non-empty string", param="model")


def _required(payload: dict[str, Any], name: str) -> Any:
    value = payload.get(name)
    if value is None:
        raise InvalidRequest(f"missing required parameter: '{name}'", param=name)
    return value


def _check_common(payload: dict[str, Any]) -> None:
    _require_model(payload)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = payload.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise InvalidRequest(f"{name} must be a positive integer", param=name)
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("stream_options must be an object", param="stream_options")


def _validate_chat(payload: dict[str, Any]) -> None:
    _check_common(payload)
    messages = _required(payload, "messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str):
            raise InvalidRequest(
                f"messages[{index}].role is missing or not a string",
                param=f"messages[{index}].role",
            )


def _validate_completion(payload: dict[str, Any]) -> None:
    _check_common(payload)
    prompt = _required(payload, "prompt")
    if not isinstance(prompt, str | list):
        raise InvalidRequest("prompt must be a string or an array", param="prompt")


def _validate_embedding(payload: dict[str, Any]) -> None:
    _require_model(payload)
    value = _required(payload, "input")
    if not isinstance(value, str | list) or value == [] or value == "":
        raise InvalidRequest("input must be a non-empty string or array", param="input")


def _validate_response(payload: dict[str, Any]) -> None:
    _check_common(payload)
    value = _required(payload, "input")
    if not isinstance(value, str | list):
        raise InvalidRequest("input must be a string or an array of items", param="input")


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        return "".join(
            _text_of(value.get(key)) for key in ("content", "text", "input", "instructions")
        )
    return ""


def _estimate_chat(payload: dict[str, Any]) -> int:
    return tokens.count_chat(payload.get("messages") or [])


def _estimate_prompt(field: str) -> Callable[[dict[str, Any]], int]:
    def estimate(payload: dict[str, Any]) -> int:
        value = payload.get(field)
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return len(value)  # already token ids
        return tokens.count(_text_of(value) + _text_of(payload.get("instructions")))

    return estimate


def _chat_delta_text(chunk: dict[str, Any]) -> str:
    parts = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if isinstance(content, str):
            parts.append(content)
        for call in delta.get("tool_calls") or ():
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str):
                parts.append(arguments)
    return "".join(parts)


def _completion_delta_text(chunk: dict[str, Any]) -> str:
    return "".join(
        choice.get("text") or ""
        for choice in chunk.get("choices") or ()
        if isinstance(choice, dict)
    )


def _response_delta_text(chunk: dict[str, Any]) -> str:
    delta = chunk.get("delta")
    return delta if isinstance(delta, str) else ""


def _chat_stream_usage(chunk: dict[str, Any]) -> Usage | None:
    usage = chunk.get("usage")
    return from_openai_chat(usage) if isinstance(usage, dict) else None


def _response_stream_usage(chunk: dict[str, Any]) -> Usage | None:
    response = chunk.get("response")
    if isinstance(response, dict) and isinstance(response.get("usage"), dict):
        return from_openai_responses(response["usage"])
    return None


def _openai_usage(body: dict[str, Any]) -> Usage | None:
    usage = body.get("usage")
    return from_openai_chat(usage) if isinstance(usage, dict) else None


def _responses_usage(body: dict[str, Any]) -> Usage | None:
    usage = body.get("usage")
    return from_openai_responses(usage) if isinstance(usage, dict) else None


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    upstream_path: str
    model_kind: str
    validate: Callable[[dict[str, Any]], None]
    usage_of: Callable[[dict[str, Any]], Usage | None]
    estimate_input: Callable[[dict[str, Any]], int]
    stream_usage_of: Callable[[dict[str, Any]], Usage | None]
    delta_text_of: Callable[[dict[str, Any]], str]
    # The upstream needs stream_options.include_usage to report usage on streams.
    wants_stream_usage_option: bool = True
    output_limit_field: str = "max_tokens"
    # Streams end with `data: [DONE]`, or (Responses API) with one of these event types.
    terminal_events: frozenset[str] = frozenset()


CHAT = Endpoint(
    "chat.completions",
    "/chat/completions",
    "chat",
    _validate_chat,
    _openai_usage,
    _estimate_chat,
    _chat_stream_usage,
    _chat_delta_text,
)
COMPLETIONS = Endpoint(
    "completions",
    "/completions",
    "chat",
    _validate_completion,
    _openai_usage,
    _estimate_prompt("prompt"),
    _chat_stream_usage,
    _completion_delta_text,
)
EMBEDDINGS = Endpoint(
    "embeddings",
    "/embeddings",
    "embedding",
    _validate_embedding,
    _openai_usage,
    _estimate_prompt("input"),
    _chat_stream_usage,
    _completion_delta_text,
    wants_stream_usage_option=False,
)
RESPONSES = Endpoint(
    "responses",
    "/responses",
    "chat",
    _validate_response,
    _responses_usage,
    _estimate_prompt("input"),
    _response_stream_usage,
    _response_delta_text,
    wants_stream_usage_option=False,  # the Responses API always reports usage at the end
    output_limit_field="max_output_tokens",
    terminal_events=frozenset({"response.completed", "response.incomplete", "response.failed"}),
)

ROUTES: dict[str, Endpoint] = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": COMPLETIONS,
    "/v1/embeddings": EMBEDDINGS,
    "/v1/responses": RESPONSES,
}
