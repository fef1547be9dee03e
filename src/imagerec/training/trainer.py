"""The training loop: epochs of augmented steps, validation, checkpoints, resume state, early stopping, time budget.

A :class:`Trainer` is given the built Keras model, its
:class:`~imagerec.training.config.TrainConfig`, the decoded images
(:class:`TrainingData`) and where to write (:class:`RunFiles`);
:func:`imagerec.train` assembles those. Each step augments a uint8 batch
(:func:`imagerec.data.augment`), runs the model through
:class:`~imagerec.training.torch_graph.ModelRunner` and moves the weights
with the pieces of :mod:`imagerec.training.optim`. After each epoch the
model is validated, saved if it is the best so far, and the resume state
written; Ctrl-C writes it too.

>>> import os, tempfile
>>> files = RunFiles.beside(os.path.join(tempfile.mkdtemp(), "shapes.keras"))
>>> files.curves.name, files.state.parent.name  # the resume state lives in the cache
('shapes.curves.png', 'training')
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ImagerecError, OutputError, UsageError
from ..core.fs import prepare_output_folder
from ..core.preprocessing import Preprocessing
from ..data.augment import augment
from ..data.datasets import Dataset
from ..data.views import apply_view, prediction_views
from . import time_budget
from .config import TrainConfig
from .optim import Lookahead, class_weights, make_loss, make_optimizer, schedule_factor
from .report import EpochProgress, plan_line, plot_curves, run_progress
from .resume import (
    STATE_VERSION,
    check_same_run,
    model_signature,
    read_state,
    state_path_for,
    write_state,
)
from .torch_graph import ModelRunner

__all__ = ["RunFiles", "Trainer", "TrainingData", "evaluation_batch"]

Callback = Callable[[str, dict], None]


@dataclass
class RunFiles:
    """Where a run writes: the model, its learning curves beside it, and its resume state in the cache."""

    model: Path
    state: Path
    curves: Path

    @classmethod
    def beside(cls, output: str | os.PathLike[str]) -> RunFiles:
        """The files of a run saving its model to ``output`` (a ``.keras`` path), checked writable now,
        not after the first epoch."""
        model = Path(output)
        if model.suffix.lower() != ".keras":
            raise UsageError(f"{model}: the output must be a .keras file")
        prepare_output_folder(model.parent, what="the model")
        if model.is_dir():
            raise OutputError(f"{model}: is a folder; give a file name ending in .keras for the model", path=str(model))
        return cls(model=model, state=state_path_for(model), curves=model.with_name(model.stem + ".curves.png"))


@dataclass
class TrainingData:
    """The decoded images of a run (uint8 ``N×H×W×3``, in memory: every step picks at random) and their classes."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray
    classes: list[str]
    preprocessing: Preprocessing
    digest: str  # of the files, labels and split: a resumed run must use the same
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def decode(cls, dataset: Dataset, train_set: Dataset, val_set: Dataset, preprocessing: Preprocessing, *,
               workers: int | None = None, progress: bool | None = None) -> TrainingData:
        """Decode both parts; every class needs a readable training image. Unreadable files end in ``skipped``."""
        x_train = np.array(train_set.arrays(preprocessing, workers=workers, progress=progress, require_every_class=True))
        x_val = np.array(val_set.arrays(preprocessing, workers=workers, progress=progress)) if len(val_set) else None
        digest = hashlib.sha256()
        for part in (train_set, val_set):  # after decoding: unreadable files are no longer part of it
            digest.update(json.dumps([part.paths, part.targets.tolist(), part.classes]).encode())
        return cls(x_train=x_train, y_train=train_set.targets, x_val=x_val, y_val=val_set.targets,
                   classes=list(dataset.classes), preprocessing=preprocessing, digest=digest.hexdigest(),
                   skipped=list(dict.fromkeys([*dataset.skipped, *train_set.skipped, *val_set.skipped])))


def evaluation_batch(image_size: Sequence[int]) -> int:
    """Images per forward pass when scoring: about 256 CIFAR-sized images' worth of pixels, 32 to 256.

    Big batches of big images spill out of the CPU's caches: MobileNetV2 at
    160 px scored 10 images/s in batches of 500 and 76 in batches of 32;
    fast_resnet at 32 px, 559 images/s at 500 and 613 at 256.

    >>> evaluation_batch((32, 32)), evaluation_batch((64, 64)), evaluation_batch((160, 160))
    (256, 64, 32)
    """
    height, width = (int(v) for v in image_size)
    return int(max(32, min(256, 256 * 32 * 32 // max(1, height * width))))


class Trainer:
    """One training run of ``model`` on ``data`` (see the module doc).

    ``started`` is the clock time (:data:`imagerec.training.time_budget.clock`)
    the run was asked for: a time budget counts from there. ``epochs_cap`` is
    the most epochs a time budget may plan (``None``: as many as fit).
    ``callbacks`` get ``fn(event, info)`` for ``"step"``, ``"epoch"`` and
    ``"plan"`` events (see :func:`imagerec.train`).
    """

    def __init__(self, *, model: Any, config: TrainConfig, data: TrainingData, files: RunFiles, started: float,
                 epochs_cap: int | None = None, verbose: bool | None = None,
                 callbacks: Iterable[Callback] = ()) -> None:
        import torch

        self._torch = torch
        self.config, self.data, self.files = config, data, files
        self.runner = ModelRunner(model, image_size=config.image_size, normalization=config.normalization,
                                  precision=config.precision)
        self.verbose = sys.stderr.isatty() if verbose is None else bool(verbose)
        self.callbacks = list(callbacks)
        self.started = started
        self.epochs_cap = epochs_cap
        self.batch_size = min(config.batch_size, len(data.x_train))
        self.steps_per_epoch = max(1, len(data.x_train) // self.batch_size)
        self.optimizer = make_optimizer(config.optimizer, *self.runner.parameter_groups(), lr=config.lr,
                                        weight_decay=config.weight_decay, momentum=config.momentum,
                                        norm_lr_scale=config.bias_lr_scale)
        self.lookahead = Lookahead(self.runner.variables(), self.batch_size) if config.lookahead else None
        self.loss_fn = make_loss(config.loss, num_classes=len(data.classes), label_smoothing=config.label_smoothing,
                                 outputs_logits=self.runner.outputs_logits,
                                 weights=class_weights(config.class_weight, data.y_train, len(data.classes)))
        # Alternating flip: each image is mirrored in every other epoch (which ones first is fixed by the seed).
        self.first_mirror = np.random.default_rng([config.seed, 1]).random(len(data.x_train)) < 0.5
        self.epoch = 0  # completed epochs
        self.step = 0  # steps done in the current epoch
        self.partial: dict[str, float] = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
        self.history: list[dict] = []
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self.best_weights: list | None = None
        self.stopped = "completed"  # or "early_stopping", "time_budget"
        self.elapsed_before = 0.0  # seconds spent in earlier sessions of a resumed run
        self.planned = config.epochs  # the epochs the schedule spans (fitted to a time budget, if any)
        self.budget: time_budget.TimeBudget | None = None
        self._start: float | None = None
        self._session_epochs = 0  # epochs run in this session (the time left is extrapolated from them)

    @property
    def model(self) -> Any:
        """The Keras model being trained (its variables are the trained weights)."""
        return self.runner.model

    # -- state -----------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to go on from here, as tensors and plain values."""
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "model": model_signature(self.runner.model),
            "classes": self.data.classes,
            "data": self.data.digest,
            "epoch": self.epoch,
            "step": self.step,
            "partial": dict(self.partial),
            "weights": [v.detach().clone() for v in self.runner.variables()],
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "best_accuracy": self.best_accuracy,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "elapsed": self.elapsed_before + self._elapsed(),
            "planned": self.planned,
        }

    def save_state(self) -> None:
        write_state(self.files.state, self.state())

    def load_state(self) -> None:
        """Go on from the saved state (refused if the data, settings or model differ)."""
        state = read_state(self.files.state)
        check_same_run(state, path=self.files.state, config=self.config, classes=self.data.classes,
                       data_digest=self.data.digest, model=self.runner.model, variables=self.runner.variables())
        with self._torch.no_grad():
            for variable, value in zip(self.runner.variables(), state["weights"]):
                variable.copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.partial = dict(state["partial"])
        self.history = list(state["history"])
        self.best_accuracy, self.best_epoch = float(state["best_accuracy"]), int(state["best_epoch"])
        self.best_weights = state["best_weights"]
        self.elapsed_before = float(state["elapsed"])
        if self.epochs_cap is None or self.config.max_minutes is not None:
            # Go on with the saved plan (a time budget's, say), unless --epochs sets a new one.
            self.planned = self.config.epochs = int(state.get("planned", self.planned))
        self._say(f"resuming at epoch {self.epoch + 1}" + (f", step {self.step}" if self.step else ""))

    # -- the loop ----------------------------------------------------------

    def _elapsed(self) -> float:
        return time_budget.clock() - self._start if self._start is not None else 0.0

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def _emit(self, event: str, info: dict) -> None:
        for callback in self.callbacks:
            callback(event, info)

    def _start_budget(self) -> None:
        """Fit the run to ``max_minutes``, counting what earlier sessions of a resumed run used."""
        config = self.config
        if config.max_minutes is None:
            return
        views = len(prediction_views(config.tta, config.tta_shift))
        val_images = 0 if self.data.x_val is None else len(self.data.x_val)
        self.budget = time_budget.TimeBudget(
            config.max_minutes * 60, start=self.started - self.elapsed_before, steps_per_epoch=self.steps_per_epoch,
            cap=self.epochs_cap, eval_batches=val_images * views / self.batch_size, constant=config.schedule == "constant",
        )

    def _replan(self) -> bool:
        """Fit the plan to the time left; return whether another epoch fits (at an epoch boundary)."""
        assert self.budget is not None
        planned = self.budget.plan(epoch=self.epoch, step=self.step, planned=self.planned, now=time_budget.clock())
        if planned != self.planned:
            seconds = self.budget.epoch_seconds()
            self._say(f"time budget of {self.config.max_minutes:g} minutes: {planned} epochs "
                      f"(about {seconds:.{0 if seconds >= 10 else 1}f} s each)")
            self._emit("plan", {"epoch": self.epoch, "step": self.step, "epochs": planned, "epoch_seconds": seconds})
            self.planned = planned
        self.config.epochs = self.planned  # saved with the model: the epochs the schedule spanned
        return self.planned > self.epoch

    def fit(self) -> None:
        """Run epochs until the plan is done, patience runs out or the time budget fits no more."""
        self._start = time_budget.clock()
        config = self.config
        self._start_budget()
        if self.epoch >= self.planned:
            self._say(f"already trained for {self.epoch} epochs; pass more --epochs to continue")
            return
        self._say(plan_line(arch=config.arch, epochs=self.planned, steps=self.steps_per_epoch, batch=self.batch_size,
                            size=config.image_size, threads=self._torch.get_num_threads())
                  + (f", at most {config.max_minutes:g} minutes" if config.max_minutes is not None else ""))
        try:
            while self.epoch < self.planned:
                epoch_start = time_budget.clock()
                record = self._run_epoch()
                self.history.append(record)
                self._emit("epoch", dict(record))
                accuracy = record.get("val_accuracy", record["accuracy"])
                if accuracy > self.best_accuracy:
                    self.best_accuracy, self.best_epoch = accuracy, record["epoch"]
                    self.best_weights = [v.detach().clone() for v in self.runner.variables()]
                    self._save_model(checkpoint=True)
                self.save_state()
                if config.patience is not None and record["epoch"] - self.best_epoch >= config.patience:
                    self.stopped = "early_stopping"
                    self._say(f"stopping: no better validation accuracy for {config.patience} epochs")
                    break
                if self.budget is not None:
                    self.budget.epoch_done(time_budget.clock() - epoch_start)
                    if not self._replan():
                        break
            if self.budget is not None and self.stopped == "completed" and (
                    self.epochs_cap is None or self.planned < self.epochs_cap):
                self.stopped = "time_budget"
                self._say(f"{self.planned} epochs fitted the time budget of {config.max_minutes:g} minutes")
        except KeyboardInterrupt:
            self.save_state()
            self._say(f"interrupted: state saved to {self.files.state}; run again with --resume to continue")
            raise

    def _run_epoch(self) -> dict:
        config, data = self.config, self.data
        order = np.random.default_rng([config.seed, self.epoch]).permutation(len(data.x_train))
        with EpochProgress(self.epoch + 1, self.planned, self.steps_per_epoch, self.verbose) as bar:
            bar.update(self.step, self.partial)
            while self.step < self.steps_per_epoch:
                total_steps = self.planned * self.steps_per_epoch  # a time budget may change the plan
                tick = time_budget.clock()
                index = order[self.step * self.batch_size:(self.step + 1) * self.batch_size]
                loss, correct = self._train_step(index, (self.epoch * self.steps_per_epoch + self.step) / total_steps)
                self.step += 1
                self.partial["loss"] += loss * len(index)
                self.partial["correct"] += correct
                self.partial["seen"] += len(index)
                self.partial["seconds"] += time_budget.clock() - tick
                bar.update(self.step, self.partial)
                self._emit("step", {"epoch": self.epoch + 1, "step": self.step, "loss": self.partial["loss"] / self.partial["seen"],
                                    "lr": self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0]["lr_scale"]})
                if self.budget is not None:
                    self.budget.step_done(time_budget.clock() - tick)
                    if self.budget.overhead is None and len(self.budget.durations) == time_budget.CALIBRATION_STEPS:
                        self._replan()  # the first plan, from this session's first steps
            if self.lookahead is not None:
                self.lookahead.copy_back()  # validate and checkpoint the averaged weights
            record = self._epoch_record()
            self._session_epochs += 1
            bar.finish(record, run_progress(done=self.epoch + 1, planned=self.planned,
                                            seconds=self.elapsed_before + self._elapsed(),
                                            session_epochs=self._session_epochs, session_seconds=self._elapsed()))
        self.epoch += 1
        self.step = 0
        self.partial = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
        return record

    def _train_step(self, index: np.ndarray, progress: float) -> tuple[float, float]:
        """One optimizer step on the training images ``index``, at ``progress`` of the run; (loss, correct)."""
        torch, config = self._torch, self.config
        step_rng = np.random.default_rng([config.seed, self.epoch, self.step])
        mirror = self.first_mirror[index] ^ bool(self.epoch % 2)
        images = augment(self.data.x_train[index], step_rng, flip=config.flip, translate=config.translate,
                         mirror=mirror, cutout=config.cutout)
        targets = torch.from_numpy(self.data.y_train[index])
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * group["lr_scale"] * schedule_factor(config.schedule, progress, config.warmup)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.runner.forward(images, training=True)
        loss = self.loss_fn(out, targets)
        if not torch.isfinite(loss):
            raise ImagerecError(f"the loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step + 1}; "
                                "lower the learning rate (--lr)")
        loss.backward()
        self.optimizer.step()
        if self.lookahead is not None:
            done = self.epoch * self.steps_per_epoch + self.step + 1
            self.lookahead.after_step(done, self.planned * self.steps_per_epoch)
        return loss.item(), float((out.argmax(dim=-1) == targets).sum())

    def _epoch_record(self) -> dict:
        """The finished epoch's training figures, and its validation figures if there are validation images."""
        partial = self.partial
        record = {
            "epoch": self.epoch + 1,
            "loss": partial["loss"] / max(1, partial["seen"]),
            "accuracy": partial["correct"] / max(1, partial["seen"]),
            "train_seconds": partial["seconds"],
            "images_per_second": partial["seen"] / max(1e-9, partial["seconds"]),
        }
        if self.data.x_val is not None and len(self.data.x_val):
            tick = time_budget.clock()
            val_loss, val_accuracy = self.evaluate(self.data.x_val, self.data.y_val)
            record.update(val_loss=val_loss, val_accuracy=val_accuracy, val_seconds=time_budget.clock() - tick)
        record["elapsed"] = self.elapsed_before + self._elapsed()
        return record

    def probabilities(self, images: np.ndarray, batch: int | None = None) -> np.ndarray:
        """Class probabilities of uint8 ``images``, averaged over the test-time views the run predicts with."""
        torch = self._torch
        batch = batch or evaluation_batch(images.shape[1:3])
        views = prediction_views(self.config.tta, self.config.tta_shift)
        chunks = []
        with torch.no_grad():
            for start in range(0, len(images), batch):
                part = images[start:start + batch]
                out = sum(view.weight * self._probs(self.runner.forward(apply_view(part, view), training=False))
                          for view in views)
                chunks.append(out.numpy())
        return np.concatenate(chunks)

    def _probs(self, out):
        return self._torch.softmax(out, dim=-1) if self.runner.outputs_logits else out

    def evaluate(self, images: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
        """(cross-entropy loss, accuracy) on ``images``."""
        probs = self.probabilities(images)
        picked = probs[np.arange(len(targets)), targets]
        loss = float(-np.log(np.clip(picked, 1e-7, 1)).mean())
        return loss, float((probs.argmax(axis=1) == targets).mean())

    # -- results -------------------------------------------------------------

    def _save_model(self, checkpoint: bool) -> None:
        from ..formats.keras import save_model

        metrics = {
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_accuracy,
            "epochs_run": len(self.history),
            "history": self.history,
            "engine": self.runner.engine,
            "checkpoint": checkpoint,
        }
        save_model(self.runner.model, self.files.model, classes=self.data.classes, preprocessing=self.data.preprocessing,
                   config=self.config.to_dict(), metrics=metrics, flip_average=self.config.tta,
                   shift_average=self.config.tta_shift)

    def finish(self) -> Path | None:
        """Put the best epoch's weights back, save the model and plot the curves; return the plot's path."""
        if self.best_weights is not None:
            with self._torch.no_grad():
                for variable, value in zip(self.runner.variables(), self.best_weights):
                    variable.copy_(value)
        self._save_model(checkpoint=False)
        curves = plot_curves(self.history, self.files.curves)
        self._say(f"saved {self.files.model} (best epoch {self.best_epoch}, validation accuracy {self.best_accuracy:.2%})")
        return curves
