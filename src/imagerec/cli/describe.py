"""``imagerec describe PHOTO…``: a title and a description of each photo, from what is recognised in it."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..library.describe import describe_photos
from ._app import app
from .index import printable


@app.command()
def describe(
    photos: List[str] = typer.Argument(..., help="Photo files."),
    catalog: Optional[str] = typer.Option(None, "--catalog", "-c", help="Catalog to read photos it holds from (default: IMAGEREC_CATALOG, or .imagerec/catalog.db here or above; none is fine)."),
    model: str = typer.Option("mobilenet_v2", "--model", "-m", help="Model for photos no catalog holds."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per photo (JSON Lines)."),
) -> None:
    """Title and describe photos: what is in them, their colours, when, where and with what camera."""
    described = describe_photos(photos, catalog=catalog, model=model)
    out = Console(highlight=False)
    for photo, text in described:
        if json_output:
            sys.stdout.write(json.dumps({"photo": photo, **text.to_dict()}, ensure_ascii=False) + "\n")
        else:
            out.print(f"[bold]{escape(printable(photo))}[/]: {escape(text.title)}\n  {escape(text.description)}")
