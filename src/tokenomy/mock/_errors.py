"""Error bodies in the two dialects the mock speaks: OpenAI's and Anthropic's."""

from __future__ import annotations

import orjson

_OPENAI_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "requests",
    500: "server_error",
    504: "timeout",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
}
INJECTED_MESSAGES = {
    429: "Rate limit reached (mock upstream: injected fault). Please try again in 1s.",
    500: "The server had an error while processing your request (mock upstream: injected fault).",
    504: "The upstream timed out (mock upstream: injected fault).",
}
MALFORMED_BODY = b"<html><body><h1>502 Bad Gateway</h1>mock upstream: malformed body</body></html>"


def error_body(
    anthropic: bool,
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    if anthropic:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    kind = _OPENAI_TYPES.get(status, "server_error")
    if status == 429 and code is None:
        code = "rate_limit_exceeded"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})
