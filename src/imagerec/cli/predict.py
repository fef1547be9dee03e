"""``imagerec predict PATH... [--model NAME|FILE] [--top-k K] [--json] [--recursive]``.

The table shows each photo's answer and its probability, "(not sure)" under
:data:`~imagerec.answers.SURE_LEVEL`, "unknown (closest: …)" below a learned
recognizer's threshold (with the ``match`` the threshold is compared with),
and the runners-up; ``--json`` prints :meth:`~imagerec.answers.Answer.to_dict`
per photo (JSON Lines).
"""

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
from ..recognizer import DEFAULT_REFINE_MARGIN, SURE_LEVEL, FileResult
from ._app import app, fail


@app.command()
def predict(
    paths: List[str] = typer.Argument(..., help="Image files or folders."),
    model: str = typer.Option("mobilenet_v2", "--model", "-m", help="A zoo model name or a model file."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Label file for a bare .tflite model."),
    normalization: Optional[str] = typer.Option(
        None, "--normalization", help="Pixel normalisation of a float model file without metadata "
        "(uint8, unit, tf, torch, caffe)."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many labels per image."),
    min_score: float = typer.Option(0.0, "--min-score", min=0.0, max=1.0, help="Hide labels below this probability."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per image (JSON Lines)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also walk sub-folders."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads (default: all cores)."),
    refine_margin: Optional[float] = typer.Option(
        None,
        "--refine-margin",
        min=0.0,
        max=1.0,
        help="Decode a large JPEG again in more detail (at 1/2, then in full if still tied) when its best two labels are "
        f"closer than this (default: the model's own, calibrated, else {DEFAULT_REFINE_MARGIN}; 0: never, fastest; "
        "1: always in full, exact).",
    ),
) -> None:
    """What is in these photos, with probabilities."""
    files = expand_paths(paths, recursive=recursive)
    if not files:
        raise fail("no image files found in " + ", ".join(paths), code=2)
    options = {"normalization": normalization} if normalization else {}
    recognizer = load(model, labels=labels, num_threads=threads, **options)
    if refine_margin is not None:  # else the model's own margin, as the API and the service use
        recognizer.configure(refine_margin=refine_margin)
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
    answers = [r.predictions for r in collected if r.ok]
    threshold = next((a.threshold for a in answers if getattr(a, "threshold", None) is not None), None)
    # Names relative to the folder they share, which goes in the caption: the
    # table stays readable at 80 columns instead of folding long paths.
    notes = [f"in {_escape(folder)}"] if folder else []
    if threshold is not None:
        notes.append(f"'unknown' when the match is under {threshold:.3f} (similarity to the nearest class, not a probability)")
    if any(not a.sure and not a.unknown for a in answers):
        notes.append(f"(not sure): the answer's probability is under {SURE_LEVEL:.0%}")
    table = Table(show_lines=False, caption="\n".join(notes) or None, caption_justify="left")
    table.add_column("photo", overflow="fold", style="bold")
    table.add_column("answer", overflow="fold")
    table.add_column("score", justify="right")
    if threshold is not None:
        table.add_column("match", justify="right")
    if top_k > 1:
        table.add_column("runners-up", overflow="fold", style="dim")
    failed = 0
    for result in collected:
        if not result.ok:
            failed += 1
            errors.print(f"[red]error:[/] {_escape(str(result.error))}")
            continue
        table.add_row(*_row(result, folder, threshold is not None, top_k > 1))
    if table.row_count:
        console.print(table)
    ok = len(collected) - failed
    errors.print(f"{ok} photo{'s' if ok != 1 else ''} recognised, {failed} failed")
    return failed


def _row(result: FileResult, folder: str | None, with_match: bool, with_rest: bool) -> list[str]:
    """One table row: the answer (marked when unknown or not sure), its probability, the runners-up."""
    answer = result.predictions
    best = answer.closest
    if best is None:
        label, score = "(none above --min-score)", ""
    elif answer.unknown:
        label, score = f"[yellow]unknown[/] (closest: {_escape(best.label)})", f"[dim]{best.score:.1%}[/]"
    elif not answer.sure:
        label, score = f"{_escape(best.label)} [yellow](not sure)[/]", f"{best.score:.1%}"
    else:
        label, score = _escape(best.label), f"{best.score:.1%}"
    row = [_escape(os.path.relpath(result.path, folder) if folder else result.path), label, score]
    if with_match:
        match = "" if answer.match is None else f"{answer.match:.3f}"
        row.append(f"[yellow]{match}[/]" if answer.unknown else match)
    if with_rest:
        rest = [p for p in answer if p != best]
        row.append(_escape(", ".join(f"{p.label} {p.score:.1%}" for p in rest)))
    return row


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
