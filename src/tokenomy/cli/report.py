"""``tokenomy report``: spend and unit economics from the ledger."""

from __future__ import annotations

import csv
import io
from typing import Any

import click

from tokenomy import database
from tokenomy.analytics.spend import query_spend, spend_query
from tokenomy.cli.common import clean_errors, config_option, echo_json, load, print_table

COLUMNS = (
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_per_request_usd",
    "cost_per_1k_tokens_usd",
)


@click.command()
@config_option
@click.option(
    "--by", "group_by", default="", help="Comma list: team,model,workflow,day,tag:NAME ..."
)
@click.option("--period", default=None, help="2026-11, 2026-11-22, today, this-month, ...")
@click.option("--from", "start", default=None, help="ISO date/time (inclusive).")
@click.option("--to", "end", default=None, help="ISO date/time (exclusive).")
@click.option("--where", "filters", multiple=True, help="field=value filter; repeatable.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@clean_errors
def report(
    config_path: str | None,
    group_by: str,
    period: str | None,
    start: str | None,
    end: str | None,
    filters: tuple[str, ...],
    fmt: str,
) -> None:
    """Spend by any dimension, with cost per request and per 1k tokens."""
    where = dict(item.split("=", 1) for item in filters if "=" in item)
    if len(where) != len(filters):
        raise click.BadParameter("use --where field=value", param_hint="--where")
    query = spend_query(group_by, period, start, end, where)
    conn = database.connect(load(config_path).database)
    try:
        result = query_spend(conn, query)
    finally:
        conn.close()
    if fmt == "json":
        echo_json(result)
    elif fmt == "csv":
        click.echo(_csv(result), nl=False)
    else:
        _table(result)


def _csv(result: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*result["group_by"], *COLUMNS])
    for row in result["rows"]:
        writer.writerow([row[g] for g in result["group_by"]] + [row[c] for c in COLUMNS])
    return out.getvalue()


def _table(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(*result["group_by"], *COLUMNS, title="spend")
    for column in table.columns[len(result["group_by"]) :]:
        column.justify = "right"
    for row in result["rows"]:
        table.add_row(*(str(row[g]) for g in result["group_by"]), *(str(row[c]) for c in COLUMNS))
    print_table(table)
    click.echo(f"total: ${result['total_cost_usd']} over {result['total_requests']} requests")
