"""Bad input at scale on the proxy routes: garbage, wrong JSON types, deep nesting and
bodies over ``server.max_body_bytes`` get a 4xx in OpenAI's error format that names the
problem, never a 5xx, and a burst of oversized bodies leaves the gateway's memory flat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ADMIN_KEY, Gateway, MockUpstream, gateway_config, start_gateway, stop

MAX_BODY = 256 * 1024
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ROUTES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": {"model": "gpt-4o-mini", "prompt": "hi"},
    "/v1/embeddings": {"model": "embed-small", "input": "hi"},
    "/v1/responses": {"model": "gpt-4o-mini", "input": "hi"},
}
# The field of each route that holds the prompt (where a client would nest content).
PROMPT_FIELD = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
    "/v1/responses": "input",
}


@pytest.fixture(scope="module")
def small_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    """A gateway with a small body limit and a budget over every request (so the budget's
    walk over the prompt runs on each one)."""
    tmp_path = tmp_path_factory.mktemp("bad-input")
    config = gateway_config(
        tmp_path / "ledger.db", mock_upstream, server={"max_body_bytes": MAX_BODY}
    )
    gw = start_gateway(tmp_path, config)
    budget = gw.admin("PUT", "/admin/budgets/all", json={"scope": {}, "limit_usd": "1000"})
    assert budget.status_code == 200, budget.text
    yield gw
    stop(gw.process)


@pytest.fixture(scope="module")
def key(small_gateway: Gateway) -> str:
    return small_gateway.create_key(team="fuzzers")


def post(gateway: Gateway, path: str, body: bytes, key: str) -> httpx.Response:
    return httpx.post(
        gateway.url + path, content=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def assert_error(response: httpx.Response, status: int, mentions: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert mentions in error["message"], error["message"]


def nested(depth: int, kind: str) -> Any:
    """A value ``depth`` arrays or objects deep."""
    value: Any = "deep"
    for _ in range(depth - 1):
        value = [value] if kind == "list" else {"content": value}
    return value


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"\x00\xff\xfe\x9c garbage", "not valid JSON"),
        (b'{"model": "gpt-4o-mini"', "not valid JSON"),
        (json.dumps({"model": "x"}).encode("utf-16"), "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"a string"', "JSON object"),
        (b"null", "JSON object"),
        (b"1e999", "not valid JSON"),
        (b"", "empty"),
    ],
)
def test_garbage_and_non_objects_are_400(
    small_gateway: Gateway, key: str, path: str, body: bytes, mentions: str
) -> None:
    assert_error(post(small_gateway, path, body, key), 400, mentions)


WRONG_TYPES: list[tuple[str, Any]] = [
    *(("model", value) for value in (42, {"an": "object"}, [None], True, "")),
    *(("prompt-field", value) for value in (42, {"an": "object"}, True, 1.5)),
    *(("max_tokens", value) for value in ("ten", {"an": "object"}, [None], True, 0, -1, 2.5)),
    *(("stream", value) for value in (42, "yes", {"an": "object"}, [None])),
    *(("stream_options", value) for value in (42, "yes", [None])),
]


# Embeddings read no output limit or stream options: the provider judges those there.
WRONG_TYPE_CASES = [
    (path, field, value)
    for path in ROUTES
    for field, value in WRONG_TYPES
    if not (path.endswith("embeddings") and field in ("max_tokens", "stream", "stream_options"))
]


@pytest.mark.parametrize(("path", "field", "value"), WRONG_TYPE_CASES)
def test_wrong_json_types_are_400_naming_the_field(
    small_gateway: Gateway, key: str, path: str, field: str, value: Any
) -> None:
    name = PROMPT_FIELD[path] if field == "prompt-field" else field
    body = {**ROUTES[path], name: value}
    response = post(small_gateway, path, json.dumps(body).encode(), key)
    assert_error(response, 400, name)
    assert response.json()["error"]["param"] == name


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [129, 300, 1000])
def test_deeply_nested_json_is_400(
    small_gateway: Gateway, key: str, path: str, kind: str, depth: int
) -> None:
    """Up to 1,024 levels parse, but re-serializing for the upstream stops at 255 (a bare
    500 before) and the prompt walks would exhaust the stack: refused up front."""
    body = {**ROUTES[path], "metadata": nested(depth, kind)}
    raw = json.dumps(body).encode() if depth < 900 else _deep_raw(body, depth, kind)
    assert_error(post(small_gateway, path, raw, key), 400, "levels deep")


def _deep_raw(body: dict[str, Any], depth: int, kind: str) -> bytes:
    """json.dumps itself recurses; build the deepest bodies by hand."""
    opening, closing = ("[", "]") if kind == "list" else ('{"content": ', "}")
    nest = opening * (depth - 1) + '"deep"' + closing * (depth - 1)
    head = json.dumps({k: v for k, v in body.items() if k != "metadata"})
    return (head[:-1] + ', "metadata": ' + nest + "}").encode()


def test_a_deep_but_reasonable_schema_is_served(small_gateway: Gateway, key: str) -> None:
    """The limit refuses pathological nesting, not real structured-output schemas."""
    schema: dict[str, Any] = {"type": "string"}
    for level in range(60):  # 60 object levels: 124 JSON levels in the request
        schema = {"type": "object", "properties": {f"f{level}": schema}}
    turns = [{"role": "user", "content": f"turn {n}"} for n in range(20)]
    body: dict[str, Any] = {
        "messages": turns,  # enough brackets that the nesting walk runs
        "model": "premium-model",  # renamed for the upstream: the body is re-serialized
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }
    assert json_depth(body) == 124
    response = post(small_gateway, "/v1/chat/completions", json.dumps(body).encode(), key)
    assert response.status_code == 200, response.text
    # The same request five levels deeper is over the limit.
    body["response_format"]["json_schema"]["schema"] = {"a": [{"b": [[schema]]}]}
    assert json_depth(body) == 129
    response = post(small_gateway, "/v1/chat/completions", json.dumps(body).encode(), key)
    assert_error(response, 400, "levels deep")


def json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


def test_a_renamed_model_with_nesting_orjson_cannot_write_is_400_not_500(
    small_gateway: Gateway, key: str
) -> None:
    """Regression: 256 to 1,024 levels parsed, then failed to serialize for the upstream."""
    body = {
        **CHAT,
        "model": "premium-model",
        "tools": nested(300, "list"),
    }
    response = post(small_gateway, "/v1/chat/completions", json.dumps(body).encode(), key)
    assert_error(response, 400, "128 levels deep")


@pytest.mark.parametrize("path", ROUTES)
def test_bodies_over_the_limit_are_413(small_gateway: Gateway, key: str, path: str) -> None:
    body = {**ROUTES[path], "user": "x" * (MAX_BODY + 1)}
    assert_error(post(small_gateway, path, json.dumps(body).encode(), key), 413, "larger than")
    # Just under the limit is read and served.
    body = {**ROUTES[path], "user": "x" * (MAX_BODY - 1024)}
    assert post(small_gateway, path, json.dumps(body).encode(), key).status_code == 200


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "prompt",
        "input",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "stream",
        "stream_options",
        "tools",
        "instructions",
    ]
)


@pytest.mark.parametrize("path", ROUTES)
def test_random_json_bodies_never_get_a_server_error(
    small_gateway: Gateway, key: str, path: str
) -> None:
    """Generated bodies: valid ones with fields overwritten by arbitrary JSON, and arbitrary
    objects. Every answer is a success or a 4xx in OpenAI's error format."""
    client = httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=30)

    @settings(
        max_examples=60,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(st.dictionaries(FIELDS, JSON_VALUES, max_size=3), st.booleans())
    def check(extra: dict[str, Any], keep_base: bool) -> None:
        body = {**ROUTES[path], **extra} if keep_base else extra
        response = client.post(small_gateway.url + path, content=json.dumps(body).encode())
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error["message"], str) and error["message"]
            assert isinstance(error["type"], str)

    with client:
        check()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn may run workers)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        status = Path(f"/proc/{current}/status").read_text()
        total += next(
            int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS")
        )
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            pids.extend(int(child) for child in children)
    return total


def oversized_burst(gateway: Gateway, key: str, count: int, size: int) -> None:
    body = json.dumps({**CHAT, "user": "x" * size}).encode()

    def send(index: int) -> int:
        path = list(ROUTES)[index % len(ROUTES)]
        return post(gateway, path, body, key).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(count)))
    assert set(statuses) == {413}, statuses


def test_a_burst_of_oversized_bodies_leaves_memory_flat(small_gateway: Gateway, key: str) -> None:
    """Each body is 16x the limit; the gateway refuses it after reading the limit, so memory
    cannot grow with what was sent (96 MiB per burst), and a second burst adds nothing."""
    pid = small_gateway.process.pid
    size = 16 * MAX_BODY
    oversized_burst(small_gateway, key, 8, size)  # warm-up: allocator arenas, connections
    before = rss_bytes(pid)
    oversized_burst(small_gateway, key, 24, size)
    after_first = rss_bytes(pid)
    oversized_burst(small_gateway, key, 24, size)
    after_second = rss_bytes(pid)
    sent = 48 * size
    growth = after_second - before
    print(
        f"RSS before {before / 2**20:.1f} MiB, after burst 1 {after_first / 2**20:.1f} MiB, "
        f"after burst 2 {after_second / 2**20:.1f} MiB; {sent / 2**20:.0f} MiB refused"
    )
    assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert after_second - after_first < 8 * 2**20
    # Still serving.
    ok = post(
        small_gateway,
        "/v1/chat/completions",
        json.dumps(CHAT).encode(),
        key,
    )
    assert ok.status_code == 200, ok.text


def test_admin_and_batch_routes_refuse_oversized_bodies_before_reading_them(
    small_gateway: Gateway,
) -> None:
    """Regression: the admin app read any body whole, even without the admin key (a 200 MB
    POST /admin/keys grew the process by 380 MB); now the same limit applies, declared
    length or not."""
    big = b'{"user": "' + b"a" * (4 * MAX_BODY) + b'"}'

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    for method, path, auth in [
        ("POST", "/admin/keys", None),
        ("POST", "/admin/keys", ADMIN_KEY),
        ("PUT", "/admin/budgets/huge", ADMIN_KEY),
        ("POST", "/ui/login", None),
        ("POST", "/v1/batches", None),
    ]:
        headers = {"authorization": f"Bearer {auth}"} if auth else {}
        for content in (big, chunked()):
            response = httpx.request(
                method, small_gateway.url + path, content=content, headers=headers, timeout=30
            )
            assert response.status_code == 413, (path, response.text)
            assert response.json()["error"]["code"] == "request_too_large"
