"""Everything the gateway holds for its lifetime, created in lifespan (no module globals)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from tokenomy import database
from tokenomy.batch.service import BatchService
from tokenomy.budgets.alerts import AlertSender
from tokenomy.budgets.book import BudgetBook
from tokenomy.budgets.enforcer import BudgetEnforcer
from tokenomy.budgets.redis_store import RedisBudgetStore
from tokenomy.budgets.store import BudgetStore, MemoryBudgetStore
from tokenomy.config import Settings
from tokenomy.database import Connection
from tokenomy.gateway.caching import ResponseCache
from tokenomy.gateway.watch import SpendWatch
from tokenomy.ledger import LedgerWriter, UsageEvent
from tokenomy.pricing import Catalog
from tokenomy.principals import KeyStore
from tokenomy.ratelimit import LocalRateLimits, RateLimits
from tokenomy.ratelimit_redis import RedisRateLimiter
from tokenomy.routing.learned_route import LearnedRoute
from tokenomy.telemetry import tracing
from tokenomy.telemetry.metrics import GatewayMetrics
from tokenomy.upstream.client import UpstreamClient

log = logging.getLogger("tokenomy.gateway")
BUDGET_REFRESH_S = 0.5  # a change made elsewhere applies here within a second


@dataclass
class Gateway:
    settings: Settings
    catalog: Catalog
    conn: Connection
    budget_conn: Connection
    keys: KeyStore
    ledger: LedgerWriter
    budgets: BudgetBook
    enforcer: BudgetEnforcer
    alerts: AlertSender
    rate_limiter: RateLimits
    batch: BatchService  # the Batch API's store and worker pool; deferred jobs
    upstreams: dict[str, UpstreamClient] = field(default_factory=dict)
    # Called with every ledger event once it is committed (metrics, live dashboard feeds).
    # They run on the event loop in the request path: keep them to a few microseconds.
    listeners: list[Callable[[UsageEvent], None]] = field(default_factory=list)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    spans: tracing.SpanEmitter | None = None
    watch: SpendWatch | None = None
    # Learned route variants' routers and calibration, by the variant config's id().
    learned_routes: dict[int, LearnedRoute] = field(default_factory=dict)
    cache: ResponseCache | None = None
    shared_budgets: RedisBudgetStore | None = None  # with redis: (several replicas)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def publish(self, event: UsageEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken observer must never fail a request
                log.exception("ledger listener failed")

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        conn = database.connect(settings.database)
        catalog = Catalog.from_settings(settings)
        budget_conn = database.connect(settings.database)
        book = BudgetBook(budget_conn)
        for name, definition in settings.budgets.items():
            book.put(name, definition, "config")
        alerts = AlertSender()
        store: BudgetStore = MemoryBudgetStore()
        rate_limiter: RateLimits = LocalRateLimits()
        shared_budgets = None
        if settings.redis is not None:
            from tokenomy import redis_client

            client = redis_client.connect(settings.redis)
            fail_open = settings.redis_fail_open
            store = shared_budgets = RedisBudgetStore(
                client, settings.redis, settings.redis_hold_ttl_s, fail_open
            )
            rate_limiter = RedisRateLimiter(client, settings.redis, fail_open)
        from tokenomy.gateway.routes import load_learned_routes

        return cls(
            settings=settings,
            catalog=catalog,
            conn=conn,
            budget_conn=budget_conn,
            keys=KeyStore(conn),
            ledger=LedgerWriter(settings.database, settings.ledger.max_batch),
            budgets=book,
            enforcer=BudgetEnforcer(
                book, store, catalog, budget_conn, ZoneInfo(settings.timezone), alerts
            ),
            alerts=alerts,
            rate_limiter=rate_limiter,
            shared_budgets=shared_budgets,
            metrics=GatewayMetrics(tracing.providers(settings)),
            upstreams={
                name: UpstreamClient(name, config) for name, config in settings.upstreams.items()
            },
            learned_routes=load_learned_routes(settings),
            cache=ResponseCache(settings) if settings.cache.enabled else None,
            batch=BatchService(settings, database.connect(settings.database)),
        )

    async def start(self) -> None:
        self.ledger.start()
        self.listeners.append(self.metrics.observer.observe)
        self.spans = tracing.from_settings(self.settings)
        if self.spans is not None:
            self.listeners.append(self.spans.observe)
        for client in self.upstreams.values():
            await client.start()
        if self.cache is not None:
            await self.cache.start()
        self._tasks.append(asyncio.create_task(self._follow_budget_changes()))
        if self.shared_budgets is not None:
            self.shared_budgets.start(self.enforcer.reload)
        self.batch.start(self)
        every_s = self.settings.watch.every_s
        if every_s > 0:
            self.watch = SpendWatch(
                self.settings.database,
                self.budgets,
                ZoneInfo(self.settings.timezone),
                self.alerts,
                every_s,
            )
            self._tasks.append(asyncio.create_task(self.watch.run_forever()))

    async def _follow_budget_changes(self) -> None:
        """Budgets changed by the CLI or another replica apply within a second."""
        while True:
            await asyncio.sleep(BUDGET_REFRESH_S)
            try:  # in a thread: a slow database must not stall requests
                await asyncio.to_thread(self.budgets.refresh_if_changed)
            except Exception as exc:  # a locked database: try again next round
                log.warning("could not refresh budgets: %s", exc)

    async def stop(self) -> None:
        await self.batch.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self.upstreams.values():
            await client.close()
        await self.alerts.close()
        if self.shared_budgets is not None:
            await self.shared_budgets.close()
        if self.cache is not None:
            await self.cache.close()
        await self.ledger.stop()
        if self.spans is not None:
            self.spans.close()
        self.conn.close()
        self.budget_conn.close()
