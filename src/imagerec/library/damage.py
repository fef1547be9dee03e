"""A damaged catalog: told apart in one line, set aside and rebuilt from the photos.

SQLite reports a damaged file (bytes overwritten in the middle, a disk that
lost pages) only when a query reaches the bad page, as a bare
``sqlite3.DatabaseError`` — anywhere in ``index``, ``search``, ``similar``
or ``duplicates``. :class:`GuardedConnection` wraps the catalog's connection
so that error, wherever it surfaces (running a statement or fetching its
rows), becomes one :class:`CatalogDamagedError` line saying what to do.

:func:`set_aside` moves a damaged catalog out of the way (it is renamed,
never deleted) after salvaging what the photos cannot give back: the
settings (``meta``) and the models the library was indexed with (their
sources: zoo names or the user's taught ``.imagerec`` files, and top-k).
``imagerec index ROOT --rebuild`` then indexes the photos again with those
models into a fresh catalog. A model's row (its labels) can itself sit on a
damaged page, so every index run also writes the list to a small file
beside the catalog (``catalog.db.models.json``, :func:`write_recipe`), and
that is read first.

>>> import sqlite3
>>> db = GuardedConnection(sqlite3.connect(":memory:"), "catalog.db")
>>> db.execute("SELECT 1").fetchone()
(1,)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import CatalogDamagedError

__all__ = ["CatalogDamagedError", "GuardedConnection", "Salvage", "damaged_error", "set_aside", "write_recipe"]




def damaged_error(path: str, exc: sqlite3.DatabaseError) -> CatalogDamagedError:
    """The one-line error for a damaged catalog: what SQLite said, and how to rebuild it."""
    return CatalogDamagedError(
        f"{path}: the catalog is damaged ({exc}); rebuild it from the photos with `imagerec index ROOT --rebuild` "
        "(its models and settings are kept; the damaged file is set aside, not deleted)",
        path=path,
    )


def _is_damage(exc: BaseException) -> bool:
    # Corruption and "not a database" come as the base class itself; its
    # subclasses (locked, constraint...) mean something else.
    return type(exc) is sqlite3.DatabaseError


class _GuardedCursor:
    def __init__(self, cursor: sqlite3.Cursor, path: str) -> None:
        self._cursor, self._path = cursor, path

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._cursor, method)(*args)
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise damaged_error(self._path, exc) from None
            raise

    def fetchone(self) -> Any:
        return self._call("fetchone")

    def fetchall(self) -> list:
        return self._call("fetchall")

    def fetchmany(self, *args: Any) -> list:
        return self._call("fetchmany", *args)

    def __iter__(self) -> "_GuardedCursor":
        return self

    def __next__(self) -> Any:
        return self._call("__next__")

    def __getattr__(self, name: str) -> Any:  # lastrowid, rowcount, description, close...
        return getattr(self._cursor, name)


class GuardedConnection:
    """A sqlite3 connection whose damage errors are one line naming the catalog."""

    def __init__(self, db: sqlite3.Connection, path: str | os.PathLike[str]) -> None:
        self._db, self._path = db, os.fspath(path)

    def execute(self, *args: Any) -> _GuardedCursor:
        return _GuardedCursor(self._call("execute", *args), self._path)

    def executemany(self, *args: Any) -> _GuardedCursor:
        return _GuardedCursor(self._call("executemany", *args), self._path)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._db, method)(*args)
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise damaged_error(self._path, exc) from None
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@dataclass
class Salvage:
    """What a damaged catalog still held that the photos cannot give back."""

    meta: dict[str, str] = field(default_factory=dict)
    models: list[tuple[str, int]] = field(default_factory=list)  # (source, top_k), oldest first
    set_aside_as: Path | None = None


def set_aside(path: str | os.PathLike[str]) -> Salvage:
    """Salvage ``meta`` and the model list of the catalog at ``path``, then rename it (and its WAL) aside."""
    catalog = Path(path)
    salvage = Salvage()
    recipe = _read_recipe(catalog)
    for source, top_k in recipe.get("models", []):
        if str(source) not in {known for known, _ in salvage.models}:
            salvage.models.append((str(source), int(top_k)))
    if not catalog.exists():
        return salvage
    salvage.meta = dict(_readable_rows(catalog, "SELECT key, value FROM meta", "meta"))
    for source, top_k in _readable_rows(catalog, "SELECT source, top_k FROM models ORDER BY id", "models"):
        if source and str(source) not in {known for known, _ in salvage.models}:
            salvage.models.append((str(source), int(top_k)))
    stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    salvage.set_aside_as = catalog.with_name(f"{catalog.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = catalog.with_name(catalog.name + suffix)
        if source.exists():
            os.replace(source, salvage.set_aside_as.with_name(salvage.set_aside_as.name + suffix))
    return salvage


def recipe_path(catalog: Path) -> Path:
    return catalog.with_name(catalog.name + ".models.json")


def write_recipe(catalog: str | os.PathLike[str], models: list[tuple[str, int]]) -> None:
    """Record, beside the catalog, the models (source, top-k) it is indexed with."""
    import json

    from ..core.fs import atomic_write_text

    atomic_write_text(recipe_path(Path(catalog)), json.dumps({"models": [list(model) for model in models]}, indent=1))


def _read_recipe(catalog: Path) -> dict:
    import json

    try:
        recipe = json.loads(recipe_path(catalog).read_text(encoding="utf-8"))
        return recipe if isinstance(recipe, dict) and isinstance(recipe.get("models"), list) else {}
    except (OSError, ValueError):
        return {}


def _readable_rows(catalog: Path, query: str, table: str) -> list[tuple]:
    """The rows of ``table`` that can still be read: all at once, else one rowid at a time."""
    try:
        db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    with contextlib.closing(db):
        try:
            return db.execute(query).fetchall()
        except sqlite3.DatabaseError:
            pass
        rows = []
        try:
            top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            return []
        single = query.replace(f"FROM {table}", f"FROM {table} WHERE rowid = ?").replace(" ORDER BY id", "")
        for rowid in range(1, min(top, 100_000) + 1):
            with contextlib.suppress(sqlite3.DatabaseError):
                rows.extend(db.execute(single, (rowid,)).fetchall())
        return rows
