"""Entry point of the ``tokenomy`` console script."""

from __future__ import annotations

import click

from tokenomy import __version__
from tokenomy.cli.budgets import budgets
from tokenomy.cli.cache import cache
from tokenomy.cli.export import export
from tokenomy.cli.forecast import forecast
from tokenomy.cli.keys import keys
from tokenomy.cli.model import candidates_group, distill, quantize_eval
from tokenomy.cli.plan import bench, plan
from tokenomy.cli.report import report
from tokenomy.cli.router import router
from tokenomy.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tokenomy")
def cli() -> None:
    """tokenomy: meter, price, attribute and control the cost of every LLM call."""


cli.add_command(serve)
cli.add_command(keys)
cli.add_command(budgets)
cli.add_command(report)
cli.add_command(forecast)
cli.add_command(export)
cli.add_command(router)
cli.add_command(cache)
cli.add_command(plan)
cli.add_command(bench)
cli.add_command(distill)
cli.add_command(quantize_eval)
cli.add_command(candidates_group)


def _add_optional_commands() -> None:
    from tokenomy.cli.demo import demo
    from tokenomy.mock.cli import mock_upstream_command

    cli.add_command(mock_upstream_command, "mock-upstream")
    cli.add_command(demo)


_add_optional_commands()


def main() -> None:
    cli()
