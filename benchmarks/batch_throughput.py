"""Batch worker pool throughput, and what a batch saves against the same requests in real time.

    python benchmarks/batch_throughput.py [--lines 2000] [--workers 8 32] [--latency-ms 50]

One mock upstream (every answer delayed ``--latency-ms``, as a real provider is) and one
gateway per worker-pool size. For each size: upload ``--lines`` chat requests as a batch
file with the openai SDK, time create → completed (lines per second through the pool),
then send the same requests in real time with as many concurrent clients as the pool has
workers, and compare wall time and the ledger's cost of the two runs. The model's price
carries ``batch_discount: "0.5"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
import yaml

ADMIN_KEY = "bench-admin"
PRICE = {"input_per_mtok": "2.50", "output_per_mtok": "10.00", "batch_discount": "0.5"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(command: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{command[:4]} did not start; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def body(i: int) -> dict[str, object]:
    return {
        "model": "bench-model",
        "messages": [{"role": "user", "content": f"Summarize report number {i} in one line."}],
        "max_tokens": 32,
    }


def ledger_cost(database: Path, prefix: str) -> tuple[int, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        count, cost = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost_pico), 0) FROM events WHERE team = ?", (prefix,)
        ).fetchone()
    return int(count), int(cost)


async def realtime(url: str, key: str, lines: int, concurrency: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(lines):
        queue.put_nowait(i)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {key}"}) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                response = await client.post(url + "/v1/chat/completions", json=body(i))
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def run(workdir: Path, mock_url: str, lines: int, workers: int) -> dict[str, float]:
    folder = workdir / f"workers-{workers}"
    folder.mkdir()
    database = folder / "ledger.db"
    config = {
        "database": f"sqlite:///{database}",
        "admin_key": ADMIN_KEY,
        "upstreams": {"mock": {"base_url": mock_url, "api_key": "none"}},
        "models": [
            {"name": "bench-model", "upstream": "mock", "upstream_model": "mock", "price": PRICE}
        ],
        "batch": {"workers": workers},
    }
    (folder / "tokenomy.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gateway = start(
        [
            sys.executable,
            "-m",
            "tokenomy",
            "serve",
            "--config",
            str(folder / "tokenomy.yaml"),
            "--port",
            str(port),
        ],
        url + "/healthz",
        folder / "gateway.log",
    )
    try:
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        keys = {
            team: httpx.post(url + "/admin/keys", json={"team": team}, headers=admin).json()["key"]
            for team in ("batch", "realtime")
        }
        content = "\n".join(
            json.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body(i),
                }
            )
            for i in range(lines)
        ).encode()
        client = openai.OpenAI(base_url=url + "/v1", api_key=keys["batch"])
        uploaded = client.files.create(file=("bench.jsonl", content), purpose="batch")
        started = time.perf_counter()
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while batch.status != "completed":
            time.sleep(0.05)
            batch = client.batches.retrieve(batch.id)
        batch_s = time.perf_counter() - started
        realtime_s = asyncio.run(realtime(url, keys["realtime"], lines, workers))
        batch_count, batch_cost = ledger_cost(database, "batch")
        realtime_count, realtime_cost = ledger_cost(database, "realtime")
        assert batch_count == realtime_count == lines, (batch_count, realtime_count)
        return {
            "batch_lines_per_s": lines / batch_s,
            "realtime_per_s": lines / realtime_s,
            "batch_usd": batch_cost / 1e12,
            "realtime_usd": realtime_cost / 1e12,
        }
    finally:
        stop(gateway)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        mock = start(
            [
                sys.executable,
                "-m",
                "tokenomy.mock",
                "--port",
                str(port),
                "--latency-ms",
                str(args.latency_ms),
            ],
            f"http://127.0.0.1:{port}/v1/models",
            workdir / "mock.log",
        )
        try:
            print(f"{args.lines} chat lines, mock upstream latency {args.latency_ms:g} ms")
            print(
                f"{'workers':>7} {'batch lines/s':>14} {'real-time req/s':>16} "
                f"{'batch $':>10} {'real-time $':>12} {'batch/real-time cost':>21}"
            )
            for workers in args.workers:
                r = run(workdir, f"http://127.0.0.1:{port}/v1", args.lines, workers)
                print(
                    f"{workers:>7} {r['batch_lines_per_s']:>14.1f} {r['realtime_per_s']:>16.1f} "
                    f"{r['batch_usd']:>10.5f} {r['realtime_usd']:>12.5f} "
                    f"{r['batch_usd'] / r['realtime_usd']:>21.3f}"
                )
        finally:
            stop(mock)


if __name__ == "__main__":
    main()
