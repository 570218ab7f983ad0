"""Recorded means acknowledged: kill -9 loses no answered request; a client that leaves
mid-stream is charged for what it was sent, flagged estimated."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from conftest import Gateway, MockUpstream, gateway_config, start_gateway, stop


def wait_for_event(gateway: Gateway, request_id: str, timeout: float = 10.0) -> sqlite3.Row:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [e for e in gateway.events() if e["id"] == request_id]
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"event {request_id} never reached the ledger")


def test_client_disconnect_mid_stream_charges_delivered_tokens(gateway: Gateway) -> None:
    key = gateway.create_key(team="leaver")
    body = {
        "model": "slow-model",
        "messages": [{"role": "user", "content": "tell me a story"}],
        "max_tokens": 100,
        "stream": True,
    }
    chunks = 0
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            gateway.base_url + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        ) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        assert response.headers["x-tokenomy-cost-usd"] == "pending"
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                chunks += 1
            if chunks >= 4:
                break  # leave: closing the stream drops the connection
    event = wait_for_event(gateway, request_id)
    assert event["status"] == 499 and event["error"] == "client disconnected"
    assert event["estimated"] == 1
    # Charged for what was sent (the mock streams one token per chunk), not for max_tokens.
    assert 3 <= event["output_tokens"] <= 12
    assert event["input_tokens"] > 0
    per_mtok_in, per_mtok_out = 1, 2  # slow-model's configured prices
    assert (
        event["cost_pico"]
        == (event["input_tokens"] * per_mtok_in + event["output_tokens"] * per_mtok_out) * 10**6
    )


def test_kill_9_loses_no_acknowledged_request(tmp_path: Path, mock_upstream: MockUpstream) -> None:
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    gateway = start_gateway(tmp_path, config)
    key = gateway.create_key(team="crash")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop_flag = threading.Event()

    def hammer(stream: bool) -> None:
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
            "stream": stream,
        }
        with httpx.Client(timeout=10) as client:
            while not stop_flag.is_set():
                try:
                    response = client.post(
                        gateway.base_url + "/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    if response.status_code == 200 and (not stream or "[DONE]" in response.text):
                        with lock:
                            acknowledged.append(response.headers["x-request-id"])
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=hammer, args=(i % 2 == 1,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    # The whole server dies at once (an OOM kill, a lost node): the server process and the
    # worker process that holds the ledger writer.
    os.killpg(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait()
    stop_flag.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) > 100, "the load did not get going"

    restarted = start_gateway(tmp_path, config)
    try:
        recorded = {e["id"] for e in restarted.events()}
        missing = set(acknowledged) - recorded
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged requests lost"
        report = restarted.admin("GET", "/admin/spend", params={"group_by": "team"}).json()
        assert report["rows"][0]["requests"] >= len(acknowledged)
    finally:
        stop(restarted.process)


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.extend(int(child) for child in children)
    return found


def test_workers_do_not_outlive_a_killed_server(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    # granian always runs the app in a worker process (uvicorn does with --workers > 1).
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    gateway = start_gateway(tmp_path, config, "--server", "granian")
    workers = children_of(gateway.process.pid)
    assert workers, "expected the server to run the app in a worker process"
    gateway.process.send_signal(signal.SIGKILL)  # the server process only, not its group
    gateway.process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text()
    ]
    stop(gateway.process)
    assert not alive, f"orphaned workers still running: {alive}"
