"""``imagerec export MODEL --format onnx|tflite|keras [--output PATH] [--samples PHOTO...] [--force]``."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from ._app import app


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="A trained .keras file, a learned .imagerec file, a .tflite file or a zoo model's name (mobilenet_v2, mobilenet_v3_large)."),
    format: str = typer.Option(..., "--format", "-f", help="onnx or tflite (any model; tflite of a Keras network needs the tflite extra), or keras (learned on a Keras backbone)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Where to write (default: MODEL with the new suffix)."),
    samples: Optional[List[str]] = typer.Option(
        None, "--samples", help="Photos or folders to check the export on (default: synthetic test images)."
    ),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="Largest allowed probability difference."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    force: bool = typer.Option(False, "--force", help="Replace the output file (and its labels file) if it exists."),
) -> None:
    """Export a model as one standalone file, checked against the original."""
    from ..export import export
    from ..core.pipeline import expand_paths

    photos = expand_paths(samples, recursive=True) if samples else None
    result = export(model, format.lower(), output, samples=photos, tolerance=tolerance, force=force)
    if json_output:
        typer.echo(json.dumps(result.to_dict()))
        return
    check = result.check
    typer.echo(f"wrote {result.path} ({result.format}; input {result.inputs}; outputs {', '.join(result.outputs)})")
    typer.echo(f"labels: {result.labels_path}")
    line = (
        f"checked on {check.samples} {check.sample_source} sample images: largest probability difference "
        f"{check.max_abs_diff:.1e} (tolerance {check.tolerance:.0e}), top-1 agrees {check.top1_agree}/{check.samples}"
    )
    if check.confidence_max_abs_diff is not None:
        line += f", confidence difference {check.confidence_max_abs_diff:.1e}"
    typer.echo(line)
