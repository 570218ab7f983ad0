"""The budget book: definitions persisted in the database, audited, matched to requests.

Changes made through the admin API take effect for the next request in this process;
changes made elsewhere (the CLI, another replica) are picked up within a second by polling
a revision counter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from tokenomy.budgets.definition import SCOPE_FIELDS, Budget, parse_budget
from tokenomy.database import Connection, transaction
from tokenomy.errors import InvalidRequest, NotFound
from tokenomy.principals import Principal

_PRINCIPAL_FIELDS = ("tenant", "department", "team", "user", "project", "environment")


class BudgetBook:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._budgets: dict[str, Budget] = {}
        self._revision = -1
        self._matches: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], list[Budget]] = {}
        self.reload()

    # -- reading --------------------------------------------------------------------------

    def all(self) -> list[Budget]:
        return sorted(self._budgets.values(), key=lambda b: b.name)

    def get(self, name: str) -> Budget:
        budget = self._budgets.get(name)
        if budget is None:
            raise NotFound(f"no budget named {name!r}", param="name", code="budget_not_found")
        return budget

    def applicable(
        self, principal: Principal, model: str, tier: str, tags: dict[str, str]
    ) -> list[Budget]:
        """Every budget whose scope covers this principal, model and tags (cached)."""
        cache_key = (principal.key_id, model, tier, tuple(sorted(tags.items())))
        found = self._matches.get(cache_key)
        if found is None:
            fields = {name: getattr(principal, name) for name in _PRINCIPAL_FIELDS}
            fields.update(key=principal.key_id, model=model, tier=tier)
            found = [b for b in self._budgets.values() if b.matches(fields, tags)]
            if len(self._matches) > 50_000:
                self._matches.clear()
            self._matches[cache_key] = found
        return found

    def audit(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT id, ts_ms, actor, budget, change, old, new FROM budget_audit"
        params: list[Any] = []
        if name is not None:
            sql += " WHERE budget = ?"
            params.append(name)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, [*params, limit]).fetchall()
        return [
            {
                "id": row[0],
                "ts_ms": row[1],
                "actor": row[2],
                "budget": row[3],
                "change": row[4],
                "old": orjson.loads(row[5]) if row[5] else None,
                "new": orjson.loads(row[6]) if row[6] else None,
            }
            for row in rows
        ]

    # -- writing --------------------------------------------------------------------------

    def put(self, name: str, raw: Any, actor: str) -> Budget:
        budget = parse_budget(name, raw, actor)
        new = orjson.dumps(budget.public()).decode()
        with self._transaction() as now:
            old = self._definition(name)
            self._conn.execute(
                "INSERT INTO budgets (name, definition, updated_ms, updated_by) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "definition = excluded.definition, updated_ms = excluded.updated_ms, "
                "updated_by = excluded.updated_by",
                (name, new, now, actor),
            )
            if old != new:
                change = "create" if old is None else "update"
                self._record_change(now, actor, name, change, old, new)
        self.reload()
        return self._budgets[name]

    def delete(self, name: str, actor: str) -> None:
        with self._transaction() as now:
            old = self._definition(name)
            if old is None:
                raise NotFound(f"no budget named {name!r}", param="name", code="budget_not_found")
            self._conn.execute("DELETE FROM budgets WHERE name = ?", (name,))
            self._record_change(now, actor, name, "delete", old, None)
        self.reload()

    @contextmanager
    def _transaction(self) -> Iterator[int]:
        """One write transaction (all or nothing), yielding its time in epoch ms."""
        with self._lock, transaction(self._conn):
            yield int(time.time() * 1000)

    def _definition(self, name: str) -> str | None:
        row = self._conn.execute(
            "SELECT definition FROM budgets WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _record_change(
        self, now: int, actor: str, name: str, change: str, old: str | None, new: str | None
    ) -> None:
        self._conn.execute(
            "INSERT INTO budget_audit (ts_ms, actor, budget, change, old, new) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (now, actor, name, change, old, new),
        )
        self._conn.execute("UPDATE revisions SET value = value + 1 WHERE name = 'budgets'")

    # -- syncing --------------------------------------------------------------------------

    def revision(self) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM revisions WHERE name = 'budgets'"
            ).fetchone()
        return int(row[0]) if row else 0

    def refresh_if_changed(self) -> bool:
        if self.revision() == self._revision:
            return False
        self.reload()
        return True

    def reload(self) -> None:
        with self._lock:
            revision = self._conn.execute(
                "SELECT value FROM revisions WHERE name = 'budgets'"
            ).fetchone()
            rows = self._conn.execute("SELECT name, definition, updated_by FROM budgets").fetchall()
        budgets = {}
        for name, definition, updated_by in rows:
            try:
                budgets[name] = parse_budget(name, orjson.loads(definition), updated_by)
            except InvalidRequest:  # written by a newer version; keep serving the rest
                continue
        self._budgets = budgets
        self._matches = {}
        self._revision = int(revision[0]) if revision else 0


def scope_filters(budget: Budget) -> dict[str, str]:
    """The budget's scope as report filters over the ledger."""
    return {
        (name if name.startswith("tag:") else SCOPE_FIELDS[name]): value
        for name, value in budget.scope.items()
    }
