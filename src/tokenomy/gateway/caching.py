"""The response cache in the request path.

After the model is chosen and before budgets are held: an exact hit (same canonical request,
tenant and model), else a semantic hit (a verified near-duplicate question in the same
tenant, model and context) is answered at once — cost 0, with what it saved (the model's
price for the usage the cached answer cost) in the ledger. A miss remembers where the
answer goes; the answer is stored after the client has it.

Per request, ``x-tokenomy-cache: off`` bypasses the cache, ``refresh`` skips the lookup but
stores the new answer, ``on`` allows a non-deterministic request (temperature above 0) to
be cached. Keys created with ``cache_opt_out`` never touch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from tokenomy.cache.exact import CachedAnswer, PendingWrite, deterministic, request_digest
from tokenomy.cache.stores import ExactStore, exact_store
from tokenomy.config import Settings
from tokenomy.errors import InvalidRequest
from tokenomy.gateway.asgi import JSON, Send, send_bytes
from tokenomy.gateway.call import Call
from tokenomy.money import from_pico, usd_str
from tokenomy.routing.aliases import prompt_text
from tokenomy.usage import Usage

if TYPE_CHECKING:
    from tokenomy.cache.semantic import SemanticCache
    from tokenomy.gateway.state import Gateway

log = logging.getLogger("tokenomy.cache")
Directive = Literal["default", "off", "refresh", "on"]
DIRECTIVES: tuple[Directive, ...] = ("default", "off", "refresh", "on")


def parse_directive(raw: bytes | None) -> Directive:
    if raw is None:
        return "default"
    value = raw.decode("latin-1").strip().lower()
    for directive in DIRECTIVES:
        if value == directive:
            return directive
    raise InvalidRequest(
        f"x-tokenomy-cache must be one of off, refresh, on, not {value!r}",
        param="x-tokenomy-cache",
    )


@dataclass(frozen=True, slots=True)
class CacheHit:
    answer: CachedAnswer
    kind: Literal["exact", "semantic"]
    similarity: float = 1.0


class ResponseCache:
    def __init__(self, settings: Settings) -> None:
        self.config = settings.cache
        self.exact: ExactStore = exact_store(self.config.store, settings.database)
        self.semantic: SemanticCache | None = None
        self._database = settings.database
        self._semantic_store: Any = None
        self.hits = {"exact": 0, "semantic": 0}
        self.misses = 0
        self._sync_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.config.semantic.enabled:
            loop = asyncio.get_running_loop()
            self.semantic = await loop.run_in_executor(None, self._build_semantic)
            self._sync_task = asyncio.create_task(self._follow_other_replicas())

    async def _follow_other_replicas(self) -> None:
        """Entries other replicas add to (or purge from) the shared store reach this one's
        index within ``semantic.sync_s``."""
        every = self.config.semantic.sync_s
        while self.semantic is not None:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.semantic.sync)
            except Exception as exc:  # a busy database: the next round catches up
                log.warning("semantic cache sync failed: %s", exc)

    def _build_semantic(self) -> SemanticCache:
        from tokenomy.cache.semantic import DEFAULT_THRESHOLD, SemanticCache
        from tokenomy.cache.stores import SqliteSemanticStore
        from tokenomy.cache.verifier import Verifier, default_verifier
        from tokenomy.embeddings import shared_embedder

        semantic = self.config.semantic
        verifier = None
        if semantic.verifier == "default":
            verifier = default_verifier()
        elif semantic.verifier != "none":
            verifier = Verifier.load(semantic.verifier)
        if verifier is not None and semantic.min_score is not None:
            verifier = verifier.with_options(min_score=semantic.min_score)
        self._semantic_store = SqliteSemanticStore(self._database)
        embedder = shared_embedder(semantic.embedding_model, backend=semantic.embedding_backend)
        embedder.encode_one("warm up")  # the first encode is slow; not on a request
        return SemanticCache(
            embedder,
            threshold=semantic.threshold if semantic.threshold is not None else DEFAULT_THRESHOLD,
            verifier=verifier,
            store=self._semantic_store,
            max_age_s=self.config.ttl_s,
        )

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        await self.exact.close()
        if self._semantic_store is not None:
            self._semantic_store.close()

    def eligible(self, call: Call, directive: Directive) -> bool:
        endpoint = call.endpoint.name
        return (
            directive != "off"
            and endpoint in self.config.endpoints
            and not call.principal.cache_opt_out
            and not call.escalation  # a cascade's answer depends on its checks
            and (directive == "on" or deterministic(endpoint, call.payload))
            and not (call.payload.get("stream") is True and endpoint != "chat.completions")
        )

    async def lookup(self, call: Call, directive: Directive) -> CacheHit | None:
        """A hit, or None (then ``call.cache_write`` says where the answer goes)."""
        if not self.eligible(call, directive):
            return None
        tenant, model, endpoint = call.principal.tenant, call.model.name, call.endpoint.name
        digest = request_digest(tenant, model, endpoint, call.payload)
        pending = PendingWrite(digest, (tenant, model, endpoint))
        call.cache_write = pending
        now_ms = time.time_ns() // 1_000_000
        if directive != "refresh":
            blob = await self.exact.get(digest, now_ms)
            if blob is not None:
                self.hits["exact"] += 1
                return CacheHit(CachedAnswer.decode(blob), "exact")
        if self.semantic is not None and endpoint == "chat.completions":
            hit = await self._semantic_lookup(call, pending, directive)
            if hit is not None:
                self.hits["semantic"] += 1
                return hit
        self.misses += 1
        return None

    async def _semantic_lookup(
        self, call: Call, pending: PendingWrite, directive: Directive
    ) -> CacheHit | None:
        from tokenomy.cache.semantic import Scope

        assert self.semantic is not None
        text = prompt_text(call.payload)
        if not text.strip():
            return None
        pending.semantic_scope = Scope(
            call.principal.tenant, call.model.name, context_digest(call.payload)
        )
        pending.semantic_text = text
        semantic = self.semantic
        loop = asyncio.get_running_loop()
        pending.vector = await loop.run_in_executor(None, semantic.embedder.encode_one, text)
        if directive == "refresh":
            return None
        floor = self.config.semantic.thresholds.get(str(call.payload.get("model")))
        if floor is None:
            floor = self.config.semantic.thresholds.get(call.model.name)
        found = await loop.run_in_executor(
            None,
            lambda: semantic.lookup(
                pending.semantic_scope,  # type: ignore[arg-type]
                text,
                threshold=floor,
                vector=pending.vector,
            ),
        )
        if found is None:
            return None
        return CacheHit(CachedAnswer.decode(found.value), "semantic", found.similarity)

    async def store(self, call: Call, body: bytes, usage: Usage) -> None:
        """Keep a successful answer (after the client has it; failures are logged only)."""
        pending = call.cache_write
        if pending is None or len(body) > self.config.max_entry_bytes:
            return
        if call.model.name != pending.scope[1] or call.rewritten:
            # A fallback or budget downgrade served another model, or a budget injected an
            # output limit: this answer is not the one the key's request would get.
            return
        blob = CachedAnswer(body, usage).encode()
        now_ms = time.time_ns() // 1_000_000
        try:
            expires = now_ms + int(self.config.ttl_s * 1000)
            await self.exact.put(pending.digest, pending.scope, now_ms, expires, blob)
            if self.semantic is not None and pending.semantic_scope is not None:
                semantic, scope = self.semantic, pending.semantic_scope
                await asyncio.get_running_loop().run_in_executor(
                    None,
                    lambda: semantic.insert(
                        scope, pending.semantic_text, blob, vector=pending.vector
                    ),
                )
        except Exception:
            log.exception("could not store a cache entry")

    async def purge(self, tenant: str | None, model: str | None, older_than_s: float | None) -> int:
        older_than_ms = None
        if older_than_s is not None:
            older_than_ms = time.time_ns() // 1_000_000 - int(older_than_s * 1000)
        removed = await self.exact.purge(tenant, model, older_than_ms)
        if self.semantic is not None:
            cutoff = None if older_than_ms is None else older_than_ms / 1000
            removed += self.semantic.purge(tenant=tenant, model=model, older_than=cutoff)
        return removed

    async def stats(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "store": "sqlite" if self.config.store == "sqlite" else "redis",
            "exact_entries": await self.exact.count(time.time_ns() // 1_000_000),
            "semantic_entries": len(self.semantic) if self.semantic is not None else None,
            "hits": dict(self.hits),
            "misses": self.misses,
        }


def context_digest(payload: dict[str, Any]) -> str:
    """Everything but the last user turn's text: system prompt, earlier turns, tools and
    parameters. A semantic hit needs the same context, only the question may differ."""
    messages = payload.get("messages")
    context: dict[str, Any] = {
        k: v for k, v in payload.items() if k not in ("model", "stream", "stream_options", "user")
    }
    if isinstance(messages, list):
        last_user = max(
            (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
            default=None,
        )
        context["messages"] = [m for i, m in enumerate(messages) if i != last_user]
    blob = orjson.dumps(context, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:32]


async def answer_from_cache(gateway: Gateway, call: Call, hit: CacheHit, send: Send) -> None:
    """Record the hit (cost 0, saved the model's price for the cached usage), then answer
    in the shape the client asked for."""
    from tokenomy.gateway.proxy import commit
    from tokenomy.gateway.replay import send_as_stream
    from tokenomy.gateway.upstream_call import client_wants_usage

    call.strategy = "cache"
    call.route_reason = (
        "cache:exact" if hit.kind == "exact" else f"cache:semantic({hit.similarity:.3f})"
    )
    streamed = call.payload.get("stream") is True
    event, cost = call.event(Usage(), status=200, stream=streamed)
    event.cache_hit = True
    event.baseline_model = call.model.name
    event.saved_pico = call.model.price.cost_pico(hit.answer.usage)
    if not await commit(gateway, event, send, call):
        return
    call.extra_headers.extend(
        [
            (b"x-tokenomy-cache", f"hit-{hit.kind}".encode()),
            (b"x-tokenomy-saved-usd", usd_str(from_pico(event.saved_pico)).encode()),
        ]
    )
    if not streamed:
        return await send_bytes(send, 200, hit.answer.body, [JSON, *call.headers(cost)])
    answer = orjson.loads(hit.answer.body)
    await send_as_stream(send, answer, client_wants_usage(call), cost, call.headers(cost))
