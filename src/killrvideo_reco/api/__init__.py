"""HTTP API: create_app(settings), lifespan, routes, one error-to-status table."""

from .app import create_app

__all__ = ["create_app"]
