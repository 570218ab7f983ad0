"""``tokenomy serve``: run the gateway."""

from __future__ import annotations

import os

import click

from tokenomy.cli.common import clean_errors, config_option, load

SERVERS = ("uvicorn", "granian")


@click.command()
@config_option
@click.option("--host", default=None, help="Interface to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 8080).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option(
    "--server",
    "server_name",
    type=click.Choice(SERVERS),
    default="uvicorn",
    show_default=True,
    help="HTTP server (uvicorn measured fastest for one worker: benchmarks/README.md).",
)
@click.option("--log-level", default="warning", show_default=True)
@clean_errors
def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int,
    server_name: str,
    log_level: str,
) -> None:
    """Run the OpenAI-compatible gateway."""
    settings = load(config_path)  # validate before binding anything
    if workers < 1 or (workers > 1 and settings.redis is None):
        raise click.BadParameter(
            "budgets and rate limits are held in this process's memory, so several workers "
            "would each allow the full limit; set redis: redis://host:6379/0 in the config "
            "to share them, or run one worker",
            param_hint="--workers",
        )
    from tokenomy.pricing import Catalog

    Catalog.from_settings(settings)  # unknown models and prices fail here, not on a request
    from tokenomy.budgets.definition import parse_budget

    for name, definition in settings.budgets.items():
        parse_budget(name, definition)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    if config_path:
        os.environ["TOKENOMY_CONFIG"] = os.path.abspath(config_path)
    click.echo(
        f"tokenomy gateway on http://{bind_host}:{bind_port}/v1 ({len(settings.models)} models)"
    )
    run_server(
        "tokenomy.gateway.factory:app_from_env",
        bind_host,
        bind_port,
        workers,
        server_name,
        log_level,
    )


def run_server(
    target: str, host: str, port: int, workers: int, server_name: str, log_level: str
) -> None:
    """Serve an ASGI factory (``module:function``) with the chosen server."""
    if server_name == "granian":
        from granian.constants import Interfaces, Loops
        from granian.log import LogLevels
        from granian.server import Server

        Server(
            target,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            loop=Loops.uvloop,
            factory=True,
            log_level=LogLevels(log_level),
            log_access=False,
        ).serve()
    else:
        import uvicorn

        uvicorn.run(
            target,
            host=host,
            port=port,
            workers=workers,
            factory=True,
            loop="uvloop",
            http="httptools",
            log_level=log_level,
            access_log=False,
            # Open event streams (dashboard tabs) must not hold a shutdown for long.
            timeout_graceful_shutdown=5,
        )
