"""GET /docs: Swagger UI from the service itself, and the bearer scheme in the OpenAPI document.

FastAPI's own page loads Swagger UI from a public CDN: behind a firewall or in
an air-gapped cluster it is blank. The assets come from the pinned
``fastapi-swagger`` package instead, served as static files (ETag, no reads on
the event loop). ReDoc has no offline bundle on PyPI, so it is not offered.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

router = APIRouter()
ASSETS = "/docs/assets"
BEARER = "bearerAuth"
# For operation(..., openapi_extra=...): a token is required, or optional.
REQUIRES_TOKEN: dict[str, Any] = {"security": [{BEARER: []}]}
TOKEN_OPTIONAL: dict[str, Any] = {"security": [{}, {BEARER: []}]}


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="killrvideo-reco API",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        swagger_ui_parameters={"displayRequestDuration": True, "tryItOutEnabled": False},
    )


def install(app: FastAPI) -> None:
    """Serve /docs and its assets; declare the bearer scheme the routes refer to."""
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_swagger", "resources")]), name="docs-assets")
    app.include_router(router)


def add_security_scheme(schema: dict[str, Any]) -> dict[str, Any]:
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`kv-reco token --role creator` mints one; ingest needs that role.",
    }
    return schema
