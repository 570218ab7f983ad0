"""OpenAI <-> Anthropic translation: requests, responses, usage, streams, SSE, errors.

Anthropic fixtures follow the Messages API documentation and are checked against the
installed ``anthropic`` SDK's types; every OpenAI object produced is checked against the
installed ``openai`` SDK's types, and streams are replayed through the ``openai`` SDK's own
chunk accumulator, as a client would.
"""

from __future__ import annotations

import random
from typing import Any

import anthropic.types as at
import orjson
import pytest
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from anthropic.types.shared.error_response import ErrorResponse
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from tokenomy.errors import InvalidRequest, UpstreamError
from tokenomy.upstream.anthropic_format import (
    AnthropicStreamTranslator,
    anthropic_error_to_openai,
    from_anthropic_response,
    openai_status_for,
    to_anthropic_request,
)
from tokenomy.upstream.sse import SSEParser
from tokenomy.usage import Usage

PNG_B64 = (  # a real 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}

# ------------------------------------------------------------------ request validation

_BLOCK_TYPES: dict[str, Any] = {
    "text": at.TextBlockParam,
    "image": at.ImageBlockParam,
    "document": at.DocumentBlockParam,
    "tool_use": at.ToolUseBlockParam,
    "tool_result": at.ToolResultBlockParam,
}
_SAMPLING = {"temperature", "top_p", "top_k"}  # accepted by anthropic-version 2023-06-01


def _keys(typed_dict: Any) -> frozenset[str]:
    return frozenset(typed_dict.__required_keys__ | typed_dict.__optional_keys__)


def _strict(typed_dict: Any, value: dict[str, Any]) -> None:
    TypeAdapter(typed_dict).validate_python(value)
    assert set(value) <= _keys(typed_dict), set(value) - _keys(typed_dict)


def assert_valid_anthropic_request(req: dict[str, Any]) -> None:
    """Validate against the SDK's request TypedDicts, eagerly and without extra keys."""
    params = MessageCreateParamsStreaming if req.get("stream") else MessageCreateParamsNonStreaming
    _strict(params, {k: v for k, v in req.items() if k not in _SAMPLING})
    assert req["messages"], "no messages"
    for message in req["messages"]:
        role_type = at.UserMessageParam if message["role"] == "user" else at.AssistantMessageParam
        _strict(role_type, message)
        if isinstance(message["content"], list):
            for block in message["content"]:
                _strict(_BLOCK_TYPES[block["type"]], block)
    for tool in req.get("tools", []):
        _strict(at.ToolParam, tool)
    if "tool_choice" in req:
        TypeAdapter(at.ToolChoiceParam).validate_python(req["tool_choice"])
    if isinstance(req.get("system"), list):
        for block in req["system"]:
            _strict(at.TextBlockParam, block)


def test_validator_rejects_bad_shapes() -> None:
    """The validator used below is not a tautology."""
    good = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert_valid_anthropic_request(good)
    bad_block = {**good, "messages": [{"role": "user", "content": [{"type": "text"}]}]}
    extra_key = {**good, "messages": [{"role": "user", "content": "x", "name": "bob"}]}
    bad_media = {
        **good,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/svg+xml", "data": "x"},
                    }
                ],
            }
        ],
    }
    for bad in (bad_block, extra_key, bad_media, {**good, "tool_choice": {"type": "required"}}):
        with pytest.raises(Exception):  # noqa: B017 - pydantic or assertion
            assert_valid_anthropic_request(bad)


# ---------------------------------------------------------------------------- requests


def test_full_conversation_translates_to_a_valid_messages_request() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris? Also, what is in these images?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Lyon"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "12C"}],
            },
            {"role": "user", "content": "Thanks. Which is warmer?"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "\n\nHuman:",
        "user": "user-123",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
    }
    req = to_anthropic_request(body, "claude-sonnet-4-5", default_max_tokens=4096)
    assert_valid_anthropic_request(req)
    assert req["model"] == "claude-sonnet-4-5"
    assert req["max_tokens"] == 300
    assert req["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French."},
    ]
    assert [m["role"] for m in req["messages"]] == ["user", "assistant", "user"]
    user, assistant, results = req["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }
    assert user["content"][2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"location": "Lyon"}},
    ]
    # both tool results, then the user's text, in one user turn (tool results first)
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
        {
            "type": "tool_result",
            "tool_use_id": "call_2",
            "content": [{"type": "text", "text": "12C"}],
        },
        {"type": "text", "text": "Thanks. Which is warmer?"},
    ]
    assert req["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        }
    ]
    assert req["tool_choice"] == {"type": "auto"}
    assert req["stop_sequences"] == ["\n\nHuman:"]
    assert req["metadata"] == {"user_id": "user-123"}
    assert req["stream"] is True
    assert (req["temperature"], req["top_p"]) == (0.2, 0.9)
    assert "seed" not in req and "stream_options" not in req
    orjson.dumps(req)  # plain, serializable data


def test_simple_request_keeps_string_content_and_defaults_max_tokens() -> None:
    req = to_anthropic_request(
        {
            "model": "x",
            "messages": [
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": "Hi"},
            ],
        },
        "claude-haiku-4-5",
        default_max_tokens=1024,
    )
    assert req == {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "system": "Be nice.",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    assert_valid_anthropic_request(req)


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    msgs = [{"role": "user", "content": "Hi"}]
    assert to_anthropic_request({"messages": msgs, "max_tokens": 50}, "m", 999)["max_tokens"] == 50
    both = {"messages": msgs, "max_tokens": 50, "max_completion_tokens": 70}
    assert to_anthropic_request(both, "m", 999)["max_tokens"] == 70


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_tool_choice_mapping(choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [WEATHER_TOOL],
    }
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    req = to_anthropic_request(body, "m", 100)
    assert req["tool_choice"] == expected
    assert_valid_anthropic_request(req)


def test_tool_without_parameters_gets_an_empty_object_schema() -> None:
    tool = {"type": "function", "function": {"name": "now"}}
    req = to_anthropic_request(
        {"messages": [{"role": "user", "content": "t?"}], "tools": [tool]}, "m", 10
    )
    assert req["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in req


def test_sampling_parameters_are_clamped_or_dropped() -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 1.7, "top_p": 0.5}
    assert to_anthropic_request(body, "m", 10)["temperature"] == 1.0
    dropped = to_anthropic_request(body, "m", 10, sampling=False)
    assert "temperature" not in dropped and "top_p" not in dropped


def test_stop_list_json_schema_and_cache_control_pass_through() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    body = {
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}
                ],
            },
            {"role": "user", "content": "Give a"},
        ],
        "stop": ["END", "STOP"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema, "strict": True},
        },
    }
    req = to_anthropic_request(body, "m", 10)
    assert req["stop_sequences"] == ["END", "STOP"]
    assert req["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert req["system"] == [
        {"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}
    ]
    assert_valid_anthropic_request(req)


def test_pdf_file_part_becomes_a_document_block() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
    }
    req = to_anthropic_request({"messages": [{"role": "user", "content": [part]}]}, "m", 10)
    block = req["messages"][0]["content"][0]
    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
    }
    assert_valid_anthropic_request(req)


def test_assistant_prefill_and_empty_assistant_text_with_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "now", "arguments": ""}}
    body = {
        "messages": [
            {"role": "user", "content": "time?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "noon"},
            {"role": "assistant", "content": "It is"},
        ]
    }
    req = to_anthropic_request(body, "m", 10)
    assert req["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "now", "input": {}}
    ]
    assert req["messages"][-1] == {"role": "assistant", "content": "It is"}
    assert_valid_anthropic_request(req)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "many"}, "max_completion_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"stop": 5}, "stop"),
        ({"tool_choice": "required"}, "tool_choice"),  # no tools
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "critic", "content": "b"}]},
            "messages[1].role",
        ),
        ({"messages": []}, "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/svg+xml;base64,AAAA"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{not json"},
                            }
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_untranslatable_requests_name_the_param(patch: dict[str, Any], param: str) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], **patch}
    with pytest.raises(InvalidRequest) as info:
        to_anthropic_request(body, "claude-sonnet-4-5", 1024)
    assert info.value.param == param
    assert info.value.status == 400


# --------------------------------------------------------------------------- responses

MESSAGE_WITH_TOOL = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "I'll check the weather "},
        {"type": "text", "text": "in Paris."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "Paris, FR"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 2000,
        "output_tokens": 50,
        "service_tier": "standard",
    },
}


def _completion(resp: dict[str, Any]) -> dict[str, Any]:
    at.Message.model_validate(resp)  # the fixture is a real Anthropic message
    out = from_anthropic_response(resp, "claude-sonnet", "chatcmpl-abc", 1_700_000_000)
    ChatCompletion.model_validate(out)
    orjson.dumps(out)
    return out


def test_response_with_text_tool_use_and_cache_usage() -> None:
    out = _completion(MESSAGE_WITH_TOOL)
    assert out["id"] == "chatcmpl-abc" and out["created"] == 1_700_000_000
    assert out["model"] == "claude-sonnet" and out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the weather in Paris."
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "Paris, FR"}
    assert out["usage"] == {
        "prompt_tokens": 2400,  # 100 uncached + 2000 read + 300 written
        "completion_tokens": 50,
        "total_tokens": 2450,
        "prompt_tokens_details": {"cached_tokens": 2000},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_tool_only_response_has_null_content_and_thinking_is_left_out() -> None:
    resp = {
        **MESSAGE_WITH_TOOL,
        "content": [
            {"type": "thinking", "thinking": "User wants weather.", "signature": "EqQBCgIYAhIM"},
            MESSAGE_WITH_TOOL["content"][2],  # type: ignore[index]
        ],
        "usage": {
            "input_tokens": 10,
            "output_tokens": 40,
            "output_tokens_details": {"thinking_tokens": 25},
        },
    }
    out = _completion(resp)
    assert out["choices"][0]["message"]["content"] is None
    assert out["usage"]["prompt_tokens"] == 10
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 25}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason: str, finish: str) -> None:
    resp = {
        **MESSAGE_WITH_TOOL,
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": stop_reason,
    }
    out = _completion(resp)
    assert out["choices"][0]["finish_reason"] == finish
    assert out["choices"][0]["message"]["content"] == "Hi"
    assert "tool_calls" not in out["choices"][0]["message"]


def test_non_message_body_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        from_anthropic_response(
            {"type": "error", "error": {"type": "api_error", "message": "x"}}, "m", "id", 0
        )


def test_tool_round_trip_through_both_directions() -> None:
    """Anthropic tool_use -> OpenAI tool_calls -> client answers -> Anthropic again."""
    out = _completion(MESSAGE_WITH_TOOL)
    assistant = out["choices"][0]["message"]
    call_id = assistant["tool_calls"][0]["id"]
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            assistant,
            {"role": "tool", "tool_call_id": call_id, "content": "18C"},
        ],
        "tools": [WEATHER_TOOL],
    }
    req = to_anthropic_request(body, "claude-sonnet-4-5", 512)
    assert_valid_anthropic_request(req)
    sent_back = req["messages"][1]["content"]
    assert sent_back == [  # the joined text, then the very same tool_use block
        {"type": "text", "text": "I'll check the weather in Paris."},
        MESSAGE_WITH_TOOL["content"][2],  # type: ignore[index]
    ]
    assert req["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": call_id, "content": "18C"}
    ]


# ------------------------------------------------------------------------- SSE parsing


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _parse_all(chunks: list[bytes]) -> list[tuple[str | None, bytes]]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.flush()


SSE_SAMPLE = (
    b"\xef\xbb\xbf: comment to keep the connection alive\r\n"
    b"event: first\r\ndata: line one\r\ndata:line two\r\nid: 7\r\nretry: 1000\r\n\r\n"
    b"event: no-data\n\n"
    b'data: {"a": 1}\r\r'
    b"data\n\n"
    b"event: last\ndata:  two spaces\n\n"
)
SSE_EXPECTED = [
    ("first", b"line one\nline two"),
    (None, b'{"a": 1}'),
    (None, b""),
    ("last", b" two spaces"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 1000])
def test_sse_parser_any_chunk_size(size: int) -> None:
    assert _parse_all(_split(SSE_SAMPLE, size)) == SSE_EXPECTED


def test_sse_parser_random_boundaries_and_split_crlf() -> None:
    rng = random.Random(1234)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(SSE_SAMPLE)), rng.randint(1, 12)))
        chunks = [
            SSE_SAMPLE[a:b] for a, b in zip([0, *cuts], [*cuts, len(SSE_SAMPLE)], strict=True)
        ]
        assert _parse_all(chunks) == SSE_EXPECTED
    # "\r" then "\n" in the next chunk is one line end, not an empty line (which would dispatch)
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r\n") == [(None, b"a\nb")]


def test_sse_parser_flush_and_openai_done() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"x":1}\n\ndata: [DONE]') == [(None, b'{"x":1}')]
    assert parser.flush() == [(None, b"[DONE]")]
    assert parser.flush() == []


# --------------------------------------------------------------------------- streaming


def _sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


STREAM_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1800,
                "output_tokens": 2,
            },
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Need the weather tool."},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "text_delta", "text": "Okay, let me check "},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "text_delta", "text": "the weather — ☀️ in Paris."},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {},
        },
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"location": "Pa'},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": 'ris, FR"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "content_block_start",
        "index": 3,
        "content_block": {"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}},
    },
    {"type": "content_block_stop", "index": 3},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 89},
    },
    {"type": "message_stop"},
]
_EVENT_MODELS: dict[str, Any] = {
    "message_start": at.RawMessageStartEvent,
    "content_block_start": at.RawContentBlockStartEvent,
    "content_block_delta": at.RawContentBlockDeltaEvent,
    "content_block_stop": at.RawContentBlockStopEvent,
    "message_delta": at.RawMessageDeltaEvent,
    "message_stop": at.RawMessageStopEvent,
}


def test_stream_fixture_is_real_shaped() -> None:
    for event in STREAM_EVENTS:
        if event["type"] != "ping":
            _EVENT_MODELS[event["type"]].model_validate(event)


def _translate(
    raw: bytes, size: int, include_usage: bool = True
) -> tuple[list[dict[str, Any]], AnthropicStreamTranslator]:
    translator = AnthropicStreamTranslator(
        "claude-sonnet", "chatcmpl-xyz", 1_700_000_001, include_usage
    )
    parser = SSEParser()
    chunks: list[dict[str, Any]] = []
    for piece in _split(raw, size):
        for event, data in parser.feed(piece):
            chunks += translator.feed_sse(event, data)
    for event, data in parser.flush():
        chunks += translator.feed_sse(event, data)
    return chunks, translator


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_stream_translation_any_chunk_size(size: int) -> None:
    chunks, translator = _translate(_sse(STREAM_EVENTS), size)
    assert translator.done
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["id"] == "chatcmpl-xyz" and chunk["model"] == "claude-sonnet"
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("usage" in c for c in chunks)
    assert [c["usage"] is not None for c in chunks].count(True) == 1
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 2272,
        "completion_tokens": 89,
        "total_tokens": 2361,
        "prompt_tokens_details": {"cached_tokens": 1800},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["tool_calls"]

    final = state.get_final_completion()  # what the openai SDK's .stream() helper returns
    message = final.choices[0].message
    assert message.content == "Okay, let me check the weather — ☀️ in Paris."
    assert final.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        ("toolu_02", "now"),
    ]
    assert [orjson.loads(c.function.arguments) for c in calls] == [{"location": "Paris, FR"}, {}]
    assert translator.usage == Usage(input_tokens=2272, output_tokens=89, cache_read_tokens=1800)
    assert translator.usage_final
    assert translator.finish_reason == "tool_calls"


def test_stream_without_include_usage_has_no_usage_fields() -> None:
    chunks, translator = _translate(_sse(STREAM_EVENTS), 4096, include_usage=False)
    assert all("usage" not in c for c in chunks)
    assert all(c["choices"] for c in chunks)
    assert translator.usage is not None and translator.usage.output_tokens == 89


def test_stream_usage_progresses_and_cut_stream_is_partial() -> None:
    translator = AnthropicStreamTranslator("m", "id", 0, include_usage=True)
    assert translator.usage is None and not translator.usage_final
    translator.feed("message_start", STREAM_EVENTS[0])
    assert translator.usage == Usage(input_tokens=2272, output_tokens=2, cache_read_tokens=1800)
    assert not translator.usage_final
    translator.feed("content_block_start", STREAM_EVENTS[5])
    out = translator.feed("content_block_delta", STREAM_EVENTS[7])
    assert [c["choices"][0]["delta"] for c in out] == [{"content": "Okay, let me check "}]
    assert translator.delivered_text == "Okay, let me check "
    assert not translator.done  # the stream broke off here: usage is partial


def test_stream_message_delta_with_cumulative_input_and_cache_write() -> None:
    translator = AnthropicStreamTranslator("m", "id", 0, include_usage=True)
    start = {**STREAM_EVENTS[0]}
    start["message"] = {
        **start["message"],
        "usage": {
            "input_tokens": 5,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 200,
            "output_tokens": 1,
        },
    }
    translator.feed("message_start", start)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {
            "input_tokens": 5,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": None,
            "output_tokens": 16,
        },
    }
    at.RawMessageDeltaEvent.model_validate(delta)
    (finish,) = translator.feed("message_delta", delta)
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    # a null in message_delta does not erase what message_start reported
    assert translator.usage == Usage(
        input_tokens=1205, output_tokens=16, cache_read_tokens=200, cache_write_tokens=1000
    )
    *rest, usage_chunk = translator.feed("message_stop", {"type": "message_stop"})
    assert rest == []
    assert usage_chunk["usage"]["prompt_tokens"] == 1205
    assert usage_chunk["usage"]["prompt_tokens_details"] == {"cached_tokens": 200}


def test_stream_error_event_raises_upstream_error() -> None:
    raw = _sse(STREAM_EVENTS[:2]) + (
        b"event: error\n"
        b'data: {"type": "error", "error": {"type": "overloaded_error", '
        b'"message": "Overloaded"}}\n\n'
    )
    with pytest.raises(UpstreamError) as info:
        _translate(raw, 3)
    assert "Overloaded" in info.value.message
    assert info.value.code == "upstream_overloaded"


def test_stream_malformed_event_data_is_an_upstream_error() -> None:
    translator = AnthropicStreamTranslator("m", "id", 0, include_usage=False)
    with pytest.raises(UpstreamError):
        translator.feed_sse("message_start", b"{not json")


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type", "code"),
    [
        (400, "invalid_request_error", "invalid_request_error", None),
        (401, "authentication_error", "authentication_error", "upstream_authentication_failed"),
        (402, "billing_error", "insufficient_quota", "upstream_billing_error"),
        (403, "permission_error", "permission_error", "upstream_permission_denied"),
        (404, "not_found_error", "invalid_request_error", "not_found"),
        (413, "request_too_large", "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_exceeded"),
        (500, "api_error", "server_error", "upstream_error"),
        (504, "timeout_error", "timeout", "upstream_timeout"),
        (529, "overloaded_error", "overloaded", "upstream_overloaded"),
    ],
)
def test_anthropic_errors_map_to_openai(
    status: int, anthropic_type: str, openai_type: str, code: str | None
) -> None:
    body = {
        "type": "error",
        "error": {"type": anthropic_type, "message": f"Something about {anthropic_type}"},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }
    if anthropic_type != "request_too_large":  # a legacy type the 2.x SDK no longer lists
        ErrorResponse.model_validate(body)
    out = anthropic_error_to_openai(status, orjson.dumps(body))
    assert out == {
        "error": {
            "message": f"Something about {anthropic_type}",
            "type": openai_type,
            "param": None,
            "code": code,
        }
    }


def test_error_fallbacks_by_status_and_context_length() -> None:
    html = anthropic_error_to_openai(502, b"<html><body>Bad Gateway</body></html>")
    assert html["error"]["type"] == "server_error"
    assert "HTTP 502" in html["error"]["message"] and "Bad Gateway" in html["error"]["message"]
    assert anthropic_error_to_openai(429, b"")["error"]["type"] == "rate_limit_exceeded"
    assert anthropic_error_to_openai(529, b"{}")["error"]["type"] == "overloaded"
    assert anthropic_error_to_openai(418, b"teapot")["error"]["type"] == "invalid_request_error"
    too_long = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 208310 tokens > 200000 maximum",
        },
    }
    assert (
        anthropic_error_to_openai(400, orjson.dumps(too_long))["error"]["code"]
        == "context_length_exceeded"
    )
    assert (openai_status_for(529), openai_status_for(429), openai_status_for(400)) == (
        503,
        429,
        400,
    )
