"""``imagerec import MODEL -o OUTPUT [--labels FILE] [--normalization NAME]``: a model made elsewhere, made imagerec's."""

from __future__ import annotations

from typing import Optional

import typer

from ..importing import import_model
from ._app import app


@app.command("import")
def import_command(
    model: str = typer.Argument(..., help="A Keras 2 .h5 (e.g. Teachable Machine's keras_model.h5) or a .tflite."),
    output: str = typer.Option(..., "--output", "-o", help="The file to write: NAME.keras for an .h5, NAME.tflite for a .tflite."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Label file (default: labels.txt beside a Teachable Machine export)."),
    normalization: Optional[str] = typer.Option(
        None, "--normalization", help="Pixel normalisation of a model that does not say (uint8, unit, tf, torch, caffe)."),
) -> None:
    """Turn a model made elsewhere into a file that carries its labels and preprocessing."""
    path = import_model(model, output, labels=labels, normalization=normalization)
    typer.echo(f"wrote {path}")
