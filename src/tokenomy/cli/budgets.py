"""``tokenomy budgets``: set, list, show, delete and audit budgets (straight to the database).

A running gateway picks changes up within a second. Spent amounts shown here come from the
ledger; amounts reserved by requests in flight are only known to the gateway
(``GET /admin/budgets/{name}``).
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Any
from zoneinfo import ZoneInfo

import click
import orjson

from tokenomy import database
from tokenomy.budgets.book import BudgetBook
from tokenomy.budgets.enforcer import BudgetEnforcer
from tokenomy.budgets.store import MemoryBudgetStore
from tokenomy.cli.common import clean_errors, config_option, echo_json, load, print_table
from tokenomy.pricing import Catalog


def _enforcer(config_path: str | None) -> BudgetEnforcer:
    settings = load(config_path)
    conn = database.connect(settings.database)
    return BudgetEnforcer(
        BudgetBook(conn),
        MemoryBudgetStore(),
        Catalog.from_settings(settings),
        conn,
        ZoneInfo(settings.timezone),
    )


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def parse_threshold(text: str) -> dict[str, Any]:
    """``0.8:downgrade:premium:mid``, ``0.9:defer``, ``1.0:block``, ``0.5:alert[:URL]``,
    ``0.5:alert-slack:URL``."""
    at, _, rest = text.partition(":")
    action, _, argument = rest.partition(":")
    if not at or not action:
        raise click.BadParameter(f"{text!r}: use AT:ACTION[:ARGS], e.g. 0.8:downgrade:premium:mid")
    try:
        threshold: dict[str, Any] = {"at": float(at), "action": action}
    except ValueError:
        raise click.BadParameter(f"{text!r}: {at!r} is not a fraction") from None
    if action == "downgrade":
        from_tier, _, to_tier = argument.partition(":")
        threshold.update(from_tier=from_tier, to_tier=to_tier)
    elif action in ("alert", "alert-slack"):
        threshold.update(action="alert", slack=action == "alert-slack")
        if argument:
            threshold["webhook"] = argument
    elif argument:
        raise click.BadParameter(f"{text!r}: {action} takes no arguments")
    return threshold


@click.group()
def budgets() -> None:
    """Manage budgets: limits per scope and period, with thresholds that act."""


@budgets.command("set")
@config_option
@click.argument("name")
@click.option(
    "--scope", "scopes", multiple=True, help="field=value (team=support, tag:app=x); repeatable."
)
@click.option(
    "--period",
    type=click.Choice(["day", "week", "month", "total"]),
    default="month",
    show_default=True,
)
@click.option("--limit", "limit_usd", help="Limit in USD, e.g. 10.00.")
@click.option("--limit-tokens", type=int, default=None)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    help="AT:ACTION[:ARGS]: 0.8:downgrade:premium:mid, 0.9:defer, 1.0:block, "
    "0.5:alert:URL; repeatable.",
)
@click.option("--json", "definition_json", default=None, help="The whole definition as JSON.")
@clean_errors
def set_budget(
    config_path: str | None,
    name: str,
    scopes: tuple[str, ...],
    period: str,
    limit_usd: str | None,
    limit_tokens: int | None,
    thresholds: tuple[str, ...],
    definition_json: str | None,
) -> None:
    """Create or replace a budget."""
    if definition_json is not None:
        definition = orjson.loads(definition_json)
    else:
        if limit_usd is None:
            raise click.BadParameter("give --limit (or --json)", param_hint="--limit")
        scope = {}
        for item in scopes:
            field, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r}: use field=value", param_hint="--scope")
            scope[field.strip()] = value.strip()
        definition = {
            "scope": scope,
            "period": period,
            "limit_usd": limit_usd,
            "limit_tokens": limit_tokens,
            "thresholds": [parse_threshold(t) for t in thresholds],
        }
    enforcer = _enforcer(config_path)
    budget = enforcer.book.put(name, definition, _actor())
    echo_json(asyncio.run(enforcer.state(budget)))


@budgets.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def list_budgets(config_path: str | None, as_json: bool) -> None:
    """Every budget with its spend this period."""
    enforcer = _enforcer(config_path)

    async def states() -> list[dict[str, Any]]:
        return [await enforcer.state(b) for b in enforcer.book.all()]

    rows = asyncio.run(states())
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table("budget", "scope", "period", "limit", "spent", "used", "action", "resets")
    for r in rows:
        table.add_row(
            r["name"],
            ", ".join(f"{k}={v}" for k, v in r["scope"].items()) or "(all)",
            r["period"],
            f"${r['limit_usd']}",
            f"${r['spent_usd']}",
            f"{r['fraction_used']:.1%}",
            r["active_action"] or "",
            r["resets_at"] or "never",
        )
    print_table(table)


@budgets.command("show")
@config_option
@click.argument("name")
@clean_errors
def show(config_path: str | None, name: str) -> None:
    """One budget's definition and state, as JSON."""
    enforcer = _enforcer(config_path)
    echo_json(asyncio.run(enforcer.state(enforcer.book.get(name))))


@budgets.command("delete")
@config_option
@click.argument("name")
@clean_errors
def delete(config_path: str | None, name: str) -> None:
    """Delete a budget (its spend stays in the ledger)."""
    _enforcer(config_path).book.delete(name, _actor())
    click.echo(f"deleted {name}")


@budgets.command("audit")
@config_option
@click.argument("name", required=False)
@click.option("--limit", default=50, show_default=True)
@clean_errors
def audit(config_path: str | None, name: str | None, limit: int) -> None:
    """Who changed budgets, when, from what to what (newest first)."""
    for entry in _enforcer(config_path).book.audit(name, limit):
        click.echo(orjson.dumps(entry).decode())
