"""``imagerec describe PHOTO…``: a title and a description of each photo, from what is recognised in it."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..library.describe import iter_descriptions
from ._app import app
from .index import printable


@app.command()
def describe(
    photos: List[str] = typer.Argument(..., help="Photo files."),
    catalog: Optional[str] = typer.Option(None, "--catalog", "-c", help="Catalog to read photos it holds from (default: IMAGEREC_CATALOG, or .imagerec/catalog.db here or above; none is fine)."),
    model: str = typer.Option("mobilenet_v2", "--model", "-m", help="Model for photos no catalog holds."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per photo (JSON Lines)."),
) -> None:
    """Title and describe photos: what is in them, their colours, when, where and with what camera.

    A photo that cannot be described gets one error line on stderr; the others are still described, and the exit code is 1.
    """
    out = Console(highlight=False, soft_wrap=True)  # a description stays one line in a pipe or a file
    errors = Console(stderr=True, highlight=False, soft_wrap=True)  # an error line is never wrapped
    failed: list[str] = []

    def report(photo: str, error: Exception) -> None:
        failed.append(photo)
        errors.print(f"[red]error:[/] {escape(printable(str(error)))}")

    described = 0
    for photo, text in iter_descriptions(photos, catalog=catalog, model=model, on_error=report):
        described += 1
        if json_output:
            sys.stdout.write(json.dumps({"photo": photo, **text.to_dict()}, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            out.print(f"[bold]{escape(printable(photo))}[/]: {escape(text.title)}\n  {escape(text.description)}")
    if failed:
        if len(photos) > 1:
            errors.print(f"{described} photo{'s' if described != 1 else ''} described, {len(failed)} failed")
        raise typer.Exit(1)
