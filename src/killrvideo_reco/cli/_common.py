"""What the kv-reco commands share: settings, failing, the API's address and token."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from ..config import Settings, load_settings
from ..errors import RecoError


def get_settings() -> Settings:
    """The settings, or one line naming the bad variable and exit status 2 (a usage error)."""
    try:
        return load_settings()
    except RecoError as exc:
        fail(exc.message, code=2)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def api_url(settings: Settings, url: str | None) -> str:
    return url or f"http://{settings.host}:{settings.port}"


def api_token(settings: Settings, token: str | None) -> str:
    """--token, else KV_API_TOKEN, else a short creator token from this machine's key."""
    if token:
        return token
    from ..auth import CREATOR, mint_token

    try:
        return mint_token(settings, roles=[CREATOR], subject=None, ttl_s=3600)
    except RecoError as exc:
        fail(f"no --token given and none can be minted here: {exc.message}")


UrlOpt = Annotated[
    str | None, typer.Option(help="The API's base URL [default: http://KV_HOST:KV_PORT]")
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        envvar="KV_API_TOKEN",
        help="Creator bearer token [default: minted with this machine's dev key]",
    ),
]
