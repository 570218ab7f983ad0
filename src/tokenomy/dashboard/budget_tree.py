"""The budgets page: every budget's live state, arranged as a hierarchy.

Budget A is the parent of budget B when A's scope contains B's: every selector of A holds
for everything B covers. Scopes name different levels (``{"department": "eng"}`` above
``{"team": "search"}``), so B's scope is first completed with what the keys imply: a team
whose keys all sit in one department belongs to that department, a user to their team.
"""

from __future__ import annotations

from typing import Any

from tokenomy.database import Connection

# From the most specific selector to the broadest; each implies the ones after it.
_LEVELS = ("key", "user", "team", "department", "tenant")
_COLUMNS = {"key": "id", "user": "user", "team": "team", "department": "department"}
_COLUMNS["tenant"] = "tenant"


def org_rows(conn: Connection) -> list[dict[str, str]]:
    sql = "SELECT DISTINCT id, user, team, department, tenant FROM keys WHERE revoked_at IS NULL"
    return [dict(zip(_LEVELS, row, strict=True)) for row in conn.execute(sql)]


def implied_scope(scope: dict[str, str], org: list[dict[str, str]]) -> dict[str, str]:
    """The scope plus every broader selector all of its keys agree on."""
    out = dict(scope)
    for position, level in enumerate(_LEVELS):
        if level not in out:
            continue
        members = [row for row in org if row[level] == out[level]]
        if not members:
            continue
        for broader in _LEVELS[position + 1 :]:
            values = {row[broader] for row in members}
            if len(values) == 1 and "" not in values and broader not in out:
                out[broader] = values.pop()
    return out


def _contains(outer: dict[str, str], inner_implied: dict[str, str]) -> bool:
    return all(inner_implied.get(name) == value for name, value in outer.items())


def arrange(states: list[dict[str, Any]], org: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The budgets in tree order (parents first, children by name), each with ``parent``
    (a budget name or None) and ``depth``."""
    implied = {s["name"]: implied_scope(s["scope"], org) for s in states}
    parents: dict[str, str | None] = {}
    for child in states:
        candidates = [
            parent
            for parent in states
            if parent is not child
            and _contains(parent["scope"], implied[child["name"]])
            and not _contains(child["scope"], implied[parent["name"]])
        ]
        best = max(candidates, key=lambda p: (len(p["scope"]), p["name"]), default=None)
        parents[child["name"]] = best["name"] if best else None
    children: dict[str | None, list[dict[str, Any]]] = {}
    for state in sorted(states, key=lambda s: s["name"]):
        children.setdefault(parents[state["name"]], []).append(state)
    ordered: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(parent: str | None, depth: int) -> None:
        for state in children.get(parent, []):
            if state["name"] not in seen:
                seen.add(state["name"])
                ordered.append({**state, "parent": parent, "depth": depth})
                visit(state["name"], depth + 1)

    visit(None, 0)
    # Containment is strict, so every budget descends from a root; keep any that would not.
    ordered += [{**s, "parent": None, "depth": 0} for s in states if s["name"] not in seen]
    return ordered
