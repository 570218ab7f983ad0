"""The one exception tree, and its mapping to OpenAI-style error bodies.

    TokenomyError                      status  type
    ├── InvalidRequest                 400     invalid_request_error   (names the param)
    ├── AuthenticationFailed           401     authentication_error    (invalid_api_key)
    ├── PermissionDenied               403     permission_error
    ├── NotFound                       404     invalid_request_error   (model_not_found, ...)
    ├── PayloadTooLarge                413     invalid_request_error
    ├── BudgetExceeded                 429     insufficient_quota      (x-should-retry: false)
    ├── RateLimited                    429     rate_limit_exceeded     (retry-after)
    ├── UpstreamError                  502     upstream_error          (provider failed / bad body)
    │   ├── UpstreamTimeout            504     upstream_error          (timeout)
    │   └── UpstreamRejected           4xx     the provider's own type (passed through)
    ├── LedgerUnavailable              503     server_error            (usage not recorded)
    └── RedisUnavailable               503     server_error            (budgets not enforceable)

The gateway answers every failure through :func:`error_body`, never with a bare 500 for input.
"""

from __future__ import annotations

from typing import Any

import orjson


class TokenomyError(Exception):
    status = 500
    type = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def json(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(TokenomyError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(TokenomyError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(TokenomyError):
    status = 403
    type = "permission_error"
    default_code = "model_not_allowed"


class NotFound(TokenomyError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class PayloadTooLarge(TokenomyError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class BudgetExceeded(TokenomyError):
    status = 429
    type = "insufficient_quota"
    default_code = "budget_exceeded"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("x-should-retry", "false")


class RateLimited(TokenomyError):
    status = 429
    type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"


class UpstreamError(TokenomyError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


class UpstreamRejected(UpstreamError):
    """The provider refused the request (4xx): its status and error type are passed on."""

    def __init__(self, message: str, *, status: int, type_: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status
        self.type = type_


class LedgerUnavailable(TokenomyError):
    status = 503
    default_code = "ledger_unavailable"


class RedisUnavailable(TokenomyError):
    """The shared budget and rate-limit store cannot be reached (fail closed)."""

    status = 503
    default_code = "redis_unavailable"


class ConfigError(Exception):
    """The configuration file is missing or invalid; raised at start, never on a request."""


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
