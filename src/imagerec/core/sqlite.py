"""Opening the SQLite files imagerec shares between processes.

The library catalog and the embedding cache are both WAL databases that
several processes (two ``imagerec index`` runs, ``learn`` beside ``serve``)
may open at the same moment. SQLite's busy timeout covers nearly every
wait, but a few answers of "database is locked" come back at once, without
waiting: above all when two processes turn a brand-new file into a WAL
database together. :func:`open_database` retries those.

>>> import tempfile
>>> db = open_database(tempfile.mkdtemp() + "/x.db")
>>> db.execute("PRAGMA journal_mode").fetchone()[0]
'wal'
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

#: How long opening a database waits out another process that holds it.
OPEN_PATIENCE_S = 30.0


def open_database(
    path: str | os.PathLike[str],
    *,
    readonly: bool = False,
    pragmas: tuple[str, ...] = (),
    patience: float = OPEN_PATIENCE_S,
) -> sqlite3.Connection:
    """Connect to ``path`` in autocommit mode and, unless ``readonly``,
    switch it to WAL with ``synchronous = NORMAL``; then run ``pragmas``.

    Transient lock errors are retried until ``patience`` seconds have
    passed; any other :class:`sqlite3.DatabaseError` is raised at once.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            return _open_once(Path(path), readonly, pragmas, patience)
        except sqlite3.OperationalError as exc:
            if not is_transient(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def is_transient(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` only means another connection holds the file right now."""
    message = str(exc)
    return "locked" in message or "busy" in message


def _open_once(path: Path, readonly: bool, pragmas: tuple[str, ...], patience: float) -> sqlite3.Connection:
    if readonly:
        uri = "file:" + _quote_uri(path.resolve()) + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=patience)
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=patience)
    try:
        if not readonly:
            db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a committed transaction survives the process
            # being killed (it is in the OS's hands); only power loss may
            # drop the last few, and never corrupts the file.
            db.execute("PRAGMA synchronous = NORMAL")
        for pragma in pragmas:
            db.execute(pragma)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.close()
        raise
    return db


def _quote_uri(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path), safe="/")
