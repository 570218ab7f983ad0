"""What every command shares: ``--config`` and turning errors into clean exits."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson

from tokenomy.config import Settings, load_settings
from tokenomy.errors import ConfigError, TokenomyError

F = TypeVar("F", bound=Callable[..., Any])


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Config file (default: $TOKENOMY_CONFIG, then ./tokenomy.yaml).",
    )(func)


def load(config_path: str | None) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def clean_errors(func: F) -> F:
    """Report tokenomy errors as one line and exit 1, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (TokenomyError, ConfigError) as exc:
            raise click.ClickException(getattr(exc, "message", str(exc))) from None

    return wrapper  # type: ignore[return-value]


def echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def print_table(table: Any) -> None:
    """A rich table on the terminal; piped or captured output is never wrapped to 80
    columns (names would break across lines)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=240)
    console.print(table)
