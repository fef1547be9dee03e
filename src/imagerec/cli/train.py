"""``imagerec train DATA --arch course_cnn|fast_resnet --epochs N ... --output model.keras [--resume]``."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console

from ._app import app, fail


@app.command()
def train(
    data: str = typer.Argument(..., help="A folder with one sub-folder of images per class, a .csv (path,label) or a .tar.gz."),
    arch: str = typer.Option("fast_resnet", "--arch", "-a", help="course_cnn | fast_resnet."),
    output: str = typer.Option("model.keras", "--output", "-o", help="Where to save the trained model (.keras)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1, help="Epochs (default: 30 for course_cnn, 10 for fast_resnet)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1, help="Images per step (default: 32 / 256)."),
    image_size: int = typer.Option(32, "--image-size", "-s", min=8, max=1024, help="Train at S×S pixels."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd, adam, adamw, rmsprop, adagrad, adadelta, adamax, nadam, radam."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default depends on arch and optimizer)."),
    loss: str = typer.Option("categorical_crossentropy", "--loss", help="categorical_crossentropy, categorical_focal_crossentropy, categorical_hinge, mean_squared_error."),
    activation: Optional[str] = typer.Option(None, "--activation", help="Any Keras activation name: relu, elu, gelu, selu, tanh, swish..."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", min=0.0, max=0.99),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", min=0.0),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="constant | onecycle | linear | cosine."),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="Random flips and shifts (default: on for fast_resnet)."),
    cutout: int = typer.Option(0, "--cutout", min=0, help="Grey out a random N×N square of every training image (a regulariser for long runs; 0: off)."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Average each image with its mirror image when predicting."),
    tta_shift: int = typer.Option(0, "--tta-shift", min=0, help="Also average copies shifted by N pixels when predicting (3× the prediction cost; 0: off)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.01, max=0.9, help="Share held out for validation (stratified)."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="A separate validation dataset (instead of --val-fraction)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initial weights and the augmentation."),
    patience: Optional[int] = typer.Option(None, "--patience", min=0, help="Stop after N epochs without a better validation accuracy (0: never)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0, help="Finish within M minutes: the run measures its speed and fits the number of epochs (at most --epochs, if given) and the learning-rate schedule to the time."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="PyTorch threads (default: all cores)."),
    widths: Optional[str] = typer.Option(
        None, "--widths", help="fast_resnet's stage widths, e.g. 128,384,384 (default 64,256,256; wider is slower and more accurate)."
    ),
    precision: str = typer.Option(
        "auto", "--precision", help="auto | float32 | bfloat16 (auto: bfloat16 where the CPU has bfloat16 matrix units, ~3× faster)."
    ),
    class_weight: Optional[str] = typer.Option(
        None, "--class-weight",
        help="balanced (default: each image's loss weighted so that a class with few images counts as much as a big one) | none.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run that saves to OUTPUT from its state (saved every epoch and on Ctrl-C, in imagerec's cache folder)."),
    json_output: bool = typer.Option(False, "--json", help="No progress; print a JSON summary."),
) -> None:
    """Train your own network on labelled images (Keras), save it as a .keras file."""
    from ..training import train as train_api

    arch_options = {}
    if widths is not None:
        if arch != "fast_resnet":
            raise fail(f"--widths is an option of fast_resnet, not of {arch}", code=2)
        try:
            arch_options["widths"] = tuple(int(part) for part in widths.split(","))
        except ValueError:
            raise fail(f"--widths takes whole numbers separated by commas, e.g. 128,384,384; got {widths!r}", code=2) from None
        if not arch_options["widths"] or min(arch_options["widths"]) < 1:
            raise fail(f"--widths must be positive numbers, got {widths!r}", code=2)
    translate = None
    if augment is not None:
        translate = 2 if augment else 0
    result = train_api(
        data, arch=arch, output=output, epochs=epochs, batch_size=batch_size, image_size=image_size,
        optimizer=optimizer, lr=lr, loss=loss, activation=activation, label_smoothing=label_smoothing,
        weight_decay=weight_decay, schedule=schedule, augment_flip=augment, translate=translate, tta=tta,
        cutout=cutout, tta_shift=tta_shift,
        val_fraction=val_fraction, val_data=val_data, seed=seed,
        patience=patience if patience is not None else -1, max_minutes=max_minutes, resume=resume, threads=threads,
        precision=precision, class_weight=class_weight, verbose=not json_output, **arch_options,
    )
    summary = {
        "model": str(result.path),
        "curves": str(result.curves_path) if result.curves_path else None,
        "state": str(result.state_path),
        "classes": result.classes,
        "class_counts": result.class_counts,
        "class_weight": result.config.class_weight,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy,
        "epochs_run": len(result.history),
        "stopped": result.stopped,
        "seconds": round(result.seconds, 2),
        "images_per_second": round(
            sum(h["images_per_second"] * h["train_seconds"] for h in result.history)
            / max(1e-9, sum(h["train_seconds"] for h in result.history)), 1) if result.history else None,
        "skipped": [{"path": p, "reason": r} for p, r in result.skipped],
        "config": result.config.to_dict(),
    }
    if json_output:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        return
    console = Console(stderr=True, highlight=False)
    console.print(
        f"[bold]{result.path}[/]: best validation accuracy {result.best_val_accuracy:.2%} at epoch "
        f"{result.best_epoch} of {len(result.history)} ({result.stopped.replace('_', ' ')}), "
        f"{summary['seconds']:.0f} s, {summary['images_per_second'] or 0:.0f} images/s",
        markup=True,
    )
    counts = ", ".join(f"{name} {count}" for name, count in result.class_counts.items())
    console.print(f"training images per class: {counts} (class weight {result.config.class_weight})", markup=False)
    if result.curves_path:
        console.print(f"learning curves: {result.curves_path}", markup=False)
    console.print(f"resume state (for --resume; delete it to reclaim the space): {result.state_path}", markup=False)
    console.print(f"try it: imagerec predict --model {result.path} PHOTO.jpg", markup=False)
