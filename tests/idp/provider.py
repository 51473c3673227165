"""The tests' identity provider: oidc-provider (npm) under Node, on loopback.

``make test`` installs it (``npm ci`` in tests/idp); without that install the
fixture fails and says what to run, rather than skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx2 as httpx

from ..proc import Child

HERE = Path(__file__).parent
AUDIENCE = "urn:killrvideo:reco"
OTHER_AUDIENCE = "urn:killrvideo:other"
_INSTALLED = HERE / "node_modules" / ".installed"


class IdP:
    """One provider process: issuer ``issuer`` (trusted), ``foreign_issuer`` (same keys)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.issuer = f"{self.base}/a"
        self.foreign_issuer = f"{self.base}/b"
        self.jwks_url = f"{self.issuer}/jwks"
        node = shutil.which("node")
        assert node is not None, "the IdP tests need Node.js 20 or later (`node` on PATH)"
        assert _INSTALLED.exists(), (
            "the tests' identity provider is not installed: run `make test`, or "
            "`make tests/idp/node_modules/.installed` (npm ci in tests/idp)"
        )
        env = {
            **os.environ,
            "IDP_PORT": str(port),
            "IDP_AUDIENCE": AUDIENCE,
            "IDP_OTHER_AUDIENCE": OTHER_AUDIENCE,
        }
        self._child = Child([node, str(HERE / "provider.mjs")], env=env, cwd=HERE)

    def __enter__(self) -> Self:
        self._child.start()
        self._child.wait_for_output(r"idp listening on ", timeout_s=30)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._child.stop(timeout_s=10)

    @property
    def output(self) -> str:
        return self._child.output

    def token(
        self,
        client: str = "pipeline",
        *,
        resource: str = AUDIENCE,
        scope: str | None = None,
        issuer: str | None = None,
    ) -> str:
        """An access token by the client-credentials grant, as a service account gets one."""
        form = {"grant_type": "client_credentials", "resource": resource}
        if scope is not None:
            form["scope"] = scope
        answer = httpx.post(
            f"{issuer or self.issuer}/token",
            data=form,
            auth=(client, f"{client}-secret"),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def rotate(self, *, alg: str = "RS256", retire: bool = False) -> str:
        """A new signing key, published and signing from now on; its kid."""
        answer = httpx.post(
            f"{self.base}/admin/rotate", json={"alg": alg, "retire": retire}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        kid: str = answer.json()["kid"]
        return kid

    def jwks_requests(self) -> int:
        """How many times the trusted issuer's key set has been fetched."""
        count: int = httpx.get(f"{self.base}/admin/stats", timeout=10).json()["jwks"]
        return count

    def jwks(self) -> dict[str, Any]:
        keys: dict[str, Any] = httpx.get(self.jwks_url, timeout=10).json()
        return keys
