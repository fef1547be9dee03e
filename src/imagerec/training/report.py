"""What a training run shows and leaves behind: a progress bar per epoch, and the learning curves.

The epoch bar is not :func:`imagerec.core.progress.progress` (the bar every
other long loop uses): it stays on screen when the epoch ends, as the
run's log, and shows the running loss, accuracy and speed beside the
steps. Without a terminal each epoch is one line on stderr, and nothing
at all when the run is quiet (``--json``).

>>> record = {"epoch": 1, "loss": 1.25, "accuracy": 0.5, "images_per_second": 80.0,
...           "val_loss": 1.5, "val_accuracy": 0.25}
>>> epoch_line(record, epochs=3)
'epoch 1/3: loss 1.2500  acc 50.00%  80 img/s  val_loss 1.5000  val_acc 25.00%'
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import numpy as np

from ..core.fs import atomic_path

__all__ = ["EpochProgress", "epoch_line", "plot_curves"]


def epoch_line(record: Mapping[str, float], epochs: int) -> str:
    """One epoch's record as the line the run prints."""
    text = (f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}  acc {record['accuracy']:.2%}  "
            f"{record['images_per_second']:.0f} img/s")
    if "val_accuracy" in record:
        text += f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_accuracy']:.2%}"
    return text


class EpochProgress:
    """One rich progress bar per epoch (loss, accuracy, images/s) on a terminal; a line otherwise."""

    def __init__(self, epoch: int, epochs: int, steps: int, verbose: bool) -> None:
        self.epoch, self.epochs, self.steps, self.verbose = epoch, epochs, steps, verbose
        self.bar = None
        self.task = None

    def __enter__(self) -> Self:
        if self.verbose and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn(f"epoch {self.epoch}/{self.epochs}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=self.steps, stats="")
        return self

    def update(self, step: int, partial: Mapping[str, float]) -> None:
        """Show ``step`` of the epoch done, with the running sums in ``partial`` (loss, correct, seen, seconds)."""
        if self.bar is None or not partial["seen"]:
            return
        stats = (f"loss {partial['loss'] / partial['seen']:.4f}  acc {partial['correct'] / partial['seen']:.2%}  "
                 f"{partial['seen'] / max(1e-9, partial['seconds']):.0f} img/s")
        self.bar.update(self.task, completed=step, stats=stats)

    def finish(self, record: Mapping[str, float]) -> None:
        """Show the epoch's record: in the bar on a terminal, as a line on stderr otherwise."""
        text = epoch_line(record, self.epochs)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.steps, stats=text.split(": ", 1)[1])
        elif self.verbose:
            print(text, file=sys.stderr, flush=True)

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.stop()


def plot_curves(history: list[dict], path: Path) -> Path | None:
    """Loss and accuracy per epoch (training and validation) as a PNG at ``path`` (None for an empty history)."""
    if not history:
        return None
    # A bare Figure, not pyplot: no global backend switch in the caller's process, nothing to close.
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    left.plot(epochs, [h["loss"] for h in history], "o-", label="training")
    right.plot(epochs, [h["accuracy"] for h in history], "o-", label="training")
    if "val_loss" in history[-1]:
        left.plot(epochs, [h.get("val_loss", np.nan) for h in history], "o-", label="validation")
        right.plot(epochs, [h.get("val_accuracy", np.nan) for h in history], "o-", label="validation")
    left.set(title="loss", xlabel="epoch")
    right.set(title="accuracy", xlabel="epoch", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    return Path(path)
