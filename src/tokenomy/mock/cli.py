"""``tokenomy mock-upstream``: run the mock provider (wired into the main CLI elsewhere)."""

from __future__ import annotations

import click

from tokenomy.mock.options import MockOptions
from tokenomy.mock.server import ServerKind, run_mock_server

_RATE = click.FloatRange(0.0, 1.0)


@click.command("mock-upstream")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8199, show_default=True, type=int, help="Port to bind.")
@click.option("--latency-ms", default=0.0, show_default=True, type=float, help="Added per request.")
@click.option(
    "--tokens-per-second",
    default=None,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Pace of completion tokens (default: as fast as possible).",
)
@click.option("--error-rate", default=0.0, show_default=True, type=_RATE, help="500 answers.")
@click.option("--timeout-rate", default=0.0, show_default=True, type=_RATE, help="Stalls.")
@click.option("--truncate-rate", default=0.0, show_default=True, type=_RATE, help="Cut bodies.")
@click.option("--malformed-rate", default=0.0, show_default=True, type=_RATE, help="Not JSON.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fault draws.")
@click.option(
    "--default-completion-tokens",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Completion length when the request sets no max tokens.",
)
@click.option(
    "--server",
    "server_kind",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "granian", "uvicorn"]),
    help="ASGI server (auto: granian when installed).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def mock_upstream_command(
    host: str,
    port: int,
    latency_ms: float,
    tokens_per_second: float | None,
    error_rate: float,
    timeout_rate: float,
    truncate_rate: float,
    malformed_rate: float,
    seed: int,
    default_completion_tokens: int,
    server_kind: ServerKind,
    log_level: str,
) -> None:
    """Run an OpenAI- and Anthropic-compatible mock provider with injectable faults."""
    try:
        options = MockOptions(
            latency_ms=latency_ms,
            tokens_per_second=tokens_per_second,
            error_rate=error_rate,
            timeout_rate=timeout_rate,
            truncate_rate=truncate_rate,
            malformed_rate=malformed_rate,
            seed=seed,
            default_completion_tokens=default_completion_tokens,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"mock upstream on http://{host}:{port}/v1", err=True)
    run_mock_server(host, port, options, server=server_kind, log_level=log_level)
