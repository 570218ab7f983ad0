"""Budget enforcement on the request path: decide, hold the worst case, settle.

admit:  budgets in scope → fractions used → policy action (allow, downgrade, defer,
        block) → worst-case cost (input bound + output limit, injected if absent)
        → one atomic hold on every budget in scope, or a 429 naming the budget
settle: the actual cost replaces the hold on every budget; alerts fire once per
        threshold per period when spend crosses them
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tokenomy.analytics.spend import SpendQuery, query_spend
from tokenomy.budgets.alerts import AlertEvent, AlertSender
from tokenomy.budgets.book import BudgetBook, scope_filters
from tokenomy.budgets.bounds import byte_bound, exact_bound, output_limit
from tokenomy.budgets.definition import Budget, Threshold
from tokenomy.budgets.periods import FOREVER_MS, iso_utc, window
from tokenomy.budgets.store import BudgetStore, CounterKey, Hold, Refusal, ReserveLine
from tokenomy.database import Connection
from tokenomy.errors import BudgetExceeded, NotFound, RedisUnavailable
from tokenomy.money import from_pico, to_pico, usd_str
from tokenomy.policy import Priority, active_action, decide
from tokenomy.pricing import Catalog, Model
from tokenomy.principals import Principal
from tokenomy.usage import Usage

log = logging.getLogger("tokenomy.budgets")
DEFAULT_MAX_OUTPUT = 4096


class BudgetDeferred(BudgetExceeded):
    """A deferrable request while a budget's defer threshold is active: come back later."""

    default_code = "budget_deferred"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.pop("x-should-retry", None)


@dataclass(slots=True)
class Admission:
    model: Model
    hold: Hold | None = None
    lines: list[tuple[Budget, CounterKey]] = field(default_factory=list)
    route_reason: str = "requested"
    injected_max_tokens: int | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class _Scope:
    budgets: list[Budget]  # the book's list this was computed for (compared by identity)
    start: int  # valid while every budget stays in the same period
    end: int
    lines: list[tuple[Budget, CounterKey]]
    watched: list[tuple[Budget, CounterKey]]  # the budgets with thresholds
    reserve_lines: list[ReserveLine]


@dataclass(frozen=True, slots=True)
class Request:
    """What admission needs to know about one request."""

    principal: Principal
    tags: dict[str, str]
    priority: Priority
    payload: dict[str, Any]
    output_field: str  # where an injected output limit goes
    produces_output: bool  # embeddings do not


def _iso(ms: int) -> str | None:
    return iso_utc(ms, "auto")


class BudgetEnforcer:
    def __init__(
        self,
        book: BudgetBook,
        store: BudgetStore,
        catalog: Catalog,
        conn: Connection,
        zone: ZoneInfo,
        alerts: AlertSender | None = None,
    ) -> None:
        self.book = book
        self.store = store
        self.catalog = catalog
        self._conn = conn
        self._zone = zone
        self._alerts = alerts
        self._fired: set[tuple[str, int, str]] = set()
        self._windows: dict[tuple[str, int | None], tuple[int, int]] = {}
        self._scopes: dict[int, _Scope] = {}
        self._loading: dict[CounterKey, asyncio.Future[None]] = {}

    def _window(self, budget: Budget, now_ms: int) -> tuple[int, int]:
        """The budget's current period, cached until it ends (computing calendar periods in
        a time zone costs microseconds; the request path asks for it per budget)."""
        cache_key = (budget.period, budget.starts_at_ms)
        found = self._windows.get(cache_key)
        if found is None or not found[0] <= now_ms < found[1]:
            found = window(budget.period, self._zone, now_ms, budget.starts_at_ms)
            self._windows[cache_key] = found
        return found

    # -- admission ------------------------------------------------------------------------

    async def admit(self, request: Request, model: Model) -> Admission:
        now_ms = time.time_ns() // 1_000_000
        scope, spent = await self._in_scope(request, model, now_ms)
        admission = Admission(model)
        if scope is None:
            return admission
        decision = decide(spent, model.tier, request.priority, request.principal.allow_critical)
        if decision.kind in ("block", "defer"):
            assert decision.budget is not None
            raise self._refusal(decision.budget, now_ms, deferred=decision.kind == "defer")
        if decision.kind == "downgrade":
            assert decision.budget is not None and decision.threshold is not None
            substitute = self._substitute(model, decision.threshold)
            if substitute is not None:
                admission.model = model = substitute
                admission.route_reason = (
                    f"budget_downgrade:{decision.budget.name}@{decision.threshold.at}"
                )
                scope, spent = await self._in_scope(request, model, now_ms)
                if scope is None:
                    return admission
        admission.lines = scope.lines
        admission.hold = await self._hold(request, model, scope, admission)
        return admission

    async def pressure(self, request: Request, model: Model) -> float:
        """How much of the tightest budget in scope is spent or held (0 when none applies),
        so routing can lean cheaper as a budget fills, before any threshold acts."""
        budgets = self.book.applicable(request.principal, model.name, model.tier, request.tags)
        if not budgets:
            return 0.0
        scope = await self._current_scope(budgets, time.time_ns() // 1_000_000)
        tightest = 0.0
        for budget, key in scope.lines:
            if budget.limit_pico > 0:
                counter = await self.store.counter(key)
                used = (counter.spent_pico + counter.reserved_pico) / budget.limit_pico
                tightest = max(tightest, used)
        return tightest

    async def _in_scope(
        self, request: Request, model: Model, now_ms: int
    ) -> tuple[_Scope | None, list[tuple[Budget, int]]]:
        """The budgets in scope (None: none) and the spend of those with thresholds."""
        budgets = self.book.applicable(request.principal, model.name, model.tier, request.tags)
        if not budgets:
            return None, []
        scope = await self._current_scope(budgets, now_ms)
        watched = scope.watched
        spent = await self.store.spent_pico([key for _, key in watched]) if watched else []
        return scope, [(budget, s) for (budget, _), s in zip(watched, spent, strict=True)]

    async def _current_scope(self, budgets: list[Budget], now_ms: int) -> _Scope:
        scope = self._scopes.get(id(budgets))
        if scope is None or scope.budgets is not budgets or not scope.start <= now_ms < scope.end:
            scope = await self._scope(budgets, now_ms)
        return scope

    async def _scope(self, budgets: list[Budget], now_ms: int) -> _Scope:
        """The counters a set of budgets uses now, cached until one of their periods ends."""
        lines = []
        start, end = 0, FOREVER_MS
        for budget in budgets:
            window_start, window_end = self._window(budget, now_ms)
            start, end = max(start, window_start), min(end, window_end)
            key = (budget.name, window_start)
            if not self.store.loaded(key):
                await self._ensure_loaded(budget, key)
            lines.append((budget, key))
        scope = _Scope(
            budgets=budgets,
            start=start,
            end=end,
            lines=lines,
            watched=[(b, key) for b, key in lines if b.thresholds],
            reserve_lines=[ReserveLine(key, b.limit_pico, b.limit_tokens) for b, key in lines],
        )
        if len(self._scopes) > 10_000:
            self._scopes.clear()
        self._scopes[id(budgets)] = scope
        return scope

    async def _ensure_loaded(self, budget: Budget, key: CounterKey) -> None:
        """One load per counter, however many requests wait for it: a second load landing
        after the first requests settled would set spent back to an older ledger sum."""
        pending = self._loading.get(key)
        if pending is None:
            pending = self._loading[key] = asyncio.ensure_future(self._load(budget, key))
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        await asyncio.shield(pending)

    async def _load(self, budget: Budget, key: CounterKey) -> None:
        """Rebuild a counter from the ledger (at start, a new period, a new budget)."""
        start, end = window(budget.period, self._zone, key[1], budget.starts_at_ms)
        query = SpendQuery([], start, None if end >= FOREVER_MS else end, scope_filters(budget))
        # Off the event loop: a slow database must not stall the requests in flight.
        result = await asyncio.to_thread(query_spend, self._conn, query)
        rows = result["rows"]
        tokens = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
        await self.store.load(key, to_pico(Decimal(result["total_cost_usd"])), tokens)

    async def reload(self, key: CounterKey) -> None:
        """Load one counter from the ledger again (a shared store reconciles, or lost it)."""
        try:
            budget = self.book.get(key[0])
        except NotFound:  # deleted meanwhile: nothing enforces this counter any more
            await self.store.load(key, 0, 0)
            return
        await self._load(budget, key)

    def _substitute(self, model: Model, threshold: Threshold) -> Model | None:
        substitute = self.catalog.substitute(model, threshold.to_tier, threshold.to_model)
        if substitute is None:
            log.warning(
                "budget downgrade from %s to tier %s: no such model; serving %s",
                model.tier,
                threshold.to_tier,
                model.name,
            )
        return substitute

    async def _hold(
        self, request: Request, model: Model, scope: _Scope, admission: Admission
    ) -> Hold:
        reserve_lines = scope.reserve_lines
        bounds = [byte_bound(request.payload)]
        if model.tokenizer is not None:
            bounds.append(-1)  # an exact count, computed only if the byte bound is refused
        refusal: Refusal | None = None
        for bound in bounds:
            if bound < 0:
                assert model.tokenizer is not None
                bound = min(exact_bound(request.payload, model.tokenizer), bounds[0])
            output = await self._output_tokens(request, model, bound, reserve_lines, admission)
            usage = Usage(input_tokens=bound, output_tokens=output)
            result = await self.store.reserve(
                reserve_lines, model.price.cost_pico(usage), usage.total_tokens
            )
            if isinstance(result, Hold):
                if admission.injected_max_tokens is not None:
                    request.payload[request.output_field] = admission.injected_max_tokens
                return result
            refusal = result
        assert refusal is not None
        budget = next(b for b, key in scope.lines if key == refusal.key)
        raise self._refusal(budget, refusal.key[1], deferred=False, needed=refusal.needed_pico)

    async def _output_tokens(
        self,
        request: Request,
        model: Model,
        input_bound: int,
        lines: list[ReserveLine],
        admission: Admission,
    ) -> int:
        if not request.produces_output:
            return 0
        asked = output_limit(request.payload)
        if asked is not None:
            return asked
        # No output limit: allow what the tightest budget can still pay, capped by the model.
        cap = model.max_output_tokens or DEFAULT_MAX_OUTPUT
        room = None
        for line in lines:
            counter = await self.store.counter(line.key)
            left = line.limit_pico - counter.spent_pico - counter.reserved_pico
            room = left if room is None else min(room, left)
        input_pico = model.price.cost_pico(Usage(input_tokens=input_bound))
        per_token = model.price.cost_pico(Usage(output_tokens=1)) or 1
        affordable = max(((room or 0) - input_pico) // per_token, 0)
        admission.injected_max_tokens = max(min(cap, affordable), 1)
        return admission.injected_max_tokens

    def _refusal(
        self, budget: Budget, now_ms: int, deferred: bool, needed: int | None = None
    ) -> BudgetExceeded:
        _start, end = window(budget.period, self._zone, now_ms, budget.starts_at_ms)
        resets = _iso(end)
        when = f"it resets at {resets}" if resets else "it does not reset (a fixed total)"
        headers = {"x-tokenomy-budget": budget.name}
        if deferred:
            if end < FOREVER_MS:
                headers["retry-after"] = str(max(1, (end - now_ms + 999) // 1000))
            return BudgetDeferred(
                f"budget {budget.name!r} defers deferrable requests now; {when}",
                headers=headers,
            )
        detail = f" (this request could cost up to ${usd_str(from_pico(needed))})" if needed else ""
        return BudgetExceeded(
            f"budget {budget.name!r} (limit ${usd_str(budget.limit_usd)} per {budget.period}) "
            f"has no room for this request{detail}; {when}",
            headers=headers,
        )

    # -- settlement -----------------------------------------------------------------------

    async def settle(self, admission: Admission, cost_pico: int, tokens: int) -> None:
        if admission.settled or admission.hold is None:
            admission.settled = True
            return
        admission.settled = True
        await self.store.settle(admission.hold, cost_pico, tokens)
        for budget, key in admission.lines:
            if budget.has_alerts:
                try:
                    await self._alert_if_crossed(budget, key)
                except RedisUnavailable as exc:  # an alert check must never lose the event
                    log.warning("budget %s: alert check skipped: %s", budget.name, exc.message)

    async def release(self, admission: Admission) -> None:
        """A request that ended without a ledger event (an error before the upstream)."""
        await self.settle(admission, 0, 0)

    async def _alert_if_crossed(self, budget: Budget, key: CounterKey) -> None:
        counter = await self.store.counter(key)
        fraction = _fraction(counter.spent_pico, budget)
        for threshold in budget.thresholds:
            if threshold.action != "alert" or threshold.at > fraction:
                continue
            marker = (budget.name, key[1], str(threshold.at))
            if marker in self._fired or not self._mark_fired(marker):
                self._fired.add(marker)
                continue
            self._fired.add(marker)
            _, end = window(budget.period, self._zone, key[1], budget.starts_at_ms)
            event = AlertEvent(
                budget=budget.name,
                at=threshold.at,
                action=threshold.action,
                spent_usd=from_pico(counter.spent_pico),
                limit_usd=budget.limit_usd,
                fraction_used=fraction,
                period_start_ms=key[1],
                reset_at_ms=end,
                scope=dict(budget.scope),
            )
            if self._alerts is not None:
                self._alerts.send(threshold.webhook, event, threshold.slack)

    def _mark_fired(self, marker: tuple[str, int, str]) -> bool:
        """Once per threshold per period, across restarts: the first writer wins."""
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO budget_alerts (budget, window_start, at, fired_ms) "
            "VALUES (?, ?, ?, ?)",
            (*marker, int(time.time() * 1000)),
        )
        return cursor.rowcount == 1

    # -- state ----------------------------------------------------------------------------

    async def state(self, budget: Budget) -> dict[str, Any]:
        now_ms = time.time_ns() // 1_000_000
        start, end = window(budget.period, self._zone, now_ms, budget.starts_at_ms)
        key = (budget.name, start)
        if not self.store.loaded(key):
            await self._ensure_loaded(budget, key)
        counter = await self.store.counter(key)
        fraction = _fraction(counter.spent_pico, budget)
        fired = {
            row[0]
            for row in self._conn.execute(
                "SELECT at FROM budget_alerts WHERE budget = ? AND window_start = ?",
                (budget.name, start),
            )
        }
        remaining = max(budget.limit_pico - counter.spent_pico - counter.reserved_pico, 0)
        return {
            **budget.public(),
            "spent_usd": usd_str(from_pico(counter.spent_pico)),
            "reserved_usd": usd_str(from_pico(counter.reserved_pico)),
            "remaining_usd": usd_str(from_pico(remaining)),
            "fraction_used": float(fraction),
            "spent_tokens": counter.spent_tokens,
            "reserved_tokens": counter.reserved_tokens,
            "active_action": active_action(budget, fraction),
            "thresholds": [
                {
                    **t.public(),
                    "reached": t.at <= fraction,
                    **({"alerted": str(t.at) in fired} if t.action == "alert" else {}),
                }
                for t in budget.thresholds
            ],
            "period_start": _iso(start),
            "resets_at": _iso(end),
        }


def _fraction(spent_pico: int, budget: Budget) -> Decimal:
    limit = budget.limit_pico
    if limit <= 0:
        return Decimal(1)
    return (Decimal(spent_pico) / Decimal(limit)).quantize(Decimal("0.000001"))
