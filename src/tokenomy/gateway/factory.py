"""Application factories for servers that import the app by name in each worker."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

from tokenomy.config import load_settings
from tokenomy.gateway.app import TokenomyApp, create_app

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Server workers are child processes; if the server process is killed (-9), its
    workers must not live on as orphans holding the port and the ledger."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def app_from_env() -> TokenomyApp:
    """The gateway for the config named by ``$TOKENOMY_CONFIG`` (or ./tokenomy.yaml)."""
    _die_with_parent()
    return create_app(load_settings())
