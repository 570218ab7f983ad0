"""OpenAI Chat Completions -> Anthropic Messages: request translation (pure, plain dicts).

The other direction lives in :mod:`~tokenomy.upstream.anthropic_response` (responses,
usage, errors) and :mod:`~tokenomy.upstream.anthropic_stream` (SSE streams); their public
names are re-exported here, so this module is the one to import.

- ``system``/``developer`` messages become the top-level ``system`` (wherever they appear);
- ``tool`` messages become ``tool_result`` blocks of a user turn; consecutive turns of the
  same role are merged (tool results and a following user message share one turn);
- ``max_completion_tokens`` / ``max_tokens`` -> ``max_tokens``, ``default_max_tokens``
  when absent (Anthropic requires it);
- ``temperature`` is clamped to Anthropic's 0..1; ``temperature``, ``top_p`` (and
  ``top_k``) are left out when ``sampling=False``, for models or API versions that
  reject sampling parameters;
- ``response_format`` ``json_schema`` -> ``output_config.format``; ``json_object`` is
  dropped (OpenAI already requires the prompt itself to ask for JSON);
- ignored: ``seed``, penalties, ``reasoning_effort``, ``store``, ``metadata``,
  ``service_tier``, ``stream_options`` (see the stream translator), ``prediction``;
- refused with :class:`~tokenomy.errors.InvalidRequest` naming the field: ``n`` > 1,
  ``logprobs``, ``logit_bias``, audio, ``functions``/``function_call``, web search,
  unknown roles or content parts, malformed tool calls.
"""

from __future__ import annotations

from typing import Any

from tokenomy.errors import InvalidRequest
from tokenomy.upstream.anthropic_response import (
    anthropic_error_to_openai,
    anthropic_usage,
    finish_reason,
    from_anthropic_response,
    openai_status_for,
    openai_usage,
)
from tokenomy.upstream.anthropic_stream import AnthropicStreamTranslator
from tokenomy.upstream.anthropic_tools import tool_use_block, translate_tools

__all__ = [
    "AnthropicStreamTranslator",
    "anthropic_error_to_openai",
    "anthropic_usage",
    "finish_reason",
    "from_anthropic_response",
    "openai_status_for",
    "openai_usage",
    "to_anthropic_request",
]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_REFUSED_IF_SET = ("functions", "function_call", "audio", "web_search_options")


def to_anthropic_request(
    body: dict[str, Any], upstream_model: str, default_max_tokens: int, *, sampling: bool = True
) -> dict[str, Any]:
    """Translate an OpenAI chat completion request body into a Messages API body."""
    _refuse_untranslatable(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{param} must be an object.", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content"), f"{param}.content"))
        elif role == "user":
            _add_turn(turns, "user", _user_blocks(message.get("content"), f"{param}.content"))
        elif role == "assistant":
            _add_turn(turns, "assistant", _assistant_blocks(message, param))
        elif role == "tool":
            _add_turn(turns, "user", [_tool_result(message, param)])
        else:
            raise InvalidRequest(
                f"Unsupported role {role!r} in {param}; expected system, developer, user, "
                "assistant or tool.",
                param=f"{param}.role",
            )
    if not turns:
        raise InvalidRequest(
            "'messages' needs at least one user or assistant message with content.",
            param="messages",
        )
    out: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": _max_tokens(body, default_max_tokens),
        "messages": [_compact(turn) for turn in turns],
    }
    if system:
        plain = len(system) == 1 and set(system[0]) == {"type", "text"}
        out["system"] = system[0]["text"] if plain else system
    if sampling:
        _sampling(body, out)
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    translate_tools(body, out)
    output_format = _output_format(body.get("response_format"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out


def _refuse_untranslatable(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("Only n=1 is supported for this model.", param="n")
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise InvalidRequest("Log probabilities are not available for this model.", param=param)
    if body.get("logit_bias"):
        raise InvalidRequest("logit_bias is not supported for this model.", param="logit_bias")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise InvalidRequest("Only text output is supported for this model.", param="modalities")
    for key in _REFUSED_IF_SET:
        if body.get(key):
            raise InvalidRequest(f"'{key}' is not supported for this model.", param=key)


def _add_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _compact(turn: dict[str, Any]) -> dict[str, Any]:
    """A turn that is one plain text block is sent as a string, like clients write it."""
    blocks = turn["content"]
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"} and blocks[0]["type"] == "text":
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return turn


def _text_block(text: Any, part: dict[str, Any] | None, param: str) -> list[dict[str, Any]]:
    if not isinstance(text, str):
        raise InvalidRequest(f"{param} must be a string.", param=param)
    if not text:
        return []  # Anthropic rejects empty text blocks
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return [block]


def _parts(content: Any, param: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or an array of parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{param}[{j}] must be an object.", param=f"{param}[{j}]")
        parts.append((f"{param}[{j}]", part))
    return parts


def _text_parts(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return _text_block(content, None, param)
    blocks: list[dict[str, Any]] = []
    for p, part in _parts(content, param):
        if part.get("type") != "text":
            raise InvalidRequest(f"Only text parts are allowed in {param}.", param=f"{p}.type")
        blocks.extend(_text_block(part.get("text"), part, f"{p}.text"))
    return blocks


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return _text_block(content, None, param)
    blocks: list[dict[str, Any]] = []
    for p, part in _parts(content, param):
        kind = part.get("type")
        if kind == "text":
            blocks.extend(_text_block(part.get("text"), part, f"{p}.text"))
        elif kind == "image_url":
            blocks.append(_image_block(part, p))
        elif kind == "file":
            blocks.append(_document_block(part, p))
        else:
            raise InvalidRequest(
                f"Content part type {kind!r} is not supported for this model.", param=f"{p}.type"
            )
    return blocks


def _data_url(url: str, param: str) -> tuple[str, str]:
    header, comma, data = url.partition(",")
    media_type, _, encoding = header[len("data:") :].partition(";")
    if not comma or encoding.lower() != "base64" or not data:
        raise InvalidRequest(f"{param} must be a base64 data URL.", param=param)
    return media_type.lower(), data


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    param = f"{param}.image_url.url"
    if not isinstance(url, str):
        raise InvalidRequest(f"{param} must be a string.", param=param)
    block: dict[str, Any]
    if url.startswith("data:"):
        media_type, data = _data_url(url, param)
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"Image type {media_type!r} is not supported; use JPEG, PNG, GIF or WebP.",
                param=param,
            )
        block = {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    elif url.startswith(("https://", "http://")):
        block = {"type": "image", "source": {"type": "url", "url": url}}
    else:
        raise InvalidRequest(f"{param} must be an http(s) or data: URL.", param=param)
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _document_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, dict) else None
    param = f"{param}.file.file_data"
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise InvalidRequest("Only inline PDF files (file_data) are supported.", param=param)
    media_type, data = _data_url(data_url, param)
    if media_type != "application/pdf":
        raise InvalidRequest("Only PDF files are supported for this model.", param=param)
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "document", "source": source}


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        blocks.extend(_text_block(content, None, f"{param}.content"))
    elif content is not None:
        for p, part in _parts(content, f"{param}.content"):
            kind = part.get("type")
            if kind not in ("text", "refusal"):
                raise InvalidRequest(
                    f"Content part type {kind!r} is not allowed in assistant messages.",
                    param=f"{p}.type",
                )
            blocks.extend(_text_block(part.get(kind), part, f"{p}.{kind}"))
    tool_calls = message.get("tool_calls")
    if tool_calls:
        if not isinstance(tool_calls, list):
            raise InvalidRequest("tool_calls must be an array.", param=f"{param}.tool_calls")
        for k, call in enumerate(tool_calls):
            blocks.append(tool_use_block(call, f"{param}.tool_calls[{k}]"))
    return blocks


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("A tool message needs tool_call_id.", param=f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        parts = _text_parts(content, f"{param}.content")
        if parts:
            block["content"] = parts
    return block


def _max_tokens(body: dict[str, Any], default: int) -> int:
    param = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    value = body.get(param)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"'{param}' must be a positive integer.", param=param)
    return value


def _number(body: dict[str, Any], key: str, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise InvalidRequest(f"'{key}' must be a number between 0 and {high:g}.", param=key)
    return value


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    temperature = _number(body, "temperature", 2)
    if temperature is not None:
        out["temperature"] = min(temperature, 1.0)  # OpenAI allows up to 2, Anthropic 1
    top_p = _number(body, "top_p", 1)
    if top_p is not None:
        out["top_p"] = top_p
    top_k = body.get("top_k")  # not OpenAI's, but sent by clients that know Anthropic
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        out["top_k"] = top_k


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise InvalidRequest("'stop' must be a string or an array of strings.", param="stop")


def _output_format(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in ("text", "json_object"):
        return None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema.schema must be an object.",
                param="response_format.json_schema.schema",
            )
        return {"type": "json_schema", "schema": schema}
    raise InvalidRequest(
        "response_format.type must be 'text', 'json_object' or 'json_schema'.",
        param="response_format",
    )
