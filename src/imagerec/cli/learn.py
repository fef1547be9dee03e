"""``imagerec learn DATA --head imprint -o NAME.imagerec`` and ``imagerec learn --add DATA --to NAME.imagerec``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core.errors import UsageError
from ._app import app


def _threshold(text: str) -> float | str | None:
    if text.lower() == "auto":
        return "auto"
    if text.lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--threshold must be 'auto', 'none' or a number, got {text!r}") from None


@app.command()
def learn(
    data: Optional[str] = typer.Argument(
        None, help="A folder with one sub-folder of images per class (or a .csv / .tar.gz dataset)."
    ),
    backbone: str = typer.Option(
        "mobilenet_v2", "--backbone", "-b",
        help="Frozen feature extractor: mobilenet_v2 (fastest), mobilenet_v1_embedder, mobilenet_multi (layers of both, mirror-averaged: most accurate, ~5x slower), or keras:APPLICATION (e.g. keras:MobileNetV2).",
    ),
    weights: Optional[str] = typer.Option(
        None, "--weights", help="Keras backbones: 'imagenet' (default, Keras's cache), 'zoo' (MobileNetV2's ImageNet weights rebuilt from the zoo's LiteRT file, no download), a weights file, or 'none' (random)."
    ),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=32, help="Keras backbones: image side in pixels."),
    head: str = typer.Option("logistic", "--head", help="logistic | dense | imprint."),
    class_weight: Optional[str] = typer.Option(
        None, "--class-weight",
        help="balanced (default for the logistic and dense heads: a class with few photos counts as much as a big one) | none.",
    ),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Where to save the learned recognizer (NAME.imagerec)."),
    add: Optional[str] = typer.Option(None, "--add", help="Add the classes / examples in this folder ..."),
    to: Optional[str] = typer.Option(None, "--to", help="... to this learned recognizer (saved in place unless --output)."),
    augment: Optional[int] = typer.Option(None, "--augment", min=0, max=7, help="Extra flipped / cropped copies per photo."),
    frame: Optional[int] = typer.Option(
        None, "--frame", min=0,
        help="Grey frame around each picture, in pixels at the backbone's input (default 16 at 224; 0: none).",
    ),
    threshold: str = typer.Option("auto", "--threshold", help="'auto' (calibrated), 'none', or a number: below it, 'unknown'."),
    fine_tune: Optional[int] = typer.Option(
        None, "--fine-tune", min=1,
        help="Keras backbones: then unfreeze the last N layers (with weights) and train them; saves a .keras model.",
    ),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Epochs of fine-tuning (with --fine-tune)."),
    lr: float = typer.Option(1e-4, "--lr", min=0.0, help="Learning rate of fine-tuning (with --fine-tune)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads (default: all cores)."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary instead of a table."),
) -> None:
    """Teach new classes from photos on a frozen pretrained network (no retraining)."""
    from ..loading import load
    from ..transfer import add_examples
    from ..transfer import learn as learn_api

    progress = False if json_output else None
    if fine_tune is not None:
        _fine_tune(data, backbone, weights, input_size, fine_tune, epochs, lr, output, add, to, json_output,
                   class_weight)
        return
    if add is not None or to is not None:
        if add is None or to is None:
            raise UsageError("--add DATA and --to NAME.imagerec go together")
        if data is not None:
            raise UsageError("give either DATA (to learn a new recognizer) or --add DATA --to FILE, not both")
        if frame is not None:
            raise UsageError("--frame is set when a recognizer is learned; --add keeps the recognizer's own")
        if class_weight is not None:
            raise UsageError("--class-weight is set when a recognizer is learned; --add keeps the recognizer's own")
        base = load(to, num_threads=threads)
        model = add_examples(base, add, augment=augment, progress=progress)
        target = Path(output or to)
    else:
        if data is None:
            raise UsageError("give a DATA folder to learn from (or --add DATA --to NAME.imagerec)")
        target = Path(output) if output else Path(f"{Path(data).name.split('.')[0] or 'learned'}.imagerec")
        model = learn_api(
            data, backbone=_backbone(backbone, weights, input_size, threads), head=head, augment=augment or 0, frame=frame,
            threshold=_threshold(threshold), class_weight=class_weight,
            num_threads=threads, progress=progress, name=target.stem,
        )
    saved = model.save(target)
    summary = _summary(model, saved)
    if json_output:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        _print(summary)


def _fine_tune(data, backbone, weights, input_size, layers, epochs, lr, output, add, to, json_output,
               class_weight) -> None:
    from ..transfer.finetune import fine_tune

    if add is not None or to is not None:
        raise UsageError("--fine-tune learns a new model; it does not combine with --add / --to")
    if data is None:
        raise UsageError("give a DATA folder to fine-tune on")
    target = Path(output) if output else Path(f"{Path(data).name.split('.')[0] or 'fine_tuned'}.keras")
    chosen = None if (weights or "").lower() == "none" else (weights or "imagenet")
    result = fine_tune(data, backbone=backbone, weights=chosen, input_size=input_size, layers=layers, epochs=epochs,
                       lr=lr, output=target, verbose=False if json_output else None,
                       **({} if class_weight is None else {"class_weight": class_weight}))
    summary = result.to_dict()
    if json_output:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        return
    console = Console()
    errors = Console(stderr=True, highlight=False)
    for item in summary["skipped"]:
        errors.print(f"skipped: {item['path']}: {item['reason']}", markup=False)
    console.print(
        f"frozen head: {summary['frozen_val_accuracy']:.1%}, fine-tuned ({layers} layers, {summary['epochs_run']} epochs): "
        f"{summary['fine_tuned_val_accuracy']:.1%} on {summary['val_images']} held-out photos "
        f"(gain {summary['gain'] * 100:+.1f} points)"
    )
    counts = ", ".join(f"{name} {count}" for name, count in summary["class_counts"].items())
    console.print(f"training photos per class: {counts} (class weight {summary['class_weight']})", markup=False)
    console.print(f"saved {summary['path']}")


def _backbone(name: str, weights: str | None, input_size: int | None, threads: int | None):
    if not name.startswith("keras:"):
        if weights is not None or input_size is not None:
            raise UsageError(f"--weights and --input-size are for keras: backbones, not {name!r}")
        return name
    from ..transfer.backbones import get_backbone

    options: dict = {"weights": None if (weights or "").lower() == "none" else (weights or "imagenet")}
    if input_size is not None:
        options["input_size"] = input_size
    return get_backbone(name, num_threads=threads, **options)


def _summary(model, path: Path) -> dict:
    training = model.metadata.get("training") or {}
    return {
        "path": str(path),
        "backbone": (model.metadata.get("backbone") or {}).get("name"),
        "head": model.head.kind,
        "frame": model.preprocessing.frame,
        "classes": training.get("examples", {}),
        # The head's setting (None for the imprint head, whose class means need no weights).
        "class_weight": model.head.get_params().get("class_weight"),
        "threshold": model.threshold,
        "calibration": model.metadata.get("calibration"),
        "metrics": model.metadata.get("metrics", {}),
        "skipped": training.get("skipped", {}),
    }


def _print(summary: dict) -> None:
    from rich.markup import escape

    console = Console()
    errors = Console(stderr=True, highlight=False, soft_wrap=True)  # an error line is never wrapped
    table = Table(title=f"{summary['head']} head on {summary['backbone']}")
    table.add_column("class", overflow="fold")
    table.add_column("photos", justify="right")
    for label, count in summary["classes"].items():
        table.add_row(escape(label), str(count))
    console.print(table)
    if summary.get("class_weight"):
        console.print(f"class weight: {summary['class_weight']}")
    metrics = summary["metrics"]
    if metrics.get("held_out_accuracy") is not None:
        console.print(f"held-out accuracy: {metrics['held_out_accuracy']:.1%} on {metrics.get('held_out_examples')} photos")
    if summary["threshold"] is not None:
        console.print(f"'unknown' when the match is under {summary['threshold']:.3f} (match: similarity to the nearest "
                      f"class, shown by predict; not a probability) ({escape((summary['calibration'] or {}).get('method', ''))})")
    for source, reason in summary["skipped"].items():
        errors.print(f"[yellow]skipped:[/] {escape(reason)}")
    console.print(f"saved {escape(summary['path'])}")
