"""Throughput of the mock upstream alone: server pinned to one core, wrk to another.

    python benchmarks/mock_throughput.py [--server granian|uvicorn] [--duration 5]

Needs ``wrk`` and ``taskset`` (Linux). Prints requests/s and latency per scenario.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

import tokenomy

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a haiku about the sea."},
]
SCENARIOS: dict[str, tuple[str, dict[str, object]]] = {
    "chat, 16 tokens": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 16},
    ),
    "chat stream, 16 tokens, usage": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": MESSAGES,
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    "anthropic messages, 16 tokens": (
        "/v1/messages",
        {"model": "claude-haiku-4-5", "messages": MESSAGES[1:], "max_tokens": 16},
    ),
    "embeddings, 256 dims": (
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "Write a haiku about the sea."},
    ),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _lua(body: dict[str, object]) -> str:
    quoted = orjson.dumps(body).decode().replace("\\", "\\\\").replace("'", "\\'")
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{quoted}'\n"
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the mock server exited")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the mock server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="granian", choices=["granian", "uvicorn"])
    parser.add_argument("--duration", type=int, default=5, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--wrk-core", default="1")
    args = parser.parse_args()
    if not (shutil.which("wrk") and shutil.which("taskset")):
        raise SystemExit("needs wrk and taskset on PATH")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    src = str(Path(tokenomy.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = ["taskset", "-c", args.server_core, sys.executable, "-m", "tokenomy.mock"]
    command += ["--port", str(port), "--server", args.server, "--log-level", "warning"]
    process = subprocess.Popen(command, env=env)
    print(f"mock upstream ({args.server}) on core {args.server_core}; wrk on core {args.wrk_core}")
    print(f"{args.connections} connections, {args.duration} s per scenario, {os.cpu_count()} CPUs")
    try:
        _wait_ready(url, process)
        for name, (path, body) in SCENARIOS.items():
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
                script.write(_lua(body))
            wrk = ["taskset", "-c", args.wrk_core, "wrk", "-t1", f"-c{args.connections}"]
            wrk += [f"-d{args.duration}s", "-s", script.name, url + path]
            output = subprocess.run(wrk, capture_output=True, text=True, check=True).stdout
            os.unlink(script.name)
            rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
            latency = re.search(r"Latency\s+(\S+)", output)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
            print(
                f"{name:32s} {float(rate.group(1)) if rate else 0:>9.0f} req/s"
                f"   avg latency {latency.group(1) if latency else '?':>8s}"
                f"   non-2xx {errors.group(1) if errors else 0}"
            )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
