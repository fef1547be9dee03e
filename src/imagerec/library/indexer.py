"""Index a photo library: incremental, resumable, parallel.

``index_library(root)`` walks the tree, and for each photo:

- unchanged (same size and mtime as in the catalog): nothing is read;
- new or changed: the file is read and hashed; a content the catalog already
  knows (a moved, renamed or copied photo) is linked to its existing
  predictions without decoding; anything else is decoded and recognised;
- gone (in the catalog, no longer on disk): marked ``gone`` at the end —
  unless a new path has the same content, in which case the row moves there.

Every batch of results is written in one transaction, so a run killed at any
moment (SIGKILL included) leaves a consistent catalog holding everything
committed so far, and the next run continues from there. One writer at a
time: a second indexer waits or refuses (see :meth:`Catalog.acquire_lock`).

>>> from imagerec.library import index_library
>>> summary = index_library("../shared/photos")            # doctest: +SKIP
>>> summary.new, summary.failed                            # doctest: +SKIP
(17, 0)
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..core.errors import UsageError
from ..recognizer import Recognizer
from ..loading import load
from .analysis import Analysed, analyse
from .catalog import Catalog, FileRow, default_catalog_path
from .damage import set_aside, write_recipe
from .daytime_index import fill_daytimes, put_daytimes
from .describe import describe_missing, reword_descriptions
from .colour_refresh import refresh_colours
from .facts import fill_missing_facts, put_facts
from .walker import Entry, walk

__all__ = ["IndexSummary", "index_library", "load_models"]

ModelArg = str | os.PathLike[str] | Recognizer


@dataclass
class IndexSummary:
    """What one index run did."""

    root: str
    catalog: str
    models: list[str]
    seen: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    moved: int = 0
    removed: int = 0
    failed: int = 0
    updated: int = 0  # unchanged files analysed by a model added to the catalog
    decoded: int = 0  # photos actually decoded and recognised
    facts_added: int = 0  # photos indexed earlier given their colours, place... (library.facts) this run
    daytimes_added: int = 0  # photos indexed earlier given their parts of the day (library.daytime_index) this run
    colours_added: int = 0  # photos indexed earlier whose colours were named again (library.colour_refresh) this run
    reworded: int = 0  # photos indexed earlier whose description an older wording wrote, written again this run
    kept: int = 0  # not seen, but kept (marked stale): their folder could not be read
    failures: list[tuple[str, str]] = field(default_factory=list)
    walk_errors: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # folders (relative; "" is the root) that could not be read
    rebuilt_from: str | None = None  # a damaged catalog set aside by rebuild=True
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["failures"] = [{"path": p, "error": e} for p, e in self.failures]
        data["walk_errors"] = [{"path": p, "error": e} for p, e in self.walk_errors]
        return data


def load_models(models: Sequence[ModelArg], num_threads: int | None = None) -> list[tuple[Recognizer, str]]:
    """(recognizer, source) for zoo names, model files (``pets.imagerec``) or ready objects.

    The source is what ``imagerec.load`` needs to get the model back: the
    zoo name, or the model file's absolute path.
    """
    if not models:
        raise UsageError("no model given to index with (expected a zoo name or a model file)")
    loaded = []
    for model in models:
        if isinstance(model, Recognizer):
            loaded.append((model, model.name))
            continue
        text = os.fspath(model)
        source = str(Path(text).resolve()) if Path(text).is_file() else text
        loaded.append((load(text, num_threads=num_threads), source))
    return loaded


def index_library(
    root: str | os.PathLike[str],
    *,
    catalog: str | os.PathLike[str] | None = None,
    models: Sequence[ModelArg] = ("mobilenet_v2",),
    workers: int | None = None,
    top_k: int = 5,
    batch_size: int = 16,
    wait: float | None = 0.0,
    num_threads: int | None = None,
    ray: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    rebuild: bool = False,
) -> IndexSummary:
    """Bring the catalog of ``root`` up to date and say what changed.

    ``catalog`` defaults to ``ROOT/.imagerec/catalog.db``. ``wait`` is how
    long to wait for another indexer (``None``: as long as it takes).
    ``ray`` runs decoding and inference on a Ray cluster (``"auto"`` or an
    address); the catalog is still written here, by this process.
    ``on_progress(done, total)`` is called after each batch.

    ``rebuild`` sets the catalog aside (renamed ``catalog.db.damaged-TIME``)
    and indexes the photos into a new one with the models it was indexed
    with before (``models`` adds to them): the way out of a damaged catalog.
    A folder that cannot be read keeps its photos' rows, marked stale.
    """
    started = time.perf_counter()
    root_path = Path(root)
    if not root_path.is_dir():
        raise UsageError(f"{root}: not a folder (expected the root folder of a photo library)")
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    catalog_path = Path(catalog) if catalog is not None else default_catalog_path(root_path)
    salvage = set_aside(catalog_path) if rebuild else None
    if salvage is not None and salvage.models:
        given = [m for m in models if not isinstance(m, (str, os.PathLike)) or os.fspath(m) not in {s for s, _ in salvage.models}]
        models = [source for source, _ in salvage.models] + list(given)
    models = models or (("mobilenet_v2",) if rebuild else ())
    loaded = load_models(models, num_threads=num_threads)
    recognizers = [recognizer for recognizer, _ in loaded]
    with Catalog(catalog_path, root=root_path) as cat:
        cat.acquire_lock(wait, on_wait)
        model_ids = [cat.register_model(r, top_k, source) for r, source in loaded]
        write_recipe(catalog_path, [(m.source, m.top_k) for m in cat.models()])  # what --rebuild would need
        run_id = cat.start_run([r.name for r in recognizers])
        summary = IndexSummary(str(root_path.resolve()), str(catalog_path), [r.name for r in recognizers])
        if salvage is not None and salvage.set_aside_as is not None:
            summary.rebuilt_from = str(salvage.set_aside_as)
        try:
            run = _Run(cat, root_path, recognizers, model_ids, summary, top_k, batch_size, workers, ray, on_progress)
            run.sources = [source for _, source in loaded]
            run.run()
        except BaseException:
            summary.seconds = time.perf_counter() - started
            try:
                cat.finish_run(run_id, summary.to_dict(), status="failed")
            except Exception:
                pass  # the original error matters more
            raise
        summary.seconds = time.perf_counter() - started
        cat.finish_run(run_id, summary.to_dict())
    return summary


class _Run:
    """One pass over the library (kept as an object so the steps stay small)."""

    def __init__(self, cat, root, recognizers, model_ids, summary, top_k, batch_size, workers, ray, on_progress):
        self.cat, self.root, self.recognizers, self.model_ids = cat, root, recognizers, model_ids
        self.summary, self.top_k, self.batch_size, self.workers = summary, top_k, batch_size, workers
        self.ray, self.on_progress = ray, on_progress

    def run(self) -> None:
        entries = list(walk(self.root, on_error=self._walk_error))
        self.summary.seen = len(entries)
        rows = self.cat.file_rows()
        self.complete = self.cat.complete_contents(self.model_ids)
        complete_ids = set(self.complete.values())
        todo, self.kinds = self._plan(entries, rows, complete_ids)
        present = {entry.path for entry in entries}
        self.vanished = {path: row for path, row in rows.items() if row.status != "gone" and path not in present}
        # Not seen because a folder could not be read (permissions, a mount
        # hiccup) is not deleted: those rows stay, marked stale.
        kept = [row for path, row in self.vanished.items() if self._unreadable(path)]
        for row in kept:
            del self.vanished[row.path]
        self.summary.kept = len(kept)
        self.vanished_by_sha: dict[str, list[FileRow]] = defaultdict(list)
        for row in self.vanished.values():
            if row.sha256:
                self.vanished_by_sha[row.sha256].append(row)
        done = 0
        if self.on_progress:
            self.on_progress(0, len(todo))
        for chunk in self._results(todo):
            with self.cat.transaction():
                for item in chunk:
                    self._record(item)
            done += len(chunk)
            if self.on_progress:
                self.on_progress(done, len(todo))
        with self.cat.transaction():
            self.cat.mark_gone([row.id for row in self.vanished.values()])
            self.cat.mark_stale([row.id for row in kept])
            self.cat.drop_orphans()
        self.summary.removed = len(self.vanished)
        # Contents from before the facts existed (an older catalog): read again, not recognised again.
        self.summary.facts_added = fill_missing_facts(self.cat, str(self.root), workers=self.workers)
        # Colours named by an older naming: a small decode each for the colours, nothing else read again.
        self.summary.colours_added = refresh_colours(self.cat, str(self.root), workers=self.workers)
        # Their parts of the day (sunset, night...): from the stored time and position, no photo is read.
        self.summary.daytimes_added = fill_daytimes(self.cat)
        self.summary.reworded = reword_descriptions(self.cat)  # worded the old way: written again below
        describe_missing(self.cat)  # titles and descriptions: from the catalog alone, no photo is read

    def _walk_error(self, path: str, exc: OSError) -> None:
        self.summary.walk_errors.append((path, exc.strerror or str(exc)))
        relative = os.path.relpath(path, self.root).replace(os.sep, "/")
        self.summary.unreadable.append("" if relative == "." else relative)

    def _unreadable(self, path: str) -> bool:
        """Whether ``path`` (relative) lies in, or is, something the walk could not read."""
        return any(not folder or path == folder or path.startswith(folder + "/") for folder in self.summary.unreadable)

    def _plan(self, entries: list[Entry], rows: dict[str, FileRow], complete_ids: set[int]):
        todo: list[Entry] = []
        kinds: dict[str, tuple[str, FileRow | None]] = {}
        for entry in entries:
            row = rows.get(entry.path)
            same_stat = row is not None and (row.size, row.mtime_ns) == (entry.size, entry.mtime_ns)
            if same_stat and row.status == "failed" or same_stat and row.status == "ok" and row.content_id in complete_ids:
                self.summary.unchanged += 1
                continue
            if row is None or row.status == "gone":
                kind = "new"
            elif same_stat:
                kind = "updated"
            else:
                kind = "changed"
            todo.append(entry)
            kinds[entry.path] = (kind, row)
        return todo, kinds

    def _results(self, todo: list[Entry]) -> Iterator[list[Analysed]]:
        known = frozenset(self.complete)
        if self.ray:
            from .ray_runner import analyse_on_ray

            return analyse_on_ray(
                todo, str(self.root), self.recognizers, sources=self.sources, address=self.ray, known=known,
                top_k=self.top_k, batch_size=self.batch_size,
            )
        return analyse(
            todo, str(self.root), self.recognizers, known=known, top_k=self.top_k, workers=self.workers,
            batch_size=self.batch_size,
        )

    def _record(self, item: Analysed) -> None:
        entry, summary = item.entry, self.summary
        kind, row = self.kinds[entry.path]
        if item.error is not None:
            self.cat.put_file(entry.path, entry.size, entry.mtime_ns, None, "failed", item.error)
            summary.failed += 1
            summary.failures.append((entry.path, item.error))
            return
        content_id = self.complete.get(item.sha256)
        if content_id is None:
            if item.outputs is None:  # known when read, yet gone from the catalog since: cannot happen with the lock
                raise RuntimeError(f"{entry.path}: content vanished from the catalog during indexing")
            content_id = self.cat.put_content(item.sha256, item.width, item.height, item.taken_at, item.camera)
            if item.facts is not None:
                put_facts(self.cat, content_id, item.facts)
            put_daytimes(self.cat, [content_id])  # in the same transaction: a search never sees it uncomputed
            for model_id, output in zip(self.model_ids, item.outputs):
                self.cat.put_analysis(content_id, model_id, zip(output.labels, output.scores), output.embedding)
            self.complete[item.sha256] = content_id
            summary.decoded += 1
        movers = self.vanished_by_sha.get(item.sha256)
        if kind == "new" and movers:
            old = movers.pop()
            del self.vanished[old.path]
            self.cat.move_file(old.id, entry.path, entry.size, entry.mtime_ns)
            summary.moved += 1
            return
        self.cat.put_file(entry.path, entry.size, entry.mtime_ns, content_id, "ok", None)
        if kind == "changed" and row is not None and row.sha256 == item.sha256:
            summary.unchanged += 1  # touched: new mtime, same bytes
        else:
            setattr(summary, kind, getattr(summary, kind) + 1)
