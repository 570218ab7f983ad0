"""Calling the model's upstream for a non-streaming answer, in either provider's dialect."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from tokenomy.errors import InvalidRequest, TokenomyError, UpstreamError, UpstreamRejected
from tokenomy.gateway.call import Call
from tokenomy.gateway.state import Gateway
from tokenomy.upstream.client import UpstreamClient, read_body
from tokenomy.usage import Usage, from_anthropic

# Provider 4xx answers that are the client's to fix; the rest are the gateway's problem.
_CLIENT_STATUSES = {400, 404, 409, 413, 422, 429}


@dataclass(slots=True)
class Answer:
    body: bytes
    usage: Usage
    estimated: bool = False
    failure: TokenomyError | None = None


def openai_body(call: Call, stream: bool) -> bytes:
    """The request as the upstream must see it: its own model name and, for streams,
    a request for the usage chunk. Unchanged requests are forwarded byte for byte."""
    payload = call.payload
    target = call.model.target
    needs_usage = (
        stream and call.endpoint.wants_stream_usage_option and not client_wants_usage(call)
    )
    if payload.get("model") == target and not needs_usage and not call.rewritten:
        return call.raw_body
    changed = dict(payload)
    changed["model"] = target
    if needs_usage:
        changed["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(changed)


def client_wants_usage(call: Call) -> bool:
    """Did the client ask for the final usage chunk of its stream?"""
    options = call.payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def anthropic_body(call: Call, stream: bool) -> bytes:
    from tokenomy.upstream.anthropic_format import to_anthropic_request

    if call.endpoint.name != "chat.completions":
        raise InvalidRequest(
            f"model {call.model.name!r} is served by Anthropic's Messages API, which has no "
            f"{call.endpoint.name} route; use /v1/chat/completions",
            param="model",
            code="unsupported_endpoint",
        )
    request = to_anthropic_request(
        call.payload, call.model.target, call.model.max_output_tokens or 4096
    )
    request["stream"] = stream
    return orjson.dumps(request)


def upstream_request(
    gateway: Gateway, call: Call, stream: bool
) -> tuple[UpstreamClient, str, bytes]:
    client = gateway.upstreams[call.model.upstream]
    if client.kind == "anthropic":
        return client, "/messages", anthropic_body(call, stream)
    return client, call.endpoint.upstream_path, openai_body(call, stream)


def rejection(client: UpstreamClient, status: int, raw: bytes, headers: Any) -> TokenomyError:
    """Turn a provider's error answer into ours, keeping its message when it is the client's."""
    if client.kind == "anthropic":
        from tokenomy.upstream.anthropic_format import anthropic_error_to_openai

        raw = orjson.dumps(anthropic_error_to_openai(status, raw))
    message, type_ = _error_message(raw)
    secret = client.config.resolved_api_key()
    if secret and secret in message:  # some providers quote the key they refused
        message = message.replace(secret, "[redacted]")
    if status in _CLIENT_STATUSES:
        error: TokenomyError = UpstreamRejected(
            f"upstream {client.name!r}: {message}",
            status=status,
            type_="rate_limit_exceeded" if status == 429 else (type_ or "invalid_request_error"),
            code=f"upstream_{status}",
        )
        retry_after = headers.get("retry-after") if headers is not None else None
        if retry_after:
            error.headers["retry-after"] = retry_after
        return error
    return UpstreamError(
        f"upstream {client.name!r} answered HTTP {status}: {message}", code=f"upstream_{status}"
    )


def _error_message(raw: bytes) -> tuple[str, str | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", "replace") or "(empty body)", None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        type_ = error.get("type")
        return (str(message) if message else "(no message)"), (
            type_ if isinstance(type_, str) else None
        )
    return str(body)[:200], None


async def complete(gateway: Gateway, call: Call) -> Answer:
    client, path, body = upstream_request(gateway, call, stream=False)
    response = await client.post(path, body)
    status = response.status
    headers = response.headers
    try:
        raw = await read_body(response, client.name)
    except UpstreamError as exc:
        return Answer(b"", call.estimated_usage(), estimated=True, failure=exc)
    if status >= 400:
        return Answer(raw, Usage(), failure=rejection(client, status, raw, headers))
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError:
        failure = UpstreamError(
            f"upstream {client.name!r} sent a malformed answer (not a JSON object)",
            code="upstream_malformed",
        )
        # The provider probably billed the prompt; count it, flagged estimated.
        return Answer(raw, call.estimated_usage(), estimated=True, failure=failure)
    if client.kind == "anthropic":
        return _from_anthropic(call, data)
    usage = call.endpoint.usage_of(data)
    if call.store_content:
        call.completion_text.append(_answer_text(data))
    if usage is None:
        return Answer(raw, call.estimated_usage(_answer_text(data)), estimated=True)
    return Answer(raw, usage)


def _from_anthropic(call: Call, data: dict[str, Any]) -> Answer:
    from tokenomy.upstream.anthropic_format import from_anthropic_response

    try:
        translated = from_anthropic_response(
            data, call.model.name, call.request_id, int(time.time())
        )
    except UpstreamError as exc:
        return Answer(b"", call.estimated_usage(), estimated=True, failure=exc)
    if call.store_content:
        call.completion_text.append(_answer_text(translated))
    usage_data = data.get("usage")
    if isinstance(usage_data, dict):
        return Answer(orjson.dumps(translated), from_anthropic(usage_data))
    return Answer(orjson.dumps(translated), call.estimated_usage(_answer_text(translated)), True)


def _answer_text(data: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            parts.append(message["content"])
        elif isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    for item in data.get("output") or ():
        for content in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(content, dict) and isinstance(content.get("text"), str):
                parts.append(content["text"])
    return "".join(parts)
