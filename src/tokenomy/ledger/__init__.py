"""The durable record of every request: events, per-minute rollups, group commit."""

from tokenomy.ledger.event import UsageEvent
from tokenomy.ledger.writer import LedgerWriter

__all__ = ["LedgerWriter", "UsageEvent"]
