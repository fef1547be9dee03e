"""The web page at ``/`` and its static files (plain HTML, CSS and JavaScript).

Only files that ship in ``serving/static/`` are served, looked up by exact
name, so no path can reach outside that folder. The page's Content Security
Policy lets it load and call nothing but this server (and the camera), so it
works the same with no internet and leaks nothing to other hosts.

>>> "connect-src 'self'" in PAGE_POLICY
True
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ._http import ApiError

router = APIRouter(tags=["web page"], include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


def _shipped() -> dict[str, Path]:
    if not STATIC.is_dir():
        return {}
    return {path.name: path for path in STATIC.iterdir() if path.is_file() and path.suffix in _TYPES}


# data: and blob: are the page's own thumbnails, heat maps and photos; mediastream: the camera.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@router.get("/")
async def index() -> FileResponse:
    page = _file("index.html")
    page.headers["Content-Security-Policy"] = PAGE_POLICY
    return page


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    return _file(name)


def _file(name: str) -> FileResponse:
    path = _shipped().get(name)
    if path is None:
        raise ApiError(404, f"no such file: /static/{name}")
    # no-cache: the browser revalidates, so an upgraded server is seen at once
    return FileResponse(path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
