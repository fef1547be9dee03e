"""The web page at ``/`` and its static files (plain HTML, CSS and JavaScript).

Only files that ship in ``serving/static/`` are served, looked up by exact
name, so no path can reach outside that folder.
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


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    return _file(name)


def _file(name: str) -> FileResponse:
    path = _shipped().get(name)
    if path is None:
        raise ApiError(404, f"no such file: /static/{name}")
    # no-cache: the browser revalidates, so an upgraded server is seen at once
    return FileResponse(path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
