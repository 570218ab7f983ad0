"""schemathesis against the admin API's own OpenAPI document, on a real gateway process.

Every operation of ``/admin/openapi.json`` gets generated requests (schemathesis' examples,
coverage, fuzzing and stateful phases, valid and invalid data): the admin routes with the
admin key, the Batch API with a team's gateway key (the admin key is not one). No answer
may be a server error, and the gateway logs no traceback. The run is seeded, deterministic
and bounded, so it is reproducible and takes seconds. (schemathesis' pytest plugin does
not run under pytest 9, so its CLI is run, as CI would.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ADMIN_KEY, Gateway, MockUpstream, gateway_config, start_gateway, stop

MAX_EXAMPLES = 20
SEED = 20240611


@pytest.fixture(scope="module")
def fuzz_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("fuzz-admin")
    gw = start_gateway(tmp_path, gateway_config(tmp_path / "ledger.db", mock_upstream))
    # Something to find: a served request (spend, requests), a budget and its audit trail.
    key = gw.create_key(team="seed")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert gw.chat(key, chat).status_code == 200
    assert gw.admin("PUT", "/admin/budgets/seed", json={"limit_usd": "5"}).status_code == 200
    yield gw
    stop(gw.process)


def schemathesis_run(gateway: Gateway, token: str, workdir: Path, *select: str) -> str:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{gateway.url}/admin/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--workers",
        "2",
        "--request-timeout",
        "15",
        "--no-color",
        "--header",
        f"Authorization: Bearer {token}",
        *select,
    ]
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


@pytest.mark.parametrize("surface", ["admin", "batch"])
def test_schemathesis_finds_no_server_error(
    fuzz_gateway: Gateway, tmp_path: Path, surface: str
) -> None:
    if surface == "admin":
        # /ui/api/events is a never-ending event stream, not a request and answer.
        token = ADMIN_KEY
        select = ["--exclude-path-regex", "^/v1/", "--exclude-path", "/ui/api/events"]
    else:
        token = fuzz_gateway.create_key(team="fuzz", tenant="fuzz-tenant")
        select = ["--include-path-regex", "^/v1/"]
    output = schemathesis_run(fuzz_gateway, token, tmp_path, *select)
    operations = re.search(r"Tested: (\d+)", output)
    generated = re.search(r"(\d+) generated", output)
    assert operations and generated, output[-3000:]
    print(f"schemathesis ({surface}): {generated[1]} test cases over {operations[1]} operations")
    assert int(operations[1]) >= (30 if surface == "admin" else 10)
    log = (fuzz_gateway.config_path.parent / "gateway.log").read_text()
    assert "Traceback" not in log, log[-4000:]


def test_empty_dimension_is_a_400_not_a_500(fuzz_gateway: Gateway) -> None:
    """Regression (found by schemathesis): ``?dimension=`` passed the dimension check and
    reached SQL as ``SELECT DISTINCT  FROM``."""
    response = fuzz_gateway.admin("GET", "/ui/api/values", params={"dimension": ""})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "dimension"
    ok = fuzz_gateway.admin("GET", "/ui/api/values", params={"dimension": "team"})
    assert ok.status_code == 200 and "seed" in ok.json()["values"]
