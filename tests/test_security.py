"""Security promises, one test each: keys hashed at rest and compared in constant time,
admin and tenant separation, no content stored unless enabled, provider keys never shown.
(Request size limits: tests/test_bad_input.py.)"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import (
    ADMIN_KEY,
    REPO,
    Gateway,
    JsonServer,
    MockUpstream,
    gateway_config,
    start_gateway,
    stop,
)

OPENAI_SECRET = "sk-proj-echo-SECRET-0123456789"
ANTHROPIC_SECRET = "sk-ant-echo-SECRET-9876543210"
UNREACHABLE_SECRET = "sk-nowhere-SECRET-5555"
SECRETS = ("sk-ant-test-secret", OPENAI_SECRET, ANTHROPIC_SECRET, UNREACHABLE_SECRET)


class EchoingUpstream(JsonServer):
    """A provider that refuses every key with 401 and quotes the whole key back."""

    def __init__(self) -> None:
        def answer(path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
            given = headers.get("authorization") or headers.get("x-api-key")
            message = f"Incorrect API key provided: {given}"
            if headers.get("x-api-key"):
                error = {"type": "authentication_error", "message": message}
                return 401, {"type": "error", "error": error}
            return 401, {"error": {"message": message, "type": "invalid_request_error"}}

        super().__init__(answer)
        self.base_url = self.url + "/v1"


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("security")
    echo = EchoingUpstream()
    config = gateway_config(
        tmp_path / "ledger.db",
        mock_upstream,
        telemetry={"metrics_public": False},
        cache={"enabled": True},
    )
    config["upstreams"].update(
        {
            "echo": {"base_url": echo.base_url, "api_key": OPENAI_SECRET},
            "echo-claude": {
                "base_url": echo.base_url,
                "kind": "anthropic",
                "api_key": ANTHROPIC_SECRET,
            },
            "keyed-nowhere": {
                "base_url": config["upstreams"]["nowhere"]["base_url"],
                "api_key": UNREACHABLE_SECRET,
                "connect_timeout_s": 1,
            },
        }
    )
    for name in ("echo", "echo-claude", "keyed-nowhere"):
        config["models"].append(
            {
                "name": f"{name}-model",
                "upstream": name,
                "upstream_model": "claude-x" if name == "echo-claude" else "gpt-x",
                "price": {"input_per_mtok": "1.00", "output_per_mtok": "2.00"},
            }
        )
    gw = start_gateway(tmp_path, config)
    yield gw
    stop(gw.process)
    echo.close()


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def database_bytes(gateway: Gateway) -> bytes:
    """The SQLite file and its write-ahead log, as an attacker with the disk would read them."""
    files = [gateway.db_path, Path(f"{gateway.db_path}-wal")]
    return b"".join(path.read_bytes() for path in files if path.exists())


def test_keys_are_hashed_at_rest(secure: Gateway) -> None:
    key = secure.create_key(team="hashing")
    assert secure.chat(key, CHAT).status_code == 200
    stored = database_bytes(secure)
    assert key.encode() not in stored
    assert key[8:].encode() not in stored  # not even the part after the shown prefix
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    listed = secure.admin("GET", "/admin/keys").text
    assert key not in listed and key[:8] in listed  # the prefix identifies it, nothing more


# Where secrets come from: the admin key, provider keys, key hashes, session MACs.
SECRET_SOURCES = {"admin_key", "_admin_key", "api_key", "resolved_api_key", "key_hash"}
SECRET_SOURCES |= {"hash_key", "_mac"}


def _mentions(node: ast.AST) -> set[str]:
    return {
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Name | ast.Attribute)
    }


def secret_comparisons(tree: ast.AST) -> list[int]:
    """Lines where ``==``/``!=`` touches a secret: a secret source itself, or a local name
    assigned from one in the same function."""
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        tainted = set(SECRET_SOURCES)
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and _mentions(node.value) & SECRET_SOURCES:
                tainted |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Compare)
                and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
                and any(_mentions(side) & tainted for side in (node.left, *node.comparators))
            ):
                found.append(node.lineno)
    return found


def test_secrets_are_compared_in_constant_time_only() -> None:
    """No ``==`` on a secret anywhere in the package: presented secrets are checked with
    ``hmac.compare_digest`` (virtual keys are looked up by their SHA-256, never compared)."""
    offenders = []
    digests = []
    for path in sorted((REPO / "src" / "tokenomy").rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source, str(path))
        name = str(path.relative_to(REPO))
        offenders += [f"{name}:{line}" for line in secret_comparisons(tree)]
        if "compare_digest" in source:
            digests.append(name)
    assert offenders == []
    # The checker sees an == on a secret (so the empty list above means something).
    planted = (
        "def f(request, settings):\n    expected = settings.admin_key\n    return x == expected"
    )
    assert secret_comparisons(ast.parse(planted)) == [3]
    assert "src/tokenomy/principals/keys.py" in digests


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", "/admin/keys", {"authorization": "Bearer admin-s\xe9cret"}, None),
        ("GET", "/ui/api/overview", {"authorization": "Bearer \xff\xfe"}, None),
        ("GET", "/ui/api/overview", {"cookie": "tokenomy_ui=99999999999999.\xe9\xe9"}, None),
        ("POST", "/ui/login", {}, '{"key": "admin-s\\u00e9cret"}'),
        ("GET", "/metrics", {"authorization": "Bearer admin-s\xe9cret"}, None),
    ],
)
def test_a_non_ascii_secret_is_a_401_not_a_500(
    secure: Gateway, method: str, path: str, headers: dict[str, str], body: str | None
) -> None:
    """Regression: hmac.compare_digest raises TypeError for str with non-ASCII characters."""
    raw_headers = [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
    response = httpx.request(method, secure.url + path, headers=raw_headers, content=body)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"


def admin_operations(gateway: Gateway) -> list[tuple[str, str]]:
    spec = gateway.admin("GET", "/admin/openapi.json").json()
    return [
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, methods in spec["paths"].items()
        for method in methods
        if path.startswith(("/admin", "/ui/api"))
    ]


def test_a_team_key_is_refused_on_every_admin_route_and_metrics(secure: Gateway) -> None:
    key = secure.create_key(team="curious", tenant="curious-co")
    operations = [*admin_operations(secure), ("GET", "/metrics"), ("GET", "/admin/openapi.json")]
    assert len(operations) > 25
    assert ("DELETE", "/admin/cache") in operations and ("GET", "/admin/cache") in operations
    for method, path in operations:
        if path == "/admin/openapi.json":
            continue  # the document is public; what it describes is not
        response = httpx.request(
            method,
            secure.url + path,
            headers={"authorization": f"Bearer {key}"},
            json={} if method in ("POST", "PUT") else None,
            timeout=30,
        )
        assert response.status_code in (401, 403), (method, path, response.text)
        assert response.json()["error"]["type"] in ("authentication_error", "permission_error")
    # The same routes answer the admin key (so the refusals above are about the key).
    assert secure.admin("GET", "/admin/cache").status_code == 200
    admin_metrics = httpx.get(
        secure.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert admin_metrics.status_code == 200


def test_a_team_cannot_read_or_delete_another_teams_files_batches_or_jobs(
    secure: Gateway,
) -> None:
    owner = {"authorization": f"Bearer {secure.create_key(team='owners', tenant='acme')}"}
    other = {"authorization": f"Bearer {secure.create_key(team='others', tenant='acme')}"}
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
    uploaded = httpx.post(
        secure.base_url + "/files",
        headers=owner,
        files={"file": ("in.jsonl", json.dumps(line).encode() + b"\n")},
        data={"purpose": "batch"},
    )
    assert uploaded.status_code == 200, uploaded.text
    file_id = uploaded.json()["id"]
    batch = httpx.post(
        secure.base_url + "/batches",
        headers=owner,
        json={"input_file_id": file_id, "endpoint": "/v1/chat/completions"},
    )
    assert batch.status_code == 200, batch.text
    batch_id = batch.json()["id"]
    for method, path in [
        ("GET", f"/files/{file_id}"),
        ("GET", f"/files/{file_id}/content"),
        ("DELETE", f"/files/{file_id}"),
        ("GET", f"/batches/{batch_id}"),
        ("POST", f"/batches/{batch_id}/cancel"),
        ("GET", f"/jobs/{batch_id}"),
    ]:
        response = httpx.request(method, secure.base_url + path, headers=other)
        assert response.status_code == 404, (path, response.text)
        # A batch from another team cannot be started from this file either.
    stolen = httpx.post(
        secure.base_url + "/batches",
        headers=other,
        json={"input_file_id": file_id, "endpoint": "/v1/chat/completions"},
    )
    assert stolen.status_code == 404
    assert file_id not in httpx.get(secure.base_url + "/files", headers=other).text
    assert batch_id not in httpx.get(secure.base_url + "/batches", headers=other).text
    # The owner still sees both (the 404s were about the key, not the ids).
    assert httpx.get(secure.base_url + f"/files/{file_id}", headers=owner).status_code == 200
    assert httpx.get(secure.base_url + f"/batches/{batch_id}", headers=owner).status_code == 200


def test_no_prompt_or_completion_is_stored_by_default(secure: Gateway) -> None:
    key = secure.create_key(team="private")
    marker = "the launch code is PURPLE-ELEPHANT-4417"
    body = {**CHAT, "messages": [{"role": "user", "content": marker}]}
    answer = secure.chat(key, body)
    assert answer.status_code == 200
    completion = answer.json()["choices"][0]["message"]["content"]
    streamed = httpx.post(
        secure.base_url + "/chat/completions",
        json={**body, "stream": True},
        headers={"authorization": f"Bearer {key}"},
    )
    assert streamed.status_code == 200
    rows = [dict(row) for row in secure.events()]
    assert len([r for r in rows if r["team"] == "private"]) == 2
    for row in rows:
        assert row.get("prompt") is None and row.get("completion") is None
        assert marker not in json.dumps(row, default=str)
    # Nowhere in the ledger file either (the response cache is off for this tenant's text:
    # it stores hashes and answers only when enabled).
    stored = database_bytes(secure)
    assert marker.encode() not in stored
    assert len(completion) > 20 and completion.encode() not in stored
    assert marker not in secure.admin("GET", "/admin/requests").text


@pytest.mark.parametrize("stream", [False, True])
def test_provider_keys_never_appear_in_answers_logs_exports_or_metrics(
    secure: Gateway, tmp_path: Path, stream: bool
) -> None:
    key = secure.create_key(team="leaky")
    answers = []
    for model in ("echo-model", "echo-claude-model", "keyed-nowhere-model", "claude-sonnet"):
        response = httpx.post(
            secure.base_url + "/chat/completions",
            json={**CHAT, "model": model, "stream": stream},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        answers.append(response.text)
        if model != "claude-sonnet":
            assert response.status_code >= 400, response.text
    # The echoing provider's refusal is passed on, without the key it quoted.
    assert any("Incorrect API key" in answer for answer in answers), answers
    surfaces = {
        "answers": "\n".join(answers),
        "gateway.log": (secure.config_path.parent / "gateway.log").read_text(),
        "metrics": secure.admin("GET", "/metrics").text,
    }
    for path in ("/admin/models", "/admin/requests", "/admin/spend?group_by=model"):
        surfaces[path] = secure.admin("GET", path).text
    surfaces["ui models"] = secure.admin("GET", "/ui/api/models").text
    export = subprocess.run(
        [
            *(sys.executable, "-m", "tokenomy", "export", "focus", "--from", "2000-01-01"),
            *("--config", str(secure.config_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "TOKENOMY_CONFIG": ""},
        check=False,
    )
    assert export.returncode == 0, export.stderr
    assert "leaky" in export.stdout
    surfaces["focus export"] = export.stdout + export.stderr
    surfaces["ledger"] = database_bytes(secure).decode("latin-1")
    for name, text in surfaces.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {name}"
