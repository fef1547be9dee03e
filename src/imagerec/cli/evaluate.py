"""``imagerec evaluate MODEL DATA [--json] [--report DIR [--no-heat-maps]] [--top-k K] [--restrict]``."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._app import app


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="A zoo model name or a model file (.keras, .imagerec, .tflite)."),
    data: str = typer.Argument(..., help="Labelled images: a folder of class folders, a .csv (path,label) or a .tar.gz."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Also report top-K accuracy."),
    report: Optional[str] = typer.Option(None, "--report", help="Write an HTML report with PNG plots into this folder."),
    heat_maps: bool = typer.Option(True, "--heat-maps/--no-heat-maps",
                                   help="Show each confidently wrong photo of the report with its heat map."),
    restrict: bool = typer.Option(False, "--restrict", help="Only let the model choose among the dataset's classes."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads (default: all cores)."),
    json_output: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Accuracy, top-k, per-class precision/recall/F1 and a confusion matrix on labelled images."""
    from ..evaluation import evaluate as evaluate_api, open_set_sentence, percent
    from ..loading import load

    recognizer = load(model, num_threads=threads)
    result = evaluate_api(recognizer, data, top_k=top_k, report=report, restrict=restrict,
                          progress=False if json_output else None, heat_maps=heat_maps)
    if json_output:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        return
    console = Console()
    table = Table(title=f"{escape(result.model)} on {escape(result.data)}")
    open_set = result.threshold is not None  # a learned recognizer that may answer "unknown"
    columns = ["class", "precision", "recall", "F1", "support"]
    if open_set:
        columns += ["answered", "right of answered", "right overall"]
    for name in columns:
        table.add_column(name, justify="left" if name == "class" else "right")
    for row in result.metrics["per_class"]:
        cells = [escape(row["class"]), f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                 str(row["support"])]
        if open_set:
            cells += [percent(row["coverage"]), percent(row["accuracy_answered"]), percent(row["accuracy_overall"])]
        table.add_row(*cells)
    macro = result.metrics["macro_avg"]
    table.add_row("[bold]macro avg[/]", f"{macro['precision']:.3f}", f"{macro['recall']:.3f}", f"{macro['f1']:.3f}",
                  str(len(result.targets)), *([""] * (len(columns) - 5)), end_section=True)
    if open_set:  # over all images, not a mean of the classes
        table.add_row("[bold]all images[/]", "", "", "", str(len(result.targets)), percent(result.coverage),
                      percent(result.accuracy_answered), percent(result.accuracy_overall))
    console.print(table)
    console.print(
        f"accuracy [bold]{result.accuracy:.2%}[/], top-{result.top_k} accuracy {result.top_k_accuracy:.2%} "
        f"on {len(result.targets)} images ({len(result.skipped)} skipped)"
    )
    if open_set:
        console.print(escape(open_set_sentence(result)))
    if result.report_dir:
        console.print(f"report: {escape(str(result.report_dir / 'index.html'))}")
