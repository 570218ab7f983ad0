"""The gateway's Redis connection (shared budgets and rate limits) and what "down" means.

One bounded pool per process: a request waits at most ``POOL_WAIT_S`` for a connection,
connecting gives up after ``CONNECT_TIMEOUT_S`` and a command after ``COMMAND_TIMEOUT_S``,
with one quick retry (a pooled connection dropped by a Redis restart reconnects). Past
that Redis counts as unreachable: callers fail closed (503) or, with ``redis_fail_open``,
serve unenforced.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokenomy.errors import RedisUnavailable

CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0
POOL_SIZE = 64
POOL_WAIT_S = 2.0

# What an unreachable Redis raises (a script error or a bad argument is a bug, not this).
UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str) -> Any:
    """An asyncio client (lazy: nothing connects until the first command)."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
    )
    return redis.Redis(connection_pool=pool)


def where(url: str) -> str:
    """host:port/db of a Redis URL, without credentials (for error messages and logs)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


def unavailable(url: str, what: str, exc: BaseException) -> RedisUnavailable:
    return RedisUnavailable(
        f"Redis at {where(url)} is unreachable ({type(exc).__name__}), so {what} cannot be "
        "enforced and the request is refused; retry shortly (redis_fail_open: true serves "
        "requests unenforced instead)",
        headers={"retry-after": "1"},
    )
