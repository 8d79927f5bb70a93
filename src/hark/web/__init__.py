"""The web page: one HTML page and its plain JavaScript modules and stylesheet.

Nothing is fetched from elsewhere (no CDN, no font service, no build step): the page
talks only to this server's API. `install` adds `GET /` (the page) and `/static/`
(its files). Both are ordinary routes that match only their own paths, so routers
included before or after them are never shadowed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

# The page runs only its own scripts and talks only to this origin: injected markup
# (a transcript is text anyone could have spoken or typed) could not load or send
# anything elsewhere even if it got into the page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class _Revalidated(StaticFiles):
    """Static files a browser revalidates on each load (a cheap 304), so a page from
    a newer Hark never runs with yesterday's cached scripts."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"})

    app.mount("/static", _Revalidated(directory=STATIC_DIR), name="static")
