"""Serving the mock upstream: granian (fastest) when installed, uvicorn otherwise.

One worker, uvloop: the mock is meant to use a single core so a benchmark can pin it.
uvicorn logs an error line for every response the ``truncate`` fault cuts on purpose; a
logging filter keeps those out (granian stays quiet about them).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Literal

from tokenomy.mock._asgi import HideUnfinishedResponses
from tokenomy.mock.app import create_mock_app
from tokenomy.mock.options import MockOptions

ServerKind = Literal["auto", "granian", "uvicorn"]


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def granian_available() -> bool:
    return importlib.util.find_spec("granian") is not None


def _run_granian(host: str, port: int, options: MockOptions, log_level: str) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    server = Server(
        "tokenomy.mock:create_mock_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop if _has_uvloop() else Loops.auto,
        http=HTTPModes.http1,
        log_level=LogLevels(log_level),
        log_access=False,
    )
    # The loader runs in the worker process and builds the app from the options.
    server.serve(target_loader=functools.partial(create_mock_app, options), wrap_loader=False)


def _run_uvicorn(host: str, port: int, options: MockOptions, log_level: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        create_mock_app(options),
        host=host,
        port=port,
        loop="uvloop" if _has_uvloop() else "auto",
        lifespan="on",
        access_log=False,
        log_level=log_level,
    )
    server = uvicorn.Server(config)  # Config has configured logging by now
    logging.getLogger("uvicorn.error").addFilter(HideUnfinishedResponses())
    server.run()


def run_mock_server(
    host: str,
    port: int,
    options: MockOptions,
    *,
    server: ServerKind = "auto",
    log_level: str = "info",
) -> None:
    """Serve the mock upstream until interrupted (blocks; call from the main thread)."""
    if server == "granian" or (server == "auto" and granian_available()):
        _run_granian(host, port, options, log_level)
    else:
        _run_uvicorn(host, port, options, log_level)
