"""``tokenomy export``: cost data for FinOps tools (FOCUS 1.2, CSV or Parquet)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import click

from tokenomy import database
from tokenomy.analytics.focus import (
    FocusRow,
    ParquetUnavailable,
    focus_rows,
    write_csv,
    write_parquet,
)
from tokenomy.analytics.periods import parse_instant, parse_period, to_ms
from tokenomy.cli.common import clean_errors, config_option, load
from tokenomy.errors import ConfigError
from tokenomy.pricing import Catalog


@click.group()
def export() -> None:
    """Export spend for FinOps tools."""


@export.command()
@config_option
@click.option("--period", default=None, help="2026-11, 2026-11-22, last-month, ...")
@click.option("--from", "start", default=None, help="ISO date/time (inclusive).")
@click.option("--to", "end", default=None, help="ISO date/time (exclusive; default: now).")
@click.option(
    "--granularity",
    type=click.Choice(["hour", "day"]),
    default="day",
    show_default=True,
    help="Length of a charge period.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="File (csv default: stdout)."
)
@clean_errors
def focus(
    config_path: str | None,
    period: str | None,
    start: str | None,
    end: str | None,
    granularity: str,
    fmt: str,
    out: str | None,
) -> None:
    """FinOps FOCUS 1.2 rows: one per charge period, principal, model and token class."""
    start_ms, end_ms = _range(period, start, end)
    if fmt == "parquet" and out is None:
        raise click.BadParameter("parquet is binary: give --out FILE", param_hint="--out")
    settings = load(config_path)
    try:
        catalog = Catalog.from_settings(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    conn = database.connect(settings.database)
    rows = focus_rows(conn, catalog, start_ms, end_ms, "hour" if granularity == "hour" else "day")
    try:
        count = _write(rows, fmt, out)
    finally:
        rows.close()  # before its connection, also when the output stopped early
        conn.close()
    if out is not None:
        click.echo(f"wrote {count} FOCUS rows to {out}", err=True)


def _write(rows: Iterable[FocusRow], fmt: str, out: str | None) -> int:
    if fmt == "parquet":
        assert out is not None
        try:
            return write_parquet(rows, out)
        except ParquetUnavailable as exc:
            raise click.ClickException(str(exc)) from None
    if out is None:
        return write_csv(rows, sys.stdout)
    with open(out, "w", newline="", encoding="utf-8") as file:
        return write_csv(rows, file)


def _range(period: str | None, start: str | None, end: str | None) -> tuple[int, int]:
    if period is not None:
        if start or end:
            raise click.BadParameter("give --period or --from/--to, not both")
        begin, finish = parse_period(period)
        return to_ms(begin), to_ms(finish)
    if start is None:
        raise click.BadParameter("give --period (e.g. 2026-11) or --from", param_hint="--period")
    start_ms = to_ms(parse_instant(start, "from"))
    end_ms = to_ms(parse_instant(end, "to")) if end else int(time.time() * 1000)
    if end_ms <= start_ms:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    return start_ms, end_ms
