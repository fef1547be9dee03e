"""The photo catalog: one SQLite database (WAL) per library.

What is in a photo is stored once per *content* (sha256 of the file's bytes),
and each *file* (a path relative to the library root) points at its content.
So a moved or renamed file keeps its predictions, and exact copies are
analysed once. Tables:

- ``files``: path, size, mtime, content, status (``ok`` / ``failed`` /
  ``gone``) and the error of a failed file;
- ``contents``: sha256, width, height, EXIF date taken and camera;
- ``models``: name, sha256, imagerec version, labels and synonyms;
- ``analyses``: which model has seen which content (so "nothing above the
  threshold" is still remembered as done);
- ``predictions``: (content, model, label index, score) for the top-k labels;
- ``embeddings``: (content, model, L2-normalised float16 vector);
- ``runs``: every index run, its models and its summary.

The schema version is ``PRAGMA user_version``; opening an older catalog
migrates it in one transaction, a newer one is refused with a clear error.
Writers take an exclusive lock file next to the database, so two indexers
never interleave; readers never block (WAL).

>>> import tempfile, os
>>> with Catalog(os.path.join(tempfile.mkdtemp(), "c.db"), root=".") as catalog:
...     catalog.schema_version == SCHEMA_VERSION
True
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..core.sqlite import open_database
from ..core.errors import CatalogBusyError, CatalogError, UsageError
from .damage import CatalogDamagedError, GuardedConnection, damaged_error
from .writer_lock import WriterLock
from .schema import MIGRATIONS, SCHEMA_VERSION, statements

# The error text of a row kept, though not seen, because its folder could not be read.
STALE = "stale: its folder could not be read at the last index run"

__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogBusyError",
    "CatalogDamagedError",
    "STALE",
    "FileRow",
    "ModelRow",
    "SCHEMA_VERSION",
    "CATALOG_DIRNAME",
    "default_catalog_path",
    "find_catalog",
]

CATALOG_DIRNAME = ".imagerec"
CATALOG_FILENAME = "catalog.db"






@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_id: int | None
    sha256: str | None
    status: str


@dataclass(frozen=True)
class ModelRow:
    """A model the catalog has predictions from."""

    id: int
    name: str
    sha256: str
    version: str
    labels: list[str]
    synonyms: list[tuple[str, ...]]
    embedding_dim: int | None
    top_k: int
    source: str


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _unwritable(path: Path, exc: BaseException) -> CatalogError:
    """The one-line error for a catalog that cannot be written where asked."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return CatalogError(
        f"{path}: cannot write the catalog here ({reason}); pass --catalog FILE to keep it in a writable folder",
        path=str(path),
    )


def default_catalog_path(root: str | os.PathLike[str]) -> Path:
    """Where ``imagerec index ROOT`` keeps its catalog: ``ROOT/.imagerec/catalog.db``.

    >>> default_catalog_path("/photos").as_posix()
    '/photos/.imagerec/catalog.db'
    """
    return Path(root) / CATALOG_DIRNAME / CATALOG_FILENAME


def find_catalog(start: str | os.PathLike[str] | None = None) -> Path:
    """The catalog for searching: ``IMAGEREC_CATALOG``, else the nearest
    ``.imagerec/catalog.db`` in ``start`` (default: the current folder) or above."""
    env = os.environ.get("IMAGEREC_CATALOG")
    if env:
        return Path(env)
    folder = Path(start or os.getcwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = default_catalog_path(candidate)
        if path.is_file():
            return path
    raise UsageError(
        f"no catalog found in {folder} or its parents (expected {CATALOG_DIRNAME}/{CATALOG_FILENAME}); "
        "run `imagerec index ROOT` first or pass --catalog FILE"
    )


class Catalog:
    """An open catalog. ``root`` is needed when creating one.

    Use as a context manager; :meth:`writing` holds the writer lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        create: bool = True,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self._writer = WriterLock(self.lock_path, self.path)
        self._changed = False
        self._models_cache: tuple[tuple, list] | None = None
        exists = self.path.is_file()
        if not exists and (readonly or not create):
            raise CatalogError(
                f"{self.path}: no such catalog (run `imagerec index ROOT` to make one)", path=str(self.path)
            )
        if not exists:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _unwritable(self.path, exc) from exc
        try:
            self.db = GuardedConnection(
                open_database(self.path, readonly=readonly, pragmas=("PRAGMA foreign_keys = ON",)), self.path
            )
            version = self.schema_version
        except sqlite3.DatabaseError as exc:
            if not readonly and isinstance(exc, sqlite3.OperationalError) and not os.access(self.path.parent, os.W_OK):
                raise _unwritable(self.path, exc) from exc
            if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_CORRUPT"):
                # A catalog damaged where opening reads it (its header pages): rebuildable, like damage found later.
                raise damaged_error(str(self.path), exc) from None
            raise CatalogError(f"{self.path}: not a usable catalog ({exc})", path=str(self.path)) from exc
        if version > SCHEMA_VERSION:
            self.db.close()
            raise CatalogError(
                f"{self.path}: catalog schema version {version} is newer than this imagerec understands "
                f"({SCHEMA_VERSION}); upgrade imagerec to use it",
                path=str(self.path),
            )
        if version < SCHEMA_VERSION:
            if readonly:
                self.db.close()
                raise CatalogError(
                    f"{self.path}: catalog schema version {version} needs migrating to {SCHEMA_VERSION}; "
                    "run `imagerec index` on it once",
                    path=str(self.path),
                )
            self.migrate()
        if root is not None and not readonly:
            try:
                self._set_root(Path(root))
            except BaseException:
                self.db.close()
                raise
        if self.meta("root") is None:
            self.db.close()
            raise CatalogError(f"{self.path}: catalog has no library root recorded", path=str(self.path))

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        self.release_lock()
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, upto: int = SCHEMA_VERSION) -> None:
        """Bring the schema to version ``upto``, one transaction per step.

        The version is read again inside each write transaction, so two
        processes opening a new catalog at once never apply a step twice.
        """
        while True:
            with self.transaction():
                version = self.schema_version
                if version >= upto:
                    return
                for statement in statements(MIGRATIONS[version]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it."""
        self.db.execute("BEGIN IMMEDIATE")
        self._changed = False
        try:
            yield self.db
            if self._changed:
                # One counter that moves with every change readers may cache (vector indexes).
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT(key)"
                    " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def mark_changed(self) -> None:
        """Note, inside a transaction, that photos or their analyses changed."""
        self._changed = True

    # -- the writer lock ---------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def acquire_lock(self, wait: float | None = 0.0, on_wait=None) -> None:
        """Become the one writer: wait up to ``wait`` seconds (``None``: forever); see :class:`WriterLock`."""
        self._writer.acquire(wait, on_wait)

    def release_lock(self) -> None:
        self._writer.release()

    # -- meta and root -----------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_root(self, root: Path) -> None:
        root = root.resolve()
        base = self.path.resolve().parent
        # Inside the library the root is kept relative, so the library can move as a whole.
        try:
            stored = os.path.relpath(root, base) if base.is_relative_to(root) else str(root)
        except ValueError:
            stored = str(root)
        if self.meta("root") == stored:
            return
        with self.transaction():  # checked and written in one transaction: two new indexers agree
            current = self.meta("root")
            if current == stored:
                return
            if current is not None and self._resolve_root(current) != root:
                if self.db.execute("SELECT 1 FROM files LIMIT 1").fetchone():
                    raise UsageError(
                        f"{self.path} is the catalog of {self._resolve_root(current)}, not of {root}; "
                        "pass a different --catalog for this folder"
                    )
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('root', ?)", (stored,))
            self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", (now(),))
            self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('catalog_id', ?)", (uuid.uuid4().hex,))

    @property
    def root(self) -> Path:
        return self._resolve_root(self.meta("root") or ".")

    def _resolve_root(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else (self.path.resolve().parent / path).resolve()

    # -- models ------------------------------------------------------------

    def register_model(self, recognizer, top_k: int, source: str | None = None) -> int:
        """The id of ``recognizer`` in this catalog, adding it when new.

        ``source`` is what to pass to ``imagerec.load`` to get it back (a zoo
        name or a model file path); it defaults to the recognizer's name.
        """
        from ..core.version import __version__

        key = (recognizer.name, recognizer.sha256 or "")
        row = self.db.execute("SELECT id, labels FROM models WHERE name = ? AND sha256 = ?", key).fetchone()
        if row:
            if json.loads(row[1]) == ["background", *recognizer.labels]:
                self._drop_background(int(row[0]), recognizer)
            return int(row[0])
        dim = None
        if recognizer.can_embed:
            backend = recognizer.backend
            dim = int(backend.output_dim("embedding")) if hasattr(backend, "output_dim") else None
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO models (name, sha256, version, labels, synonyms, embedding_dim, top_k, source, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *key,
                    __version__,
                    json.dumps(list(recognizer.labels), ensure_ascii=False),
                    json.dumps([list(names) for names in recognizer.synonyms], ensure_ascii=False),
                    dim,
                    top_k,
                    source or recognizer.name,
                    now(),
                ),
            )
        return int(cursor.lastrowid)

    def _drop_background(self, model_id: int, recognizer) -> None:
        """Renumber a catalog written when ImageNet models kept their ``background`` output 0.

        Label indices are now ImageNet-1k's (Egyptian cat 285, not 286), so the
        stored predictions move down by one with the model's label list; the
        background itself was never stored. Two steps keep the primary key unique.
        """
        with self.transaction():
            self.db.execute("UPDATE predictions SET label = -label WHERE model_id = ?", (model_id,))
            self.db.execute("UPDATE predictions SET label = -label - 1 WHERE model_id = ?", (model_id,))
            self.db.execute(
                "UPDATE models SET labels = ?, synonyms = ? WHERE id = ?",
                (json.dumps(list(recognizer.labels), ensure_ascii=False),
                 json.dumps([list(names) for names in recognizer.synonyms], ensure_ascii=False), model_id),
            )
        self._models_cache = None

    def models(self) -> list[ModelRow]:
        key = tuple(self.db.execute("SELECT count(*), max(id) FROM models").fetchone())
        if self._models_cache is not None and self._models_cache[0] == key:
            return list(self._models_cache[1])
        rows = self.db.execute(
            "SELECT id, name, sha256, version, labels, synonyms, embedding_dim, top_k, source FROM models ORDER BY id"
        ).fetchall()
        models = [
            ModelRow(r[0], r[1], r[2], r[3], json.loads(r[4]), [tuple(s) for s in json.loads(r[5])], r[6], r[7], r[8])
            for r in rows
        ]
        self._models_cache = (key, models)
        return list(models)

    def model(self, name: str | None = None, *, embedding: bool = False) -> ModelRow:
        """The model named ``name`` (or the first one, or the first with embeddings)."""
        rows = self.models()
        if embedding:
            rows = [row for row in rows if row.embedding_dim]
        if name is not None:
            rows = [row for row in rows if row.name == name or Path(name).stem == row.name]
        if not rows:
            what = "with embeddings " if embedding else ""
            known = ", ".join(sorted({row.name for row in self.models()})) or "none"
            wanted = f"named {name!r} " if name else ""
            raise UsageError(f"{self.path}: no model {wanted}{what}in this catalog (it has: {known})")
        return rows[-1] if name is not None else rows[0]

    # -- runs --------------------------------------------------------------

    def start_run(self, model_names: Sequence[str]) -> int:
        """Record a run as ``running``; runs still ``running`` were killed (the caller holds the lock)."""
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET status = 'failed', summary = coalesce(summary, ?) WHERE status = 'running'",
                (json.dumps({"error": "interrupted: the indexer stopped before finishing (killed?)"}),),
            )
            cursor = self.db.execute(
                "INSERT INTO runs (started_at, status, models) VALUES (?, 'running', ?)",
                (now(), json.dumps(list(model_names))),
            )
        return int(cursor.lastrowid)

    def finish_run(self, run_id: int, summary: dict, status: str = "done") -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                (now(), status, json.dumps(summary, ensure_ascii=False), run_id),
            )

    # -- reading state for the indexer --------------------------------------

    def file_rows(self) -> dict[str, FileRow]:
        """Every file row by path, with its content's sha256."""
        rows = self.db.execute(
            "SELECT f.id, f.path, f.size, f.mtime_ns, f.content_id, c.sha256, f.status"
            " FROM files f LEFT JOIN contents c ON c.id = f.content_id"
        )
        return {row[1]: FileRow(*row) for row in rows}

    def complete_contents(self, model_ids: Sequence[int]) -> dict[str, int]:
        """sha256 -> content id, for contents every one of ``model_ids`` has analysed."""
        if not model_ids:
            return {}
        marks = ",".join("?" * len(model_ids))
        rows = self.db.execute(
            f"SELECT c.sha256, c.id FROM contents c JOIN analyses a ON a.content_id = c.id"
            f" WHERE a.model_id IN ({marks}) GROUP BY c.id HAVING count(*) = ?",
            (*model_ids, len(model_ids)),
        )
        return dict(rows.fetchall())

    # -- writing (inside a transaction) -------------------------------------

    def put_content(self, sha256: str, width: int | None, height: int | None, taken_at: str | None, camera: str | None) -> int:
        self.db.execute(
            "INSERT INTO contents (sha256, width, height, taken_at, camera) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(sha256) DO UPDATE SET width = excluded.width, height = excluded.height,"
            " taken_at = excluded.taken_at, camera = excluded.camera, daytime = NULL",  # its time of day: again
            (sha256, width, height, taken_at, camera),
        )
        return int(self.db.execute("SELECT id FROM contents WHERE sha256 = ?", (sha256,)).fetchone()[0])

    def put_analysis(
        self,
        content_id: int,
        model_id: int,
        predictions: Iterable[tuple[int, float]],
        embedding: np.ndarray | None,
    ) -> None:
        """Replace what ``model_id`` says about ``content_id``."""
        self.db.execute("DELETE FROM predictions WHERE content_id = ? AND model_id = ?", (content_id, model_id))
        self.db.executemany(
            "INSERT INTO predictions (content_id, model_id, label, score) VALUES (?, ?, ?, ?)",
            [(content_id, model_id, int(label), float(score)) for label, score in predictions],
        )
        self._changed = True
        if embedding is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO embeddings (content_id, model_id, vector) VALUES (?, ?, ?)",
                (content_id, model_id, normalized_f16(embedding).tobytes()),
            )
        self.db.execute("INSERT OR IGNORE INTO analyses (content_id, model_id) VALUES (?, ?)", (content_id, model_id))

    def put_file(self, path: str, size: int, mtime_ns: int, content_id: int | None, status: str, error: str | None) -> None:
        self._changed = True
        self.db.execute(
            "INSERT INTO files (path, size, mtime_ns, content_id, status, error, indexed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, content_id = excluded.content_id, status = excluded.status,"
            " error = excluded.error, indexed_at = excluded.indexed_at",
            (path, size, mtime_ns, content_id, status, error, now()),
        )

    def move_file(self, file_id: int, new_path: str, size: int, mtime_ns: int) -> None:
        """Give an existing row (and so its history) a new path."""
        self._changed = True
        self.db.execute("DELETE FROM files WHERE path = ? AND id != ?", (new_path, file_id))
        self.db.execute(
            "UPDATE files SET path = ?, size = ?, mtime_ns = ?, status = 'ok', error = NULL, indexed_at = ? WHERE id = ?",
            (new_path, size, mtime_ns, now(), file_id),
        )

    def mark_stale(self, file_ids: Sequence[int]) -> None:
        """Mark rows kept only because their folder could not be read; other rows lose the mark."""
        self.db.execute("UPDATE files SET error = NULL WHERE status = 'ok' AND error = ?", (STALE,))
        self.db.executemany("UPDATE files SET error = ? WHERE id = ?", [(STALE, i) for i in file_ids])

    def mark_gone(self, file_ids: Sequence[int]) -> None:
        self._changed = self._changed or bool(file_ids)
        self.db.executemany("UPDATE files SET status = 'gone' WHERE id = ?", [(i,) for i in file_ids])

    def drop_orphans(self) -> int:
        """Delete contents no file row points at (their predictions go with them)."""
        cursor = self.db.execute(
            "DELETE FROM contents WHERE id NOT IN (SELECT content_id FROM files WHERE content_id IS NOT NULL)"
        )
        if cursor.rowcount > 0:
            self._changed = True
            # Saved vector indexes cannot drop entries cheaply: this tells them to rebuild.
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES ('contents_removed', '1') ON CONFLICT(key)"
                " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
        return cursor.rowcount

    # -- reading for search ------------------------------------------------

    def paths_of(self, content_ids: Sequence[int]) -> dict[int, list[str]]:
        """The present (``ok``) paths of each content, sorted."""
        found: dict[int, list[str]] = {}
        ids = list(dict.fromkeys(int(i) for i in content_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT content_id, path FROM files WHERE status = 'ok' AND content_id IN ({marks}) ORDER BY path",
                chunk,
            )
            for content_id, path in rows:
                found.setdefault(content_id, []).append(path)
        return found

    def content_of(self, sha256: str) -> int | None:
        row = self.db.execute("SELECT id FROM contents WHERE sha256 = ?", (sha256,)).fetchone()
        return int(row[0]) if row else None

    def embedding(self, content_id: int, model_id: int) -> np.ndarray | None:
        row = self.db.execute(
            "SELECT vector FROM embeddings WHERE content_id = ? AND model_id = ?", (content_id, model_id)
        ).fetchone()
        return None if row is None else np.frombuffer(row[0], np.float16).astype(np.float32)

    def embeddings(self, model_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(content ids, N×D float16 matrix) of the model's embeddings of present files."""
        rows = self.db.execute(
            "SELECT e.content_id, e.vector FROM embeddings e WHERE e.model_id = ? AND EXISTS"
            " (SELECT 1 FROM files f WHERE f.content_id = e.content_id AND f.status = 'ok') ORDER BY e.content_id",
            (model_id,),
        ).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float16)
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), np.float16).reshape(len(rows), -1)
        return ids, matrix

    def embedding_stamp(self, model_id: int) -> str:
        """Changes whenever the set of present embeddings may have changed (costs one lookup)."""
        return f"{self.meta('catalog_id') or self.path.resolve()}:{self.meta('generation') or 0}:{model_id}"

    def stats(self) -> dict:
        counts = dict(self.db.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        return {
            "catalog": str(self.path),
            "root": str(self.root),
            "schema_version": self.schema_version,
            "files": {status: counts.get(status, 0) for status in ("ok", "failed", "gone")},
            "contents": self.db.execute("SELECT count(*) FROM contents").fetchone()[0],
            "models": [row.name for row in self.models()],
        }


def normalized_f16(vector: np.ndarray) -> np.ndarray:
    """``vector / ||vector||`` as float16 (zeros stay zeros)."""
    values = np.asarray(vector, np.float32).ravel()
    norm = float(np.linalg.norm(values))
    return (values / norm if norm > 0 else values).astype(np.float16)
