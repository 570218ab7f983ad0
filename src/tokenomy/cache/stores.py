"""Where cached answers live: the ledger's SQLite database (one gateway) or Redis (many
replicas share hits). Semantic rows go to SQLite (the vector index is rebuilt from them)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tokenomy import database
from tokenomy.database import Connection

if TYPE_CHECKING:  # the semantic engine needs numpy (the embeddings extra)
    from tokenomy.cache.semantic import StoredEntry


class ExactStore(Protocol):
    async def get(self, digest: str, now_ms: int) -> bytes | None: ...

    async def put(
        self,
        digest: str,
        scope: tuple[str, str, str],
        created_ms: int,
        expires_ms: int,
        answer: bytes,
    ) -> None: ...

    async def purge(
        self, tenant: str | None, model: str | None, older_than_ms: int | None
    ) -> int: ...

    async def count(self, now_ms: int) -> int: ...

    async def close(self) -> None: ...


class SqliteExactStore:
    """Reads on the event loop (a primary-key lookup, microseconds; WAL readers never
    wait for the writer), writes in a worker thread on their own connection."""

    def __init__(self, url: str) -> None:
        self._reader = database.connect(url)
        self._writer = database.connect(url)
        self._write_lock = threading.Lock()

    async def get(self, digest: str, now_ms: int) -> bytes | None:
        row = self._reader.execute(
            "SELECT answer FROM cache_entries WHERE digest = ? AND expires_ms > ?",
            (digest, now_ms),
        ).fetchone()
        return None if row is None else bytes(row[0])

    async def put(
        self,
        digest: str,
        scope: tuple[str, str, str],
        created_ms: int,
        expires_ms: int,
        answer: bytes,
    ) -> None:
        def write() -> None:
            with self._write_lock:
                self._writer.execute(
                    "INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (digest) DO UPDATE SET tenant = excluded.tenant, "
                    "model = excluded.model, endpoint = excluded.endpoint, "
                    "created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, "
                    "answer = excluded.answer",
                    (digest, *scope, created_ms, expires_ms, answer),
                )
                # Expired entries are dropped as new ones arrive (bounded work per write).
                self._writer.execute(
                    "DELETE FROM cache_entries WHERE digest IN (SELECT digest FROM cache_entries "
                    "WHERE expires_ms <= ? LIMIT 16)",
                    (created_ms,),
                )

        await asyncio.get_running_loop().run_in_executor(None, write)

    async def purge(self, tenant: str | None, model: str | None, older_than_ms: int | None) -> int:
        where, params = _filters(tenant, model, older_than_ms, "created_ms")

        def delete() -> int:
            with self._write_lock:
                return self._writer.execute(f"DELETE FROM cache_entries{where}", params).rowcount

        return await asyncio.get_running_loop().run_in_executor(None, delete)

    async def count(self, now_ms: int) -> int:
        row = self._reader.execute(
            "SELECT COUNT(*) FROM cache_entries WHERE expires_ms > ?", (now_ms,)
        ).fetchone()
        return int(row[0])

    async def close(self) -> None:
        self._reader.close()
        self._writer.close()


def _filters(
    tenant: str | None, model: str | None, older_than: float | None, time_column: str
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("tenant", tenant), ("model", model)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if older_than is not None:
        clauses.append(f"{time_column} < ?")
        params.append(older_than)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class RedisExactStore:
    """Entries as ``tokenomy:cache:e:<digest>`` with the TTL; a sorted set per (tenant,
    model) of digests by creation time serves purges."""

    PREFIX = "tokenomy:cache:"

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.Redis.from_url(url)

    def _index(self, tenant: str, model: str) -> str:
        return f"{self.PREFIX}i:{tenant}\x1f{model}"

    async def get(self, digest: str, now_ms: int) -> bytes | None:
        value = await self._redis.get(f"{self.PREFIX}e:{digest}")
        return None if value is None else bytes(value)

    async def put(
        self,
        digest: str,
        scope: tuple[str, str, str],
        created_ms: int,
        expires_ms: int,
        answer: bytes,
    ) -> None:
        tenant, model, _ = scope
        index = self._index(tenant, model)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.PREFIX}e:{digest}", answer, px=max(expires_ms - created_ms, 1))
            pipe.zadd(index, {digest: created_ms})
            pipe.zremrangebyscore(index, "-inf", created_ms - (expires_ms - created_ms))
            await pipe.execute()

    async def purge(self, tenant: str | None, model: str | None, older_than_ms: int | None) -> int:
        pattern = self._index(tenant or "*", model or "*")
        removed = 0
        async for index in self._redis.scan_iter(match=pattern, count=500):
            high = "+inf" if older_than_ms is None else f"({older_than_ms}"
            digests = await self._redis.zrangebyscore(index, "-inf", high)
            if not digests:
                continue
            keys = [f"{self.PREFIX}e:{d.decode()}" for d in digests]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(*keys)
                pipe.zrem(index, *digests)
                deleted, _ = await pipe.execute()
            removed += int(deleted)
        return removed

    async def count(self, now_ms: int) -> int:
        total = 0
        async for _ in self._redis.scan_iter(match=f"{self.PREFIX}e:*", count=1000):
            total += 1
        return total

    async def close(self) -> None:
        await self._redis.aclose()


def exact_store(store: str, database_url: str) -> ExactStore:
    if store == "sqlite":
        return SqliteExactStore(database_url)
    return RedisExactStore(store)


class SqliteSemanticStore:
    """The semantic cache's rows (``CacheStore``), in the ledger's database."""

    def __init__(self, url: str) -> None:
        self._conn: Connection = database.connect(url)
        self._lock = threading.Lock()

    def load(self, keys: Iterable[int] | None = None) -> Iterable[StoredEntry]:
        """Every row, or the rows of ``keys``."""
        from tokenomy.cache.semantic import Scope, StoredEntry

        select = (
            "SELECT key, tenant, model, context, text, vector, answer, created_at "
            "FROM semantic_entries"
        )
        with self._lock:
            if keys is None:
                rows = self._conn.execute(select).fetchall()
            else:
                wanted = list(keys)
                rows = []
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ", ".join("?" * len(chunk))
                    rows += self._conn.execute(f"{select} WHERE key IN ({marks})", chunk).fetchall()
        return [
            StoredEntry(key, Scope(tenant, model, context), text, bytes(vector), bytes(answer), at)
            for key, tenant, model, context, text, vector, answer, at in rows
        ]

    def keys(self) -> list[int]:
        with self._lock:
            return [row[0] for row in self._conn.execute("SELECT key FROM semantic_entries")]

    def put(self, entry: StoredEntry) -> None:
        scope = entry.scope
        with self._lock:
            self._conn.execute(
                "INSERT INTO semantic_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tenant = excluded.tenant, "
                "model = excluded.model, context = excluded.context, text = excluded.text, "
                "vector = excluded.vector, answer = excluded.answer, "
                "created_at = excluded.created_at",
                (
                    entry.key,
                    scope.tenant,
                    scope.model,
                    scope.context,
                    entry.text,
                    entry.vector,
                    entry.value,
                    entry.created_at,
                ),
            )

    def delete(self, keys: Sequence[int]) -> None:
        with self._lock:
            self._conn.executemany(
                "DELETE FROM semantic_entries WHERE key = ?", [(k,) for k in keys]
            )

    def close(self) -> None:
        self._conn.close()
