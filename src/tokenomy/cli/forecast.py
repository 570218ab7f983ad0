"""``tokenomy forecast``: budgets to period end, demand backtests, spend spikes."""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import click

from tokenomy import database
from tokenomy.analytics.periods import parse_instant, to_ms
from tokenomy.budgets.book import BudgetBook
from tokenomy.cli.common import clean_errors, config_option, echo_json, load, print_table
from tokenomy.forecast.anomaly import WINDOW_MINUTES, detect_anomalies
from tokenomy.forecast.backtest import DEFAULT_HORIZONS, backtest
from tokenomy.forecast.budgets import forecast_budgets
from tokenomy.forecast.demand import CHOSEN_MODEL, demand_from_trace
from tokenomy.forecast.models import MODELS

_at_option = click.option(
    "--at", "at", default=None, help="Forecast as of this ISO instant (default: now)."
)


def _now(at: str | None) -> int:
    return to_ms(parse_instant(at, "at")) if at else time.time_ns() // 1_000_000


def _ints(text: str, param: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use a comma list of minutes", param_hint=param
        ) from None
    if not values or min(values) < 1:
        raise click.BadParameter("give positive minutes, e.g. 1,5,10,30", param_hint=param)
    return values


@click.group(invoke_without_command=True)
@config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def forecast(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Forecasts: every budget to period end (the default), demand backtests, spikes."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(budgets, config_path=config_path, as_json=as_json, at=None)


@forecast.command("budgets")
@config_option
@click.option("--json", "as_json", is_flag=True)
@_at_option
@clean_errors
def budgets(config_path: str | None, as_json: bool, at: str | None) -> None:
    """Every budget's spend at period end: point, interval and exhaustion time."""
    settings = load(config_path)
    conn = database.connect(settings.database)
    rows = [
        f.public()
        for f in forecast_budgets(
            conn, BudgetBook(conn).all(), ZoneInfo(settings.timezone), _now(at)
        )
    ]
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table("budget", "limit", "spent", "forecast", "90% interval", "exhausts", "method")
    for r in rows:
        table.add_row(
            r["budget"],
            f"${r['limit_usd']}",
            f"${r['spent_usd']}",
            f"${r['forecast_usd']}",
            f"${r['lower_usd']} - ${r['upper_usd']}",
            "now" if r["exhausted"] else (r["exhausts_at"] or "not this period"),
            r["method"],
        )
    print_table(table)
    for r in rows:
        click.echo(f"{r['budget']}: {r['note']}")


@forecast.command("backtest")
@click.option(
    "--trace",
    "trace",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="CSV with TIMESTAMP, ContextTokens, GeneratedTokens (the Azure LLM trace format).",
)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--horizons",
    default=",".join(map(str, DEFAULT_HORIZONS)),
    show_default=True,
    help="Comma list of horizons in minutes.",
)
@click.option(
    "--models",
    "model_names",
    default=",".join(MODELS),
    show_default=True,
    help="Candidates to compare with the chosen model and the baseline.",
)
@click.option("--model", default=CHOSEN_MODEL, show_default=True, help="The model reported.")
def backtest_command(
    trace: str, as_json: bool, horizons: str, model_names: str, model: str
) -> None:
    """Forecast tokens per minute at rolling origins; MASE against seasonal-naive."""
    try:
        series = demand_from_trace(trace)
        result = backtest(
            series,
            _ints(horizons, "--horizons"),
            tuple(n.strip() for n in model_names.split(",") if n.strip()),
            model,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    data = result.public()
    if as_json:
        echo_json(data)
        return
    from rich.table import Table

    names = list(next(iter(data["horizons"].values()))["models"]) if data["horizons"] else []
    table = Table("horizon (min)", "origins", "seasonal-naive", *names)
    for horizon, row in data["horizons"].items():
        cells = [row["models"].get(n) for n in names]
        table.add_row(horizon, str(row["origins"]), _fmt(row["baseline_mase"]), *map(_fmt, cells))
    click.echo(
        f"MASE of tokens-per-minute forecasts, {data['minutes']} minutes, seasonal period "
        f"{data['season_minutes']} min, model: {data['model']} ({data['runtime_s']} s)"
    )
    print_table(table)
    if data["skipped_models"]:
        click.echo(
            f"skipped (pip install 'tokenomy[forecast]'): {', '.join(data['skipped_models'])}"
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@forecast.command("anomalies")
@config_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--window", "window", default=WINDOW_MINUTES, show_default=True, help="Minutes.")
@click.option("--min-usd", default="0.10", show_default=True, help="Smallest spike reported.")
@_at_option
@clean_errors
def anomalies(
    config_path: str | None, as_json: bool, window: int, min_usd: str, at: str | None
) -> None:
    """Spend spikes per user, key, workflow, team or project in the latest window."""
    try:
        floor = Decimal(min_usd)
    except InvalidOperation:
        raise click.BadParameter(f"{min_usd!r} is not an amount", param_hint="--min-usd") from None
    settings = load(config_path)
    conn = database.connect(settings.database)
    try:
        scan = detect_anomalies(conn, _now(at), window_minutes=window, min_usd=floor)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--window") from None
    if as_json:
        echo_json(scan.public())
        return
    from rich.table import Table

    table = Table("dimension", "value", "observed", "usual", "factor", "z", "requests", "top model")
    for f in scan.public()["findings"]:
        table.add_row(
            f["dimension"],
            f["value"],
            f"${f['observed_usd']}",
            f"${f['expected_usd']}",
            "new" if f["factor"] is None else f"{f['factor']}x",
            str(f["z"]),
            f"{f['requests']} (usual {f['expected_requests']})",
            f["top_models"][0]["model"] if f["top_models"] else "",
        )
    click.echo(
        f"window {scan.public()['window_start']} - {scan.public()['window_end']}: {scan.note}"
    )
    print_table(table)
