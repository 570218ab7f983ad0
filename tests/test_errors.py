"""Bad input gets a clear 4xx in OpenAI's error format; upstream failures are named, never
a bare 500; nothing is charged for what the provider did not bill."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway


def post(
    gateway: Gateway,
    body: bytes | dict[str, Any],
    key: str | None,
    path: str = "/v1/chat/completions",
    **headers: str,
) -> httpx.Response:
    all_headers = dict(headers)
    if key is not None:
        all_headers["authorization"] = f"Bearer {key}"
    if isinstance(body, dict):
        return httpx.post(gateway.url + path, json=body, headers=all_headers, timeout=30)
    return httpx.post(gateway.url + path, content=body, headers=all_headers, timeout=30)


def assert_openai_error(
    response: httpx.Response, status: int, type_: str, mentions: str, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert mentions in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param
    assert response.headers["x-request-id"].startswith("req_")
    return dict(error)


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.create_key(team="errors")


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.mark.parametrize(
    ("body", "mentions", "param"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [', "not valid JSON", None),
        (b"", "empty", None),
        (b"[1, 2]", "JSON object", None),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "model"),
        ({"model": "gpt-4o-mini"}, "messages", "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "non-empty", "messages"),
        ({"model": "gpt-4o-mini", "messages": ["hi"]}, "messages[0]", "messages[0]"),
        ({"model": "gpt-4o-mini", "messages": [{"content": "x"}]}, "role", "messages[0].role"),
        ({**CHAT, "max_tokens": -3}, "max_tokens", "max_tokens"),
        ({**CHAT, "max_tokens": "ten"}, "max_tokens", "max_tokens"),
        ({**CHAT, "stream": "yes"}, "stream", "stream"),
        ({**CHAT, "model": 42}, "model", "model"),
    ],
)
def test_malformed_requests_get_400(
    gateway: Gateway, key: str, body: Any, mentions: str, param: str | None
) -> None:
    assert_openai_error(post(gateway, body, key), 400, "invalid_request_error", mentions, param)


def test_unknown_model_is_404_naming_it(gateway: Gateway, key: str) -> None:
    error = assert_openai_error(
        post(gateway, {**CHAT, "model": "gpt-9-ultra"}, key),
        404,
        "invalid_request_error",
        "gpt-9-ultra",
        "model",
    )
    assert error["code"] == "model_not_found"


def test_embedding_model_on_chat_route_is_400(gateway: Gateway, key: str) -> None:
    assert_openai_error(
        post(gateway, {**CHAT, "model": "embed-small"}, key),
        400,
        "invalid_request_error",
        "embedding model",
        "model",
    )


@pytest.mark.parametrize("auth", [None, "tk-not-a-real-key-000000000000", "Basic abc"])
def test_missing_or_wrong_key_is_401(gateway: Gateway, auth: str | None) -> None:
    headers = {} if auth is None else {"authorization": auth if " " in auth else f"Bearer {auth}"}
    response = httpx.post(gateway.base_url + "/chat/completions", json=CHAT, headers=headers)
    error = assert_openai_error(response, 401, "authentication_error", "API key")
    assert error["code"] == "invalid_api_key"


def test_sdk_raises_typed_errors(gateway: Gateway, key: str) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert bad.value.param == "messages"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.base_url, api_key="tk-wrong", max_retries=0).models.list()


def test_oversized_body_is_413(gateway: Gateway, key: str) -> None:
    huge = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        + b"x" * (33 * 1024 * 1024)
        + b'"}]}'
    )
    response = post(gateway, huge, key)
    assert_openai_error(response, 413, "invalid_request_error", "larger than")


def test_unknown_route_is_404_json(gateway: Gateway, key: str) -> None:
    response = post(gateway, CHAT, key, path="/v1/chat/complete")
    assert_openai_error(response, 404, "invalid_request_error", "/v1/chat/complete")


@pytest.mark.parametrize(
    ("model", "status", "type_", "mentions"),
    [
        ("broken-model", 502, "upstream_error", "HTTP 500"),
        ("limited-model", 429, "rate_limit_exceeded", "upstream 'limited'"),
        ("hanging-model", 504, "upstream_error", "did not answer"),
        ("garbled-model", 502, "upstream_error", "malformed"),
        ("nowhere-model", 502, "upstream_error", "unreachable"),
    ],
)
def test_upstream_failures_are_named(
    gateway: Gateway, key: str, model: str, status: int, type_: str, mentions: str
) -> None:
    response = post(gateway, {**CHAT, "model": model}, key)
    assert_openai_error(response, status, type_, mentions)
    if status == 429:
        assert response.headers.get("retry-after")
    event = [e for e in gateway.events() if e["id"] == response.headers["x-request-id"]]
    assert len(event) == 1 and event[0]["status"] == status
    if model == "garbled-model":  # the provider likely billed the prompt: counted, flagged
        assert event[0]["estimated"] == 1 and event[0]["input_tokens"] > 0
        assert event[0]["output_tokens"] == 0
    else:
        assert event[0]["cost_pico"] == 0


def test_streams_that_break_are_charged_for_what_was_delivered(gateway: Gateway, key: str) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    received: list[str] = []
    with pytest.raises(openai.APIError) as cut:
        for chunk in client.chat.completions.create(
            model="cut-model",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=20,
            stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "ended the stream early" in str(cut.value)
    event = [e for e in gateway.events() if e["model"] == "cut-model"][-1]
    assert event["estimated"] == 1
    assert 0 < event["output_tokens"] < 20
    assert event["cost_pico"] > 0

    with pytest.raises(openai.APIError) as garbled:
        list(
            client.chat.completions.create(
                model="garbled-model",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=5,
                stream=True,
            )
        )
    assert "malformed" in str(garbled.value)
