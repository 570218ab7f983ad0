"""Virtual keys (``tk-...``), stored as SHA-256 hashes.

Keys are 256-bit random strings, so a fast hash is safe (no password-style KDF needed).
Verified keys are cached in memory and re-read from the database every few seconds, so a
key revoked by another process (the CLI, another replica) stops working within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from tokenomy.database import Connection
from tokenomy.errors import InvalidRequest, NotFound
from tokenomy.principals.principal import DIMENSIONS, MAX_FIELD, Principal, parse_tags

KEY_PREFIX = "tk-"
RECHECK_SECONDS = 5.0
_COLUMNS = (
    "id, tenant, name, user, team, department, project, environment, tags, allowed_models, "
    "prefix, created_at, revoked_at, rpm, tpm, allow_critical, cache_opt_out"
)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Compare a presented secret with the expected one in constant time, whatever
    characters it holds (``hmac.compare_digest`` refuses ``str`` with non-ASCII
    characters: a stray byte in a header must be a 401, not a crash)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


class KeyStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._refreshing: set[str] = set()
        self._refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenomy-keys")

    def create(self, fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Create a key for a principal; returns its public record and the plaintext key,
        which is shown once and never stored."""
        values = _validated_fields(fields)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        now = int(time.time() * 1000)
        with self._lock:
            self._conn.execute(
                "INSERT INTO keys (id, key_hash, prefix, name, tenant, user, team, department, "
                "project, environment, tags, allowed_models, created_at, rpm, tpm, allow_critical, "
                "cache_opt_out) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    hash_key(key),
                    key[:8],
                    values["name"],
                    values["tenant"],
                    *(values[dim] for dim in DIMENSIONS),
                    orjson.dumps(values["tags"]).decode(),
                    None
                    if values["allowed_models"] is None
                    else orjson.dumps(values["allowed_models"]).decode(),
                    now,
                    values["rpm"],
                    values["tpm"],
                    int(values["allow_critical"]),
                    int(values["cache_opt_out"]),
                ),
            )
        record = self.get(key_id)
        return record, key

    def authenticate(self, key: str) -> Principal | None:
        """The principal of a live key, or None. Hot path: a dict lookup when cached.

        A cached key is re-read in the background once it is half-way to its re-check
        time, so busy keys never wait for the database (a slow one stalls no request);
        only a key unseen for RECHECK_SECONDS is read on the request path."""
        digest = hash_key(key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and now - cached[1] < RECHECK_SECONDS:
            if now - cached[1] >= RECHECK_SECONDS / 2 and digest not in self._refreshing:
                self._refreshing.add(digest)
                self._refresher.submit(self._refresh, digest)
            return cached[0]
        return self._refresh(digest)

    def _refresh(self, digest: str) -> Principal | None:
        try:
            with self._lock:
                row = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM keys WHERE key_hash = ? AND revoked_at IS NULL",
                    (digest,),
                ).fetchone()
            principal = _principal(row) if row else None
            if len(self._cache) > 100_000:  # bound memory against key-guessing floods
                self._cache.clear()
            self._cache[digest] = (principal, time.monotonic())
            return principal
        finally:
            self._refreshing.discard(digest)

    def principal(self, key_id: str, *, live: bool = True) -> Principal | None:
        """The principal of a key by its id (work queued under a key runs as it); with
        ``live``, only while the key is not revoked."""
        alive = " AND revoked_at IS NULL" if live else ""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM keys WHERE id = ?{alive}", (key_id,)
            ).fetchone()
        return _principal(row) if row else None

    def get(self, key_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (key_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no key with id {key_id!r}", param="id", code="key_not_found")
        return _record(row)

    def list(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM keys {where} ORDER BY created_at, id"
            ).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> dict[str, Any]:
        now = int(time.time() * 1000)
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id)
            )
        if cursor.rowcount == 0:
            self.get(key_id)  # raises NotFound for an unknown id
        self._cache.clear()
        return self.get(key_id)


def _validated_fields(fields: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise InvalidRequest("the body must be a JSON object")
    known = {
        *DIMENSIONS,
        "tenant",
        "name",
        "tags",
        "allowed_models",
        "rpm",
        "tpm",
        "allow_critical",
        "cache_opt_out",
    }
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})", param=unknown[0]
        )
    values: dict[str, Any] = {}
    for name in (*DIMENSIONS, "tenant", "name"):
        value = fields.get(name)
        if value is None:
            value = "default" if name == "tenant" else ""
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string", param=name)
        if len(value) > MAX_FIELD:
            raise InvalidRequest(f"{name} is longer than {MAX_FIELD} characters", param=name)
        values[name] = value.strip()
    values["tags"] = parse_tags(fields.get("tags"))
    allowed = fields.get("allowed_models")
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(m, str) for m in allowed)
    ):
        raise InvalidRequest("allowed_models must be a list of model names", param="allowed_models")
    values["allowed_models"] = allowed
    for name in ("rpm", "tpm"):
        limit = fields.get(name)
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise InvalidRequest(f"{name} must be a positive integer", param=name)
        values[name] = limit
    for flag in ("allow_critical", "cache_opt_out"):
        value = fields.get(flag, False)
        if value is None:
            value = False
        if not isinstance(value, bool):
            raise InvalidRequest(f"{flag} must be true or false", param=flag)
        values[flag] = value
    return values


def _principal(row: tuple[Any, ...]) -> Principal:
    allowed = orjson.loads(row[9]) if row[9] is not None else None
    return Principal(
        key_id=row[0],
        tenant=row[1],
        name=row[2],
        user=row[3],
        team=row[4],
        department=row[5],
        project=row[6],
        environment=row[7],
        tags=orjson.loads(row[8]),
        allowed_models=tuple(allowed) if allowed is not None else None,
        rpm=row[13],
        tpm=row[14],
        allow_critical=bool(row[15]),
        cache_opt_out=bool(row[16]),
    )


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    record = _principal(row).public()
    record.update(prefix=row[10], created_at=row[11], revoked_at=row[12])
    return record
