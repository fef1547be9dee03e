"""What a training run shows and leaves behind: lines saying what it does, a bar per epoch, the learning curves.

Before the first step the run says what it is doing, one line each, on a
terminal or not: the images it decodes, the split, and the plan (epochs,
steps, batch). The epoch bar is not :func:`imagerec.core.progress.progress`
(the bar every other long loop uses): it stays on screen when the epoch
ends, as the run's log, and shows the running loss, accuracy and speed
beside the steps; its last state adds the whole run's progress and the
time left. Without a terminal each epoch is one line on stderr with the
same. Nothing at all is printed when the run is quiet (``--json``).

>>> record = {"epoch": 1, "loss": 1.25, "accuracy": 0.5, "images_per_second": 80.0,
...           "val_loss": 1.5, "val_accuracy": 0.25}
>>> epoch_line(record, epochs=3)
'epoch 1/3: loss 1.2500  acc 50.00%  80 img/s  val_loss 1.5000  val_acc 25.00%'
>>> run_progress(done=1, planned=4, seconds=90.0)
'run 25%, 1 min 30 s so far, about 4 min 30 s left'
>>> split_line(train=90, val=10, classes=4, val_fraction=0.1)
'split: 90 training and 10 validation images (10% held out, stratified), 4 classes'
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import numpy as np

from ..core.fs import atomic_path

__all__ = ["EpochProgress", "duration", "epoch_line", "plan_line", "plot_curves", "run_progress", "split_line"]


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``: a span a person reads at a glance.

    >>> duration(4.2), duration(185), duration(3720)
    ('4 s', '3 min 05 s', '1 h 02 min')
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def split_line(*, train: int, val: int, classes: int, val_fraction: float | None) -> str:
    """The line saying how the images were split (``val_fraction`` None: a validation set was given)."""
    how = f"{val_fraction:.0%} held out, stratified" if val_fraction is not None else "validation set given"
    return f"split: {train} training and {val} validation images ({how}), {classes} classes"


def plan_line(*, arch: str, epochs: int, steps: int, batch: int, size: int, threads: int) -> str:
    """The line saying what the run is about to do.

    >>> plan_line(arch="fast_resnet", epochs=10, steps=97, batch=512, size=32, threads=2)
    'plan: fast_resnet, 10 epochs of 97 steps (batch 512, 32×32 px), 2 threads'
    """
    return (f"plan: {arch}, {epochs} epoch{'s' if epochs != 1 else ''} of {steps} step{'s' if steps != 1 else ''} "
            f"(batch {batch}, {size}×{size} px), {threads} thread{'s' if threads != 1 else ''}")


def run_progress(*, done: int, planned: int, seconds: float, session_epochs: int | None = None,
                 session_seconds: float | None = None) -> str:
    """The whole run's progress after ``done`` of ``planned`` epochs and ``seconds`` spent in all.

    The time left is extrapolated from this session's epochs when given
    (a resumed run's earlier sessions may have run on another machine).
    """
    per_epoch = (session_seconds / session_epochs if session_epochs and session_seconds is not None
                 else seconds / max(1, done))
    left = per_epoch * max(0, planned - done)
    text = f"run {done / max(1, planned):.0%}, {duration(seconds)} so far"
    return text + (f", about {duration(left)} left" if done < planned else ", done")


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

    def finish(self, record: Mapping[str, float], run: str = "") -> None:
        """Show the epoch's record (and ``run``, the whole run's progress): in the bar on a terminal,
        as a line on stderr otherwise."""
        text = epoch_line(record, self.epochs) + (f"  · {run}" if run else "")
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
