"""The exact response cache: which requests may be answered from it, and their key.

The key is the canonical request — every field that can change the answer (messages,
sampling, tools, response format, seed, ...) with keys sorted — scoped to the tenant, the
model that serves it and the endpoint. Fields that do not change the answer (``stream``,
``stream_options``, ``user``, ``metadata``, ``store``) are left out, so a streamed and a
plain request share their entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tokenomy.usage import Usage

if TYPE_CHECKING:
    from tokenomy.cache.semantic import Scope

NOT_IN_KEY = frozenset({"model", "stream", "stream_options", "user", "metadata", "store"})


def deterministic(endpoint: str, payload: dict[str, Any]) -> bool:
    """Embeddings always are; generation only at temperature 0 (the API's default is 1)."""
    if endpoint == "embeddings":
        return True
    temperature = payload.get("temperature")
    return (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and (temperature == 0)
    )


def request_digest(tenant: str, model: str, endpoint: str, payload: dict[str, Any]) -> str:
    canonical = {k: v for k, v in payload.items() if k not in NOT_IN_KEY}
    blob = orjson.dumps([tenant, model, endpoint, canonical], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer: the body the client got (non-streamed form) and the usage it cost,
    which prices what each hit saves."""

    body: bytes
    usage: Usage

    def encode(self) -> bytes:
        usage = self.usage
        head = orjson.dumps(
            [
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.reasoning_tokens,
            ]
        )
        return head + b"\n" + self.body

    @classmethod
    def decode(cls, blob: bytes) -> CachedAnswer:
        head, _, body = blob.partition(b"\n")
        numbers = orjson.loads(head)
        return cls(body, Usage(*numbers))


@dataclass(slots=True)
class PendingWrite:
    """Where a missed request's answer will be stored."""

    digest: str
    scope: tuple[str, str, str]  # tenant, model, endpoint
    semantic_scope: Scope | None = None
    semantic_text: str = ""
    vector: Any = None  # the prompt's embedding, computed once for lookup and insert
