"""Train a Keras network on a labelled image dataset: :func:`train` and what it returns, :class:`TrainResult`.

>>> import imagerec, tempfile, os
>>> from imagerec.data import make_shapes
>>> root = make_shapes(tempfile.mkdtemp(), per_class=20, size=24)
>>> result = imagerec.train(root, arch="course_cnn", epochs=1, image_size=24, verbose=False,
...                         output=os.path.join(tempfile.mkdtemp(), "shapes.keras"))
>>> result.classes
['circle', 'cross', 'square', 'triangle']
>>> imagerec.load(result.path).labels == result.classes
True

:func:`train` turns its keyword settings into one
:class:`~imagerec.training.config.TrainConfig`, decodes the images once into
memory (cached on disk by :mod:`imagerec.data`), builds the network from
:mod:`imagerec.architectures` (or takes the caller's), and hands them to the
:class:`~imagerec.training.trainer.Trainer`. What is saved is the Keras
model; the training step runs its layers as PyTorch operations on the Keras
variables themselves (:mod:`imagerec.training.torch_graph`).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..architectures import build
from ..core.errors import UsageError
from ..core.keras_backend import import_keras
from ..core.pipeline import default_workers
from ..core.preprocessing import Preprocessing
from ..data.datasets import Dataset, DatasetSource, load_dataset
from . import time_budget
from .config import TrainConfig, make_config
from .report import split_line
from .resume import adopt_legacy_state
from .trainer import RunFiles, Trainer, TrainingData
from .whitening import whiten_from_data

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """What a run produced: the model (Keras), where it was saved, and how it went."""

    model: Any
    path: Path
    classes: list[str]
    preprocessing: Preprocessing
    config: TrainConfig
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float
    curves_path: Path | None
    state_path: Path
    seconds: float
    stopped: str  # "completed", "early_stopping", "time_budget"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)  # training images per class (the split's training part)

    def recognizer(self, **settings: Any):
        """The saved model as a :class:`~imagerec.recognizer.Recognizer` (ONNX Runtime); ``settings`` as for ``configure``."""
        from ..formats.keras_recognizer import load_recognizer

        return load_recognizer(self.path).configure(**settings)

    def metrics(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "epochs_run": len(self.history),
            "seconds": round(self.seconds, 2),
            "stopped": self.stopped,
            "final": last,
            "history": self.history,
        }


def train(
    data: DatasetSource,
    config: TrainConfig | None = None,
    *,
    model: Any = None,
    output: str | os.PathLike[str] = "model.keras",
    val_data: DatasetSource | None = None,
    resume: bool = False,
    verbose: bool | None = None,
    workers: int | None = None,
    threads: int | None = None,
    callbacks: Iterable[Callable[[str, dict], None]] = (),
    **settings: Any,
) -> TrainResult:
    """Train a network on labelled images and save it as a ``.keras`` file.

    ``data`` is anything :func:`imagerec.data.load_dataset` reads (a class
    folder, a CSV, a ``.tar.gz``, a dict) or a :class:`~imagerec.data.Dataset`.
    A stratified ``val_fraction`` is held out (from ``seed``) unless
    ``val_data`` is given.

    ``settings`` are the fields of :class:`~imagerec.training.config.TrainConfig`
    (``arch``, ``epochs``, ``batch_size``, ``image_size``, ``optimizer``,
    ``lr``, ``loss``, ``activation``, ``label_smoothing``, ``weight_decay``,
    ``schedule``, ``flip``, ``translate``, ``cutout``, ``tta``, ``tta_shift``,
    ``lookahead``, ``val_fraction``, ``seed``, ``patience``, ``max_minutes``,
    ``normalization``, ``precision``, ``class_weight``...) and the keyword options of the
    architecture's builder (``widths=(128, 384, 384)`` for ``fast_resnet``);
    any other keyword is a :class:`~imagerec.core.errors.UsageError` naming
    the valid ones. Settings left out or ``None`` take the architecture's
    defaults (:func:`~imagerec.training.config.defaults_for`), or, when a
    ``config`` is given (``result.config`` of an earlier run, say), that
    config's values. ``arch`` names a builder in :mod:`imagerec.architectures`,
    or pass your own functional Keras ``model`` (``N×H×W×3`` in, softmax out).
    ``patience`` epochs without a better validation accuracy stop the run
    (``None`` or 0: never; ``-1``: the architecture's default).
    ``max_minutes`` fits the run to that many minutes of wall clock, counted
    from this call: the number of epochs, and the learning-rate schedule with
    it, is chosen from the run's measured speed so that it ends annealed in
    time (:mod:`imagerec.training.time_budget`); ``epochs``, if given (or
    ``config``'s), is then the most it runs.
    ``cutout`` greys out a random square of that side in every training
    image (:func:`imagerec.data.augment`); ``tta_shift`` adds views shifted
    by that many pixels to the test-time average
    (:func:`imagerec.data.prediction_views`), at three times the prediction cost.
    ``precision="auto"`` runs the convolutions and matrix products in
    bfloat16 (weights, batch-norm statistics and the loss stay float32) on
    CPUs with bfloat16 matrix units (Intel AMX or AVX-512 BF16), where
    training is about 3× faster, and in float32 elsewhere; ``"float32"`` and
    ``"bfloat16"`` force one. ``class_weight="balanced"`` (the default)
    weighs each training image's loss by ``n / (classes × count)`` of its
    class, so a class with few images is not drowned by a big one;
    ``"none"`` weighs them alike.

    ``resume`` continues from the run's saved state (written after every
    epoch and on Ctrl-C to imagerec's cache folder, not beside the model:
    ``TrainResult.state_path`` says where). ``threads`` sets
    PyTorch's thread count (default: the cores this process may use; on a
    machine busy with other work, 1 can be much faster, as threads that
    wait for each other get descheduled). ``callbacks`` are called
    as ``fn(event, info)`` for ``"step"`` events (epoch, step, running loss,
    the step's learning rate ``lr``), ``"epoch"`` events (the epoch's record)
    and, with ``max_minutes``, ``"plan"`` events (the epochs now planned, after
    ``epoch`` epochs and ``step`` steps, and the expected ``epoch_seconds``).

    Returns a :class:`TrainResult`; the best epoch's model is at ``output``,
    its learning curves at ``<output stem>.curves.png``.
    """
    # PyTorch's OpenMP threads spin while waiting for each other by default; on a
    # machine shared with other work a spinning thread steals the core its
    # partner needs, and small batch-norm steps measured 20-40x slower here.
    # Passive waiting costs nothing measurable when the machine is idle. It is
    # read when torch is first imported, so it only helps if that happens below.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time_budget.clock()
    files = RunFiles.beside(output)  # fail now, not after the first epoch, if the model cannot be written
    base, config = config, make_config(config, custom_model=model is not None, **settings)
    # The most epochs a time budget may plan: those asked for, if any.
    epochs_cap = config.epochs if settings.get("epochs") is not None or base is not None else None

    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    if val_data is not None:
        train_set = dataset
        val_set = val_data if isinstance(val_data, Dataset) else load_dataset(val_data)
        if val_set.classes != train_set.classes:
            raise UsageError(
                f"the validation classes {val_set.classes} differ from the training classes {train_set.classes}"
            )
    else:
        train_set, val_set = dataset.split(config.val_fraction, seed=config.seed)
    preprocessing = Preprocessing(size=(config.image_size, config.image_size), resize=config.resize,
                                  normalization=config.normalization)
    progress = False if verbose is False else None  # quiet means no decode bar either (--json)
    if verbose or (verbose is None and sys.stderr.isatty()):  # lines, so a log shows what the run is doing
        print(f"decoding {len(train_set) + len(val_set)} images of {len(dataset.classes)} classes at "
              f"{config.image_size}×{config.image_size} px", file=sys.stderr, flush=True)
        print(split_line(train=len(train_set), val=len(val_set), classes=len(dataset.classes),
                         val_fraction=None if val_data is not None else config.val_fraction), file=sys.stderr, flush=True)
    decoded = TrainingData.decode(dataset, train_set, val_set, preprocessing, workers=workers, progress=progress)

    import torch

    torch.set_num_threads(threads or default_workers())
    torch.manual_seed(config.seed)
    keras_model = model if model is not None else _build(config, len(decoded.classes))
    _check_model(keras_model, config, len(decoded.classes))
    if model is None:
        whiten_from_data(keras_model, decoded.x_train, config.normalization)
    trainer = Trainer(model=keras_model, config=config, data=decoded, files=files, started=started,
                      epochs_cap=epochs_cap, verbose=verbose, callbacks=callbacks)
    adopt_legacy_state(files.model, files.state, resume=resume)  # earlier versions kept it beside the model
    if resume:
        trainer.load_state()
    else:
        files.state.unlink(missing_ok=True)
    trainer.fit()
    seconds = time_budget.clock() - started
    curves = trainer.finish()
    return TrainResult(
        model=trainer.model, path=files.model, classes=decoded.classes, preprocessing=preprocessing,
        config=config, history=trainer.history, best_epoch=trainer.best_epoch,
        best_val_accuracy=trainer.best_accuracy, curves_path=curves, state_path=files.state,
        seconds=seconds, stopped=trainer.stopped, skipped=decoded.skipped,
        class_counts={name: int(count) for name, count in
                      zip(decoded.classes, np.bincount(decoded.y_train, minlength=len(decoded.classes)))},
    )


def _build(config: TrainConfig, num_classes: int) -> Any:
    """The architecture ``config`` names, its initial weights drawn from ``config.seed``."""
    kwargs = dict(config.arch_options)
    if config.activation:
        kwargs.setdefault("activation", config.activation)
    # Keras draws the seed of every unseeded initializer from Python's global
    # `random`; seed it for the build, then give the caller's stream back.
    # Keras is imported first: importing it draws from `random` too.
    import_keras()
    caller_state = random.getstate()
    random.seed(config.seed)
    try:
        return build(config.arch, input_shape=(config.image_size, config.image_size, 3), num_classes=num_classes,
                     **kwargs)
    finally:
        random.setstate(caller_state)


def _check_model(model: Any, config: TrainConfig, num_classes: int) -> None:
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4 or shape[3] != 3:
        raise UsageError(f"the model must take N×H×W×3 images, it takes {shape}")
    if tuple(shape[1:3]) != (config.image_size, config.image_size):
        raise UsageError(
            f"the model takes {shape[1]}×{shape[2]} images but image size is {config.image_size}; "
            "pass image_size to match"
        )
    outputs = model.outputs[0].shape[-1]
    if outputs != num_classes:
        raise UsageError(f"the model has {outputs} outputs but the dataset has {num_classes} classes")
