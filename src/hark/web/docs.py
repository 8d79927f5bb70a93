"""The API's reference pages, `/docs` (Swagger UI) and `/redoc`, served with no internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which leaves them blank on an
offline machine. Here the viewers' files come from the fastapi-offline package (its
`static/` folder holds the Swagger UI bundle and ReDoc's standalone build) and are
served under `/docs/assets/`; the pages are Hark's, and start the viewers from a script
file instead of inline code, so the same strict content policy as the main page holds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hark.errors import MissingDependencyError

# Swagger UI and ReDoc set inline styles and ReDoc renders in a worker made from a blob.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
_HEADERS = {"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


def viewer_assets() -> Path:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("fastapi-offline")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _page(title: str, head: str, body: str) -> HTMLResponse:
    html = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{title}</title><link rel="icon" href="/docs/assets/favicon.png">'
            f'{head}</head><body>{body}</body></html>\n')
    return HTMLResponse(html, headers=_HEADERS)


def install_docs(app: FastAPI) -> None:
    """Add `/docs`, `/redoc` and their assets; the app must be made with
    `docs_url=None, redoc_url=None` so FastAPI's CDN pages are not also there."""
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _page(title, '<link rel="stylesheet" href="/docs/assets/swagger-ui.css">',
                     '<div id="swagger-ui"></div>'
                     '<script src="/docs/assets/swagger-ui-bundle.js"></script>'
                     '<script src="/static/docs/swagger-init.js"></script>')

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _page(f"{title} (ReDoc)", "",
                     '<div id="redoc"></div>'
                     '<script src="/docs/assets/redoc.standalone.js"></script>'
                     '<script src="/static/docs/redoc-init.js"></script>')

    app.mount("/docs/assets", StaticFiles(directory=viewer_assets()), name="docs-assets")
