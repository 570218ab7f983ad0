"""Application factories for servers that import the app by name in each worker."""

from __future__ import annotations

from tokenomy.config import load_settings
from tokenomy.gateway.app import TokenomyApp, create_app


def app_from_env() -> TokenomyApp:
    """The gateway for the config named by ``$TOKENOMY_CONFIG`` (or ./tokenomy.yaml)."""
    return create_app(load_settings())
