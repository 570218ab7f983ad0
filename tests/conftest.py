"""Shared fixtures: real mock-upstream and gateway servers on free loopback ports."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ADMIN_KEY = "admin-secret"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# `TOKENOMY_TEST_DATABASE=postgresql make test`-style runs: every test gateway gets a
# fresh PostgreSQL database instead of a SQLite file (the Makefile runs the gateway-level
# tests both ways; see tests/test_postgres_backend.py for the CI guard).
POSTGRES_MODE = os.environ.get("TOKENOMY_TEST_DATABASE") == "postgresql"
POSTGRES_SERVER = os.environ.get("TOKENOMY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")

PREMIUM_PRICE = {
    "input_per_mtok": "5.00",
    "cached_input_per_mtok": "2.50",
    "output_per_mtok": "15.00",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {url}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"server at {url} did not come up")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a server and its worker processes (each server runs in its own session)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # no orphaned worker survives a test


class JsonServer:
    """A loopback HTTP server answering each POST with ``answer(path, headers, body)``:
    a status and a JSON body (None: no body). For upstreams and webhooks a test controls."""

    def __init__(self, answer: Callable[[str, dict[str, str], bytes], tuple[int, Any]]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, payload = answer(self.path, headers, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class MockUpstream:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def start_mock(*args: str) -> MockUpstream:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenomy.mock", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    mock = MockUpstream(port, process)
    wait_until_up(f"{mock.base_url}/models", process)
    return mock


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[MockUpstream]:
    mock = start_mock()
    yield mock
    stop(mock.process)


def postgres_admin() -> Any:
    """A connection to the test server's maintenance database; in CI a missing server
    fails the test, elsewhere it skips it."""
    import psycopg

    try:
        return psycopg.connect(f"{POSTGRES_SERVER}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_SERVER}: {exc}")


def database_url(db_path: Path) -> str:
    """A SQLite file, or (PostgreSQL mode) a fresh PostgreSQL database named after it."""
    if not POSTGRES_MODE:
        return f"sqlite:///{db_path}"
    import hashlib

    name = "tok_" + hashlib.sha1(str(db_path).encode()).hexdigest()[:20]
    with postgres_admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{POSTGRES_SERVER}/{name}"


def ledger_rows(database: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows (by column name) of a query on a test gateway's database, either engine."""
    if database.startswith("postgresql://"):
        import psycopg
        from psycopg.rows import dict_row

        from tokenomy.postgres import translate

        with psycopg.connect(database, row_factory=dict_row) as pg:
            return list(pg.execute(translate(sql, bool(params)), params or None).fetchall())
    conn = sqlite3.connect(database[len("sqlite:///") :])
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def gateway_config(db_path: Path, mock: MockUpstream, **extra: Any) -> dict[str, Any]:
    """The standard test deployment: priced, genai-priced, self-hosted, embedding,
    Anthropic and deliberately faulty models, all served by the mock upstream."""
    base = mock.base_url
    config: dict[str, Any] = {
        "database": database_url(db_path),
        "admin_key": ADMIN_KEY,
        "upstreams": {
            "mock": {"base_url": base, "api_key": "none"},
            "claude": {"base_url": base, "kind": "anthropic", "api_key": "sk-ant-test-secret"},
            "broken": {"base_url": base, "headers": {"x-mock-fault": "error"}},
            "limited": {"base_url": base, "headers": {"x-mock-fault": "error-429"}},
            "hanging": {"base_url": base, "headers": {"x-mock-fault": "timeout"}, "timeout_s": 1},
            "garbled": {"base_url": base, "headers": {"x-mock-fault": "malformed"}},
            "cut": {"base_url": base, "headers": {"x-mock-fault": "truncate"}},
            "slow": {"base_url": base, "headers": {"x-mock-fault": "slow"}},
            "nowhere": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "connect_timeout_s": 1},
        },
        "models": [
            {
                "name": "premium-model",
                "upstream": "mock",
                "upstream_model": "mock-large",
                "tier": "premium",
                "price": PREMIUM_PRICE,
            },
            {"name": "gpt-4o-mini", "upstream": "mock"},
            {
                "name": "llama-70b",
                "upstream": "mock",
                "upstream_model": "llama-3.1-70b",
                "self_hosted": {
                    "gpu_hour_usd": "2.40",
                    "gpus": 2,
                    "output_tokens_per_second": "800",
                    "input_tokens_per_second": "12000",
                },
            },
            {
                "name": "embed-small",
                "upstream": "mock",
                "kind": "embedding",
                "upstream_model": "text-embedding-3-small",
            },
            {
                "name": "claude-sonnet",
                "upstream": "claude",
                "upstream_model": "claude-sonnet-4-5",
                "price_provider": "anthropic",
            },
            {
                "name": "reasoner",
                "upstream": "mock",
                "upstream_model": "mock-reasoner",
                "price": {"input_per_mtok": "1.10", "output_per_mtok": "4.40"},
            },
        ],
    }
    for name in ("broken", "limited", "hanging", "garbled", "cut", "slow", "nowhere"):
        config["models"].append(
            {
                "name": f"{name}-model",
                "upstream": name,
                "upstream_model": "mock-small",
                "price": {"input_per_mtok": "1.00", "output_per_mtok": "2.00"},
            }
        )
    config.update(extra)
    return config


@dataclass
class Gateway:
    port: int
    config_path: Path
    db_path: Path
    process: subprocess.Popen[bytes]
    database: str = ""  # its URL (a SQLite file at db_path, or PostgreSQL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_KEY}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def chat(
        self, key: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST /v1/chat/completions with this key (and extra headers)."""
        return httpx.post(
            self.base_url + "/chat/completions",
            json=body,
            timeout=60,
            headers={"authorization": f"Bearer {key}", **(headers or {})},
        )

    def create_key(self, **principal: Any) -> str:
        response = self.admin("POST", "/admin/keys", json=principal)
        assert response.status_code == 200, response.text
        return str(response.json()["key"])

    def stored_text(self) -> str:
        """Everything the database holds, as text (to check what is never stored)."""
        if not self.database.startswith("postgresql://"):
            return self.db_path.read_bytes().decode("latin-1")
        tables = ledger_rows(
            self.database,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
        return "\n".join(
            str(row["t"])
            for table in tables
            for row in ledger_rows(
                self.database, f"SELECT t::text AS t FROM {table['table_name']} t"
            )
        )

    def events(self) -> list[Any]:
        return ledger_rows(self.database, "SELECT * FROM events ORDER BY ts_ms")


def start_gateway(tmp_path: Path, config: dict[str, Any], *args: str) -> Gateway:
    gateway = launch_gateway(tmp_path, config, *args)
    wait_until_up(f"{gateway.url}/healthz", gateway.process)
    return gateway


def launch_gateway(
    tmp_path: Path, config: dict[str, Any], *args: str, port: int | None = None
) -> Gateway:
    """Start a gateway process without waiting for it to listen."""
    config_path = tmp_path / "tokenomy.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = port or free_port()
    env = {**os.environ, "TOKENOMY_CONFIG": "", "TOKENOMY_ADMIN_KEY": ""}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenomy",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gateway.log").open("ab"),
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    url = config["database"]
    db_path = Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else tmp_path / "pg"
    return Gateway(port, config_path, db_path, process, url)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("gateway")
    gw = start_gateway(tmp_path, gateway_config(tmp_path / "ledger.db", mock_upstream))
    yield gw
    stop(gw.process)
