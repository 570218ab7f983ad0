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
SAVINGS_COLUMNS = (
    "requests",
    "cost_usd",
    "counterfactual_cost_usd",
    "saved_usd",
    "saved_share",
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
    "--savings",
    is_flag=True,
    help="What routing saved: cost against the counterfactual (the model asked for, or the "
    "route's baseline); groups by strategy unless --by is given.",
)
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
    savings: bool,
    fmt: str,
) -> None:
    """Spend by any dimension, with cost per request and per 1k tokens."""
    if savings and not group_by:
        group_by = "strategy"
    where = dict(item.split("=", 1) for item in filters if "=" in item)
    if len(where) != len(filters):
        raise click.BadParameter("use --where field=value", param_hint="--where")
    query = spend_query(group_by, period, start, end, where)
    conn = database.connect(load(config_path).database)
    try:
        result = query_spend(conn, query)
    finally:
        conn.close()
    columns = SAVINGS_COLUMNS if savings else COLUMNS
    if fmt == "json":
        echo_json(result)
    elif fmt == "csv":
        click.echo(_csv(result, columns), nl=False)
    else:
        _table(result, columns, "savings" if savings else "spend")
        if savings:
            click.echo(
                f"saved: ${result['total_saved_usd']} of ${result['total_counterfactual_cost_usd']}"
                f" ({result['total_saved_share']:.1%})"
            )


def _csv(result: dict[str, Any], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*result["group_by"], *columns])
    for row in result["rows"]:
        writer.writerow([row[g] for g in result["group_by"]] + [row[c] for c in columns])
    return out.getvalue()


def _table(result: dict[str, Any], columns: tuple[str, ...], title: str) -> None:
    from rich.table import Table

    table = Table(*result["group_by"], *columns, title=title)
    for column in table.columns[len(result["group_by"]) :]:
        column.justify = "right"
    for row in result["rows"]:
        table.add_row(*(str(row[g]) for g in result["group_by"]), *(str(row[c]) for c in columns))
    print_table(table)
    click.echo(f"total: ${result['total_cost_usd']} over {result['total_requests']} requests")
