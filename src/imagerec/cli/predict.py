"""``imagerec predict PATH... [--model NAME|FILE] [--top-k K] [--json] [--recursive]``."""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core.pipeline import expand_paths
from ..core.progress import progress
from ..loading import load
from ..recognizer import DEFAULT_REFINE_MARGIN, FileResult
from ._app import app, fail


@app.command()
def predict(
    paths: List[str] = typer.Argument(..., help="Image files or folders."),
    model: str = typer.Option("mobilenet_v2", "--model", "-m", help="A zoo model name or a model file."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Label file for a bare .tflite model."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many labels per image."),
    min_score: float = typer.Option(0.0, "--min-score", min=0.0, max=1.0, help="Hide labels below this probability."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per image (JSON Lines)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also walk sub-folders."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads (default: all cores)."),
    refine_margin: float = typer.Option(
        DEFAULT_REFINE_MARGIN,
        "--refine-margin",
        min=0.0,
        max=1.0,
        help="Decode a large JPEG again at full size when its best two labels are closer than this "
        "(0: never, fastest; 1: always, exact).",
    ),
) -> None:
    """What is in these photos, with probabilities."""
    files = expand_paths(paths, recursive=recursive)
    if not files:
        raise fail("no image files found in " + ", ".join(paths), code=2)
    recognizer = load(model, labels=labels, num_threads=threads)
    recognizer.refine_margin = refine_margin
    results = recognizer.predict_files(files, top_k=top_k, min_score=min_score)
    failed = _emit_json(results) if json_output else _emit_table(results, len(files), top_k)
    raise typer.Exit(1 if failed else 0)


def _emit_json(results) -> int:
    failed = 0
    for result in results:
        failed += not result.ok
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return failed


def _emit_table(results, total: int, top_k: int) -> int:
    console = Console()
    errors = Console(stderr=True, highlight=False, soft_wrap=True)  # an error line is never wrapped
    collected: list[FileResult] = []
    with progress(total, "recognising", enabled=None if total > 1 else False) as advance:
        for result in results:
            collected.append(result)
            advance()
    folder = _common_folder([r.path for r in collected])
    # Names relative to the folder they share, which goes in the caption: the
    # table stays readable at 80 columns instead of folding long paths.
    table = Table(show_lines=False, caption=f"in {_escape(folder)}" if folder else None, caption_justify="left")
    table.add_column("photo", overflow="fold", style="bold")
    table.add_column("label", overflow="fold")
    table.add_column("score", justify="right")
    if top_k > 1:
        table.add_column("runners-up", overflow="fold", style="dim")
    failed = 0
    for result in collected:
        if not result.ok:
            failed += 1
            errors.print(f"[red]error:[/] {_escape(str(result.error))}")
            continue
        best, rest = (result.predictions[0], result.predictions[1:]) if result.predictions else (None, [])
        row = [
            _escape(os.path.relpath(result.path, folder) if folder else result.path),
            _escape(best.label) if best else "(none above --min-score)",
            f"{best.score:.1%}" if best else "",
        ]
        if top_k > 1:
            row.append(_escape(", ".join(f"{p.label} {p.score:.1%}" for p in rest)))
        table.add_row(*row)
    if table.row_count:
        console.print(table)
    ok = len(collected) - failed
    errors.print(f"{ok} photo{'s' if ok != 1 else ''} recognised, {failed} failed")
    return failed


def _common_folder(paths: list[str]) -> str | None:
    """The folder every path lies in, when there are several paths and it is not the current one.

    >>> _common_folder(["photos/a.jpg", "photos/b/c.jpg"])
    'photos'
    >>> _common_folder(["a.jpg", "b.jpg"]) is None
    True
    """
    if len(paths) < 2:
        return None
    try:
        folder = os.path.commonpath([os.path.dirname(p) or "." for p in paths])
    except ValueError:  # absolute and relative paths mixed, or different drives
        return None
    return folder if folder not in ("", ".") else None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
