"""Database URLs, SQLite connections and named, append-only migrations.

One SQLite file holds keys, the ledger and its rollups (WAL mode: readers never block the
single writer). ``synchronous=NORMAL`` in WAL mode makes a commit durable against a crash
of the process (kill -9), which is what "recorded means acknowledged" needs; only a power
loss can take back the last commits.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from tokenomy.errors import ConfigError

ROLLUP_DIMENSION_COLUMNS = (
    "tenant, key_id, user, team, department, project, environment, workflow, model, tier, upstream"
)
ROLLUP_SUM_COLUMNS = (
    "requests, errors, estimated, cache_hits, input_tokens, cache_read_tokens, "
    "cache_write_tokens, output_tokens, reasoning_tokens, cost_pico, latency_ms_sum, saved_pico"
)

# The rollup columns as migrations 0002-0005 created them. Migrations are append-only
# records: they keep their own copy, never the current constants above.
_V1_DIMENSIONS = (
    "tenant, key_id, user, team, department, project, environment, workflow, model, tier, upstream"
)
_V1_SUMS = (
    "requests, errors, estimated, cache_hits, input_tokens, cache_read_tokens, "
    "cache_write_tokens, output_tokens, reasoning_tokens, cost_pico, latency_ms_sum"
)


def _coarser_rollup(table: str, column: str, seconds: int) -> str:
    """A rollup table with longer time buckets than rollup_minute, filled from it."""
    dimensions = ", ".join(f"{d} TEXT NOT NULL" for d in _V1_DIMENSIONS.split(", "))
    sums = ", ".join(
        f"{c} {'REAL' if c == 'latency_ms_sum' else 'INTEGER'} NOT NULL"
        for c in _V1_SUMS.split(", ")
    )
    totals = ", ".join(f"SUM({c})" for c in _V1_SUMS.split(", "))
    bucket = f"minute / {seconds} * {seconds}"
    return f"""
        CREATE TABLE {table} ({column} INTEGER NOT NULL, {dimensions}, {sums},
            PRIMARY KEY ({column}, {_V1_DIMENSIONS}));
        INSERT INTO {table} SELECT {bucket}, {_V1_DIMENSIONS}, {totals}
        FROM rollup_minute GROUP BY {bucket}, {_V1_DIMENSIONS};
        """


MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_keys",
        """
        CREATE TABLE keys (
            id TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            tenant TEXT NOT NULL DEFAULT 'default',
            user TEXT NOT NULL DEFAULT '',
            team TEXT NOT NULL DEFAULT '',
            department TEXT NOT NULL DEFAULT '',
            project TEXT NOT NULL DEFAULT '',
            environment TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '{}',
            allowed_models TEXT,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER
        );
        """,
    ),
    (
        "0002_events",
        """
        CREATE TABLE events (
            id TEXT PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            tenant TEXT NOT NULL,
            key_id TEXT NOT NULL,
            user TEXT NOT NULL,
            team TEXT NOT NULL,
            department TEXT NOT NULL,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            workflow TEXT NOT NULL,
            tags TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            model TEXT NOT NULL,
            tier TEXT NOT NULL,
            upstream TEXT NOT NULL,
            route_reason TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            cost_pico INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            ttft_ms REAL,
            status INTEGER NOT NULL,
            error TEXT,
            stream INTEGER NOT NULL,
            cache_hit INTEGER NOT NULL,
            estimated INTEGER NOT NULL,
            prompt TEXT,
            completion TEXT
        );
        CREATE INDEX events_ts ON events (ts_ms);
        CREATE TABLE rollup_minute (
            minute INTEGER NOT NULL,
            tenant TEXT NOT NULL,
            key_id TEXT NOT NULL,
            user TEXT NOT NULL,
            team TEXT NOT NULL,
            department TEXT NOT NULL,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            workflow TEXT NOT NULL,
            model TEXT NOT NULL,
            tier TEXT NOT NULL,
            upstream TEXT NOT NULL,
            requests INTEGER NOT NULL,
            errors INTEGER NOT NULL,
            estimated INTEGER NOT NULL,
            cache_hits INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            cost_pico INTEGER NOT NULL,
            latency_ms_sum REAL NOT NULL,
            PRIMARY KEY (minute, tenant, key_id, user, team, department, project,
                         environment, workflow, model, tier, upstream)
        );
        """,
    ),
    ("0003_rollup_hour", _coarser_rollup("rollup_hour", "hour", 3600)),
    (
        "0004_budgets",
        """
        CREATE TABLE budgets (
            name TEXT PRIMARY KEY,
            definition TEXT NOT NULL,
            updated_ms INTEGER NOT NULL,
            updated_by TEXT NOT NULL
        );
        CREATE TABLE budget_audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            budget TEXT NOT NULL,
            change TEXT NOT NULL,
            old TEXT,
            new TEXT
        );
        CREATE TABLE budget_alerts (
            budget TEXT NOT NULL,
            window_start INTEGER NOT NULL,
            at TEXT NOT NULL,
            fired_ms INTEGER NOT NULL,
            PRIMARY KEY (budget, window_start, at)
        );
        CREATE TABLE revisions (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO revisions VALUES ('budgets', 0);
        ALTER TABLE keys ADD COLUMN rpm INTEGER;
        ALTER TABLE keys ADD COLUMN tpm INTEGER;
        ALTER TABLE keys ADD COLUMN allow_critical INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    ("0005_rollup_day", _coarser_rollup("rollup_day", "day", 86400)),
    (
        # Savings: what the request would have cost on its baseline model (the one asked
        # for, or the route's baseline) minus what it cost. Negative when a fallback was
        # dearer. Older events claimed no savings: 0 is their true value.
        "0006_savings",
        """
        ALTER TABLE events ADD COLUMN strategy TEXT NOT NULL DEFAULT 'requested';
        ALTER TABLE events ADD COLUMN baseline_model TEXT;
        ALTER TABLE events ADD COLUMN saved_pico INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE rollup_minute ADD COLUMN saved_pico INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE rollup_hour ADD COLUMN saved_pico INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE rollup_day ADD COLUMN saved_pico INTEGER NOT NULL DEFAULT 0;
        UPDATE events SET strategy = 'budget_downgrade'
            WHERE route_reason LIKE 'budget_downgrade:%';
        UPDATE events SET strategy = 'fallback' WHERE route_reason LIKE 'fallback:%';
        UPDATE events SET strategy = 'fixed' WHERE route_reason LIKE 'route:%/fixed';
        UPDATE events SET strategy = 'cheapest-capable'
            WHERE route_reason LIKE 'route:%/cheapest-capable';
        CREATE INDEX events_strategy ON events (strategy, ts_ms)
        """,
    ),
    (
        # Response cache: exact entries by request digest, semantic rows (the in-memory
        # vector index is rebuilt from them), and a per-key opt-out.
        "0007_cache",
        """
        CREATE TABLE cache_entries (
            digest TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            answer BLOB NOT NULL
        );
        CREATE INDEX cache_entries_scope ON cache_entries (tenant, model, created_ms);
        CREATE INDEX cache_entries_expiry ON cache_entries (expires_ms);
        CREATE TABLE semantic_entries (
            key INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            model TEXT NOT NULL,
            context TEXT NOT NULL,
            text TEXT NOT NULL,
            vector BLOB NOT NULL,
            answer BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        ALTER TABLE keys ADD COLUMN cache_opt_out INTEGER NOT NULL DEFAULT 0
        """,
    ),
    (
        # Batch API and deferred jobs: uploaded files, batches (a deferred request is a
        # batch of one line, kind 'job') and their lines, each line's state and answer.
        "0008_batch",
        """
        CREATE TABLE batch_files (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            team TEXT NOT NULL,
            key_id TEXT NOT NULL,
            purpose TEXT NOT NULL,
            filename TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            content BLOB NOT NULL
        );
        CREATE INDEX batch_files_owner ON batch_files (tenant, team, created_at);
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            tenant TEXT NOT NULL,
            team TEXT NOT NULL,
            key_id TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            input_file_id TEXT,
            completion_window TEXT NOT NULL,
            status TEXT NOT NULL,
            priority INTEGER NOT NULL,
            workflow TEXT NOT NULL,
            tags TEXT NOT NULL,
            metadata TEXT,
            callback_url TEXT,
            created_at INTEGER NOT NULL,
            in_progress_at INTEGER,
            finalizing_at INTEGER,
            completed_at INTEGER,
            failed_at INTEGER,
            expired_at INTEGER,
            cancelling_at INTEGER,
            cancelled_at INTEGER,
            expires_at INTEGER NOT NULL,
            output_file_id TEXT,
            error_file_id TEXT,
            errors TEXT,
            total INTEGER NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            paused_reason TEXT,
            cost_pico INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX batches_owner ON batches (tenant, team, created_at);
        CREATE INDEX batches_status ON batches (status);
        CREATE TABLE batch_lines (
            batch_id TEXT NOT NULL,
            line INTEGER NOT NULL,
            custom_id TEXT NOT NULL,
            body BLOB NOT NULL,
            tokens INTEGER NOT NULL,
            state TEXT NOT NULL,
            lease_until INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            status_code INTEGER,
            response BLOB,
            finished_at INTEGER,
            upstream_batch TEXT,
            PRIMARY KEY (batch_id, line)
        );
        CREATE INDEX batch_lines_state ON batch_lines (state, batch_id)
        """,
    ),
    (
        # Candidate self-hosted models measured by `tokenomy distill` / `quantize-eval`
        # (tokenomy.model.candidates); money as decimal text, the full report as JSON.
        "0009_model_candidates",
        """
        CREATE TABLE model_candidates (
            name TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            task TEXT NOT NULL,
            path TEXT NOT NULL,
            base_model TEXT NOT NULL,
            params INTEGER NOT NULL,
            layers INTEGER NOT NULL,
            hidden INTEGER NOT NULL,
            heads INTEGER NOT NULL,
            kv_heads INTEGER NOT NULL,
            head_dim INTEGER NOT NULL,
            vocab INTEGER NOT NULL,
            weights TEXT NOT NULL,
            gpu TEXT NOT NULL,
            isl INTEGER NOT NULL,
            osl INTEGER NOT NULL,
            usd_per_mtok TEXT,
            usd_per_mtok_all_tokens TEXT,
            quality_metric TEXT NOT NULL,
            quality REAL NOT NULL,
            base_quality REAL,
            cpu_tokens_per_s REAL,
            report TEXT NOT NULL,
            created_at INTEGER NOT NULL
        )
        """,
    ),
]


class Cursor(Protocol):
    """What the code uses of a DB-API cursor (SQLite's, or the PostgreSQL adapter's)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A ledger database connection in autocommit mode; SQL is written in the dialect
    SQLite and PostgreSQL share (see :mod:`tokenomy.postgres` for the translation)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def check_url(url: str) -> None:
    """Raise a ConfigError naming what is wrong with a database URL."""
    if url.startswith(POSTGRES_PREFIXES):
        return
    sqlite_path(url)


def sqlite_path(url: str) -> str:
    """``sqlite:///./x.db`` → ``./x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``;
    ``sqlite://:memory:`` is refused (the ledger must survive the process)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(
            f"database {url!r} is not supported: use sqlite:///PATH or postgresql://..."
        )
    path = url[len(prefix) :]
    if not path or path == ":memory:":
        raise ConfigError("database: give a file path, e.g. sqlite:///./tokenomy.db")
    return path


def dialect(conn: Connection) -> str:
    """``sqlite`` or ``postgresql``: for the few functions the two spell differently."""
    return str(getattr(conn, "dialect", "sqlite"))


def time_bucket(conn: Connection, fmt: str, seconds: str) -> str:
    """SQL formatting a Unix-seconds expression as UTC text with a strftime format
    (``%Y-%m-%d``, ``%Y-%m``, ``%Y-%W``, ``%Y-%m-%dT%H``)."""
    if dialect(conn) == "sqlite":
        return f"strftime('{fmt}', {seconds}, 'unixepoch')"
    pg = fmt.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")
    pg = pg.replace("%H", "HH24").replace("%W", "IW").replace("T", '"T"')
    return f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', '{pg}')"


def json_field(conn: Connection, column: str, key_sql: str) -> str:
    """SQL reading one top-level string field of a JSON text column; ``key_sql`` is a
    placeholder or literal holding :func:`tag_path`'s key."""
    if dialect(conn) == "sqlite":
        return f"json_extract({column}, {key_sql})"
    return f"(({column})::jsonb ->> {key_sql})"


def tag_path(conn: Connection, tag: str, *, literal: bool = False) -> str:
    """The key of a tag for :func:`json_field`, as a parameter value (or a SQL literal)."""
    name = tag.replace('"', "").replace("'", "")
    key = f'$."{name}"' if dialect(conn) == "sqlite" else name
    return f"'{key}'" if literal else key


def connect(url: str) -> Connection:
    if url.startswith(POSTGRES_PREFIXES):
        from tokenomy.postgres import PgConnection

        pg = PgConnection(url)
        migrate(pg)
        return pg
    path = sqlite_path(url)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    migrate(conn)
    return conn


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """One write transaction, all or nothing: committed when the block ends, rolled back
    when it raises. On SQLite it takes the write lock at once (``BEGIN IMMEDIATE``), so
    two writers wait for each other instead of failing half-way."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_MIGRATION_LOCK = 7_263_548_101  # pg_advisory_lock key: one migrating process at a time


def migrate(conn: Connection) -> None:
    """Apply the migrations not yet applied, each in its own transaction. Several
    processes may start at once: SQLite's write lock (BEGIN IMMEDIATE) or PostgreSQL's
    advisory lock lets one apply a migration; the others then find it done. On
    PostgreSQL the statements get its column types (:func:`tokenomy.postgres.translate_ddl`)."""
    postgres = dialect(conn) == "postgresql"
    if postgres:
        conn.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))

    def ddl(statement: str) -> str:
        from tokenomy.postgres import translate_ddl

        return translate_ddl(statement) if postgres else statement

    try:
        conn.execute(
            ddl("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_ms INTEGER)")
        )
        done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with transaction(conn):
                # Another process may have applied it while we waited for the write lock.
                if conn.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        conn.execute(ddl(statement))
                conn.execute(
                    "INSERT INTO migrations VALUES (?, ?)", (name, int(time.time() * 1000))
                )
    finally:
        if postgres:
            conn.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))
