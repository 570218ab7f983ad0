"""The SQLite ledger's write-ahead log stays bounded under steady load.

Regression: the checkpoint thread only ran PASSIVE checkpoints, which never catch up with a
writer that commits back to back, so SQLite never restarted the WAL: it grew by about 6 KB
per request for as long as the load lasted (700 MB after 100,000 requests in the soak
benchmark), and its index (the -shm file, mapped into the gateway) with it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from conftest import POSTGRES_MODE, MockUpstream, gateway_config, start_gateway, stop

REQUESTS = 2500
CONCURRENCY = 32
# The writer truncates the WAL once it holds more than 4096 pages (16 MiB); what it may hold
# at a checkpoint tick is that plus about a second of writes (about 5 MiB here). Without the
# truncation these requests leave a WAL of about 68 MiB.
BOUND = 32 * 2**20


@pytest.mark.skipif(POSTGRES_MODE, reason="SQLite's write-ahead log")
def test_the_wal_is_truncated_under_steady_load(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    gateway = start_gateway(tmp_path, gateway_config(tmp_path / "ledger.db", mock_upstream))
    wal = Path(f"{gateway.db_path}-wal")
    try:
        key = gateway.create_key(team="wal")
        sizes: list[int] = []
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
        }

        async def load() -> int:
            limits = httpx.Limits(max_connections=CONCURRENCY)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                remaining = iter(range(REQUESTS))
                ok = 0

                async def worker() -> None:
                    nonlocal ok
                    for _ in remaining:
                        response = await client.post(
                            gateway.base_url + "/chat/completions",
                            json=body,
                            headers={"authorization": f"Bearer {key}"},
                        )
                        ok += response.status_code == 200
                        sizes.append(wal.stat().st_size if wal.exists() else 0)

                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
                return ok

        assert asyncio.run(load()) == REQUESTS
        time.sleep(1.5)  # a checkpoint tick after the load
        rows = gateway.events()
        assert sum(e["team"] == "wal" and e["status"] == 200 for e in rows) == REQUESTS
        assert max(sizes) < BOUND, max(sizes) / 2**20
        assert wal.stat().st_size < BOUND
    finally:
        stop(gateway.process)
