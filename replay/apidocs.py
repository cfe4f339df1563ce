"""The API docs' pages, served with no network: Swagger UI at ``/docs`` and ReDoc at
``/redoc``, their scripts, styles and icon from the installed ``fastapi-offline`` package
at ``/docs/assets/`` (FastAPI's own pages load them from a CDN, and are blank offline).

Both pages are open (no token needed, see :mod:`replay.guard`): they hold no data of
their own, and read ``/openapi.json``, which is open too.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: The name of the token's security scheme in the OpenAPI document.
TOKEN_SCHEME = "token"
#: Where the docs' assets are served.
ASSETS = "/docs/assets"
#: The Swagger UI page, its OAuth2 redirect page, and the ReDoc page.
DOCS, OAUTH2_REDIRECT, REDOC = "/docs", "/docs/oauth2-redirect", "/redoc"
#: The pages may load and call nothing but this server: ReDoc's sidebar would otherwise
#: fetch its maker's logo from a CDN (the pages' own scripts are inline, hence
#: 'unsafe-inline'; ReDoc's search runs in a blob: worker).
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'self'"
)


def assets_folder() -> Path:
    """The installed copy of Swagger UI's and ReDoc's files (swagger-ui-bundle.js,
    swagger-ui.css, redoc.standalone.js, favicon.png)."""
    return Path(str(files("fastapi_offline") / "static"))


def add_api_docs(app: FastAPI, token: bool = False) -> None:
    """Serve the docs' pages and assets on ``app``, made with ``docs_url=None`` and
    ``redoc_url=None`` (so FastAPI does not add its CDN-loading pages). With ``token``
    (the server was started with one), the OpenAPI document declares it as a bearer
    token, so Swagger UI's Authorize button takes it and "Try it out" sends it."""
    app.mount(ASSETS, StaticFiles(directory=assets_folder()), name="docs-assets")
    if token:
        _declare_token(app)
    title = f"{app.title} - API docs"

    @app.get(DOCS, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=title,
                oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
                swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
                # No badge from the public validator: the page makes no request elsewhere.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _offline(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=title,
                redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )


def _declare_token(app: FastAPI) -> None:
    made = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = made()
            schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[TOKEN_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "description": "The token replay serve was started with (--token or "
                "REPLAY_TOKEN); ?token= in the URL works too.",
            }
            document["security"] = [{TOKEN_SCHEME: []}]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page
