"""The ASGI gateway: proxy routes, admin routes, lifespan."""

from tokenomy.gateway.app import create_app

__all__ = ["create_app"]
