"""Everything the gateway holds for its lifetime, created in lifespan (no module globals)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from tokenomy import database
from tokenomy.config import Settings
from tokenomy.ledger import LedgerWriter
from tokenomy.pricing import Catalog
from tokenomy.principals import KeyStore
from tokenomy.upstream.client import UpstreamClient


@dataclass
class Gateway:
    settings: Settings
    catalog: Catalog
    conn: sqlite3.Connection
    keys: KeyStore
    ledger: LedgerWriter
    upstreams: dict[str, UpstreamClient] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        conn = database.connect(settings.database)
        return cls(
            settings=settings,
            catalog=Catalog.from_settings(settings),
            conn=conn,
            keys=KeyStore(conn),
            ledger=LedgerWriter(settings.database, settings.ledger.max_batch),
            upstreams={
                name: UpstreamClient(name, config) for name, config in settings.upstreams.items()
            },
        )

    async def start(self) -> None:
        self.ledger.start()
        for client in self.upstreams.values():
            await client.start()

    async def stop(self) -> None:
        for client in self.upstreams.values():
            await client.close()
        await self.ledger.stop()
        self.conn.close()
