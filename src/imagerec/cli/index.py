"""``imagerec index ROOT [--catalog FILE] [--model NAME|FILE ...] [--workers N] [--ray auto|ADDRESS]``."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..core.progress import progress
from ..library.indexer import index_library
from ._app import app


def printable(path: str) -> str:
    """A path with control characters (a newline in a file name) shown escaped.

    >>> printable("a\\nb.jpg")
    'a\\\\nb.jpg'
    """
    if path.isprintable():
        return path
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in path)


@app.command()
def index(
    root: str = typer.Argument(..., help="The library's root folder."),
    catalog: Optional[str] = typer.Option(None, "--catalog", "-c", help="Catalog file (default: ROOT/.imagerec/catalog.db)."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Zoo model name or model file (.tflite, .imagerec); repeat for several (default mobilenet_v2)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Decode threads (default: one per core)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads (default: all cores)."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Labels kept per photo and model."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for another indexer on the same catalog (-1: forever)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run decoding and inference on Ray: 'auto' or a cluster address."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON, no progress bar."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Set a damaged catalog aside and index the photos again with its models."),
) -> None:
    """Index (or bring up to date) the catalog of a photo library."""
    errors = Console(stderr=True, highlight=False, soft_wrap=True)  # an error line is never wrapped
    with _IndexProgress(enabled=False if json_output else None) as on_progress:
        summary = index_library(
            root,
            catalog=catalog,
            models=model or ([] if rebuild else ["mobilenet_v2"]),
            workers=workers,
            num_threads=threads,
            top_k=top_k,
            wait=None if wait < 0 else wait,
            ray=ray,
            on_progress=on_progress,
            on_wait=lambda holder: errors.print(f"waiting for the other indexer ({escape(holder)}) to finish…"),
            rebuild=rebuild,
        )
    if json_output:
        sys.stdout.write(json.dumps(summary.to_dict(), ensure_ascii=False) + "\n")
        return
    out = Console(highlight=False, soft_wrap=True)  # each summary line stays one line in a pipe or a file
    for path, error in summary.failures:
        errors.print(f"[red]failed:[/] {escape(printable(path))}: {escape(error)}")
    for path, error in summary.walk_errors:
        errors.print(f"[yellow]skipped:[/] {escape(printable(path))}: {escape(error)}")
    if summary.kept:
        errors.print(f"[yellow]kept:[/] {summary.kept} photos in folders that could not be read (marked stale, still searchable)")
    if summary.rebuilt_from:
        errors.print(f"rebuilt; the damaged catalog was set aside as {escape(summary.rebuilt_from)}")
    rate = summary.decoded / summary.seconds if summary.seconds > 0 else 0.0
    out.print(
        f"{summary.seen} photos in {escape(summary.root)}: {summary.new} new, {summary.changed} changed, "
        f"{summary.moved} moved, {summary.removed} removed, {summary.failed} failed, {summary.unchanged} unchanged"
        + (f", {summary.updated} updated" if summary.updated else "")
    )
    out.print(
        f"{summary.decoded} recognised in {summary.seconds:.1f} s"
        + (f" ({rate:.1f} photos/s)" if summary.decoded else "")
        + f"; catalog {escape(summary.catalog)}"
    )
    brought_up = caught_up(summary)
    if brought_up:
        out.print(brought_up)


def caught_up(summary) -> str | None:
    """One line of what was added to photos indexed earlier (a catalog of an older imagerec), or None.

    >>> from imagerec.library import IndexSummary
    >>> caught_up(IndexSummary("photos", "photos/.imagerec/catalog.db", [], colours_added=61, daytimes_added=1))
    'photos indexed earlier, brought up to date (no photo recognised again): colours named again for 61 photos, times of day for 1 photo'
    >>> caught_up(IndexSummary("photos", "photos/.imagerec/catalog.db", [])) is None
    True
    """
    def photos(count: int) -> str:
        return f"{count} photo{'s' if count != 1 else ''}"

    parts = [
        f"dates, cameras, places and colours read for {photos(summary.facts_added)}" if summary.facts_added else "",
        f"colours named again for {photos(summary.colours_added)}" if summary.colours_added else "",
        f"times of day for {photos(summary.daytimes_added)}" if summary.daytimes_added else "",
        f"descriptions written again for {photos(summary.reworded)}" if summary.reworded else "",
    ]
    parts = [part for part in parts if part]
    if not parts:
        return None
    return "photos indexed earlier, brought up to date (no photo recognised again): " + ", ".join(parts)


class _IndexProgress:
    """``on_progress(done, total)`` for :func:`index_library` shown as the one progress bar.

    The total is known only once the library has been walked, so the bar
    opens at the first call.
    """

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = enabled
        self._bars = contextlib.ExitStack()
        self._advance = None
        self._done = 0

    def __enter__(self) -> "_IndexProgress":
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._advance is None:
            if total == 0:
                return
            self._advance = self._bars.enter_context(progress(total, "indexing", enabled=self.enabled))
        self._advance(done - self._done)
        self._done = done

    def __exit__(self, *exc_info) -> None:
        self._bars.close()
