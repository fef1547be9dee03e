"""Fine-tuning a Keras backbone: unfreeze its last layers after the head has converged.

:func:`fine_tune` first learns the frozen recognizer (a logistic head on the
backbone's embeddings, C by cross-validation) and measures it on a held-out
split; then builds one Keras model — the backbone, an L2 normalisation and a
softmax ``Dense`` layer initialised with the converged logistic weights, so
training starts exactly where the frozen head ended — unfreezes the last
``layers`` layers (batch-norm layers stay frozen, in inference mode, as is
usual when fine-tuning on few images) and trains them with a low learning
rate through :func:`imagerec.train`. The result is a ``.keras`` model (the
backbone itself has changed, so it is no longer a head on a checksummed
backbone), which ``imagerec.load``, ``predict``, ``evaluate`` and ``serve``
run through ONNX Runtime. The gain over the frozen head is reported on the
same validation images.

>>> from imagerec.transfer.finetune import fine_tune  # doctest: +SKIP
>>> result = fine_tune("photos/", backbone="keras:MobileNetV2", layers=20, output="pets.keras")  # doctest: +SKIP
>>> result.gain  # doctest: +SKIP
0.04
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DatasetError, UsageError
from ..core.keras_backend import import_keras
from ..core.preprocessing import Preprocessing
from ..data.datasets import Dataset, load_dataset
from .backbones.keras import APPLICATIONS, build_application, keras_backbone
from .heads import check_class_weight
from .learning import learn

__all__ = ["FineTuneResult", "fine_tune"]


@dataclass
class FineTuneResult:
    """The fine-tuned model file and how it compares with the frozen head."""

    path: Path
    classes: list[str]
    frozen_val_accuracy: float
    fine_tuned_val_accuracy: float
    val_images: int
    layers: int
    trainable_weights: int
    train: Any  # imagerec.training.TrainResult
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable files

    @property
    def gain(self) -> float:
        return self.fine_tuned_val_accuracy - self.frozen_val_accuracy

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "classes": self.classes,
            "frozen_val_accuracy": round(self.frozen_val_accuracy, 4),
            "fine_tuned_val_accuracy": round(self.fine_tuned_val_accuracy, 4),
            "gain": round(self.gain, 4), "val_images": self.val_images, "layers": self.layers,
            "trainable_weights": self.trainable_weights, "epochs_run": len(self.train.history),
            "class_counts": dict(self.train.class_counts), "class_weight": self.train.config.class_weight,
            "best_epoch": self.train.best_epoch, "seconds": round(self.train.seconds, 1),
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
        }


def fine_tune(
    data: Any,
    *,
    backbone: str = "keras:MobileNetV2",
    weights: str | os.PathLike[str] | None = "imagenet",
    input_size: int | None = None,
    layers: int = 20,
    epochs: int = 5,
    lr: float = 1e-4,
    batch_size: int = 32,
    val_fraction: float = 0.2,
    seed: int = 0,
    output: str | os.PathLike[str] = "fine_tuned.keras",
    max_minutes: float | None = None,
    class_weight: str = "balanced",
    verbose: bool | None = None,
) -> FineTuneResult:
    """Fine-tune the last ``layers`` layers of a Keras backbone on ``data`` (see the module doc).

    ``data`` is anything :func:`imagerec.data.load_dataset` reads (a class
    folder, CSV, ``.tar.gz``, a dict of paths). A stratified
    ``val_fraction`` (from ``seed``) is held out for both measurements.
    ``class_weight`` ("balanced" or "none") weighs the classes in both the
    frozen head and the fine-tuning loss (see :func:`imagerec.train`).
    """
    # training sits above transfer (it trains whole networks); only fine-tuning needs it.
    from ..training import train

    if not backbone.startswith("keras:"):
        raise UsageError(f"fine-tuning needs a Keras backbone (keras:APPLICATION), not {backbone!r}")
    application = backbone.split(":", 1)[1]
    if application not in APPLICATIONS:
        raise UsageError(f"unknown Keras backbone {application!r}; choose one of {', '.join(APPLICATIONS)}")
    class_weight = check_class_weight(class_weight)  # before minutes of embedding
    if layers < 1:
        raise UsageError(f"--fine-tune needs at least 1 layer to unfreeze, got {layers}")
    if Path(output).suffix.lower() != ".keras":
        raise UsageError(f"{output}: a fine-tuned model is saved as a .keras file")
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    train_set, val_set = dataset.split(val_fraction, seed=seed)
    if not len(val_set):
        raise UsageError("fine-tuning needs at least two images per class (one is held out to measure the gain)")
    spec = APPLICATIONS[application]
    size = int(input_size or spec.default_size)
    progress = False if verbose is False else None

    # 0. Unreadable files are dropped from both parts (and reported); every class needs a
    #    readable training image. The preprocessing is train()'s, so it reuses this decode.
    train_set.arrays(Preprocessing(size=(size, size), resize="crop", normalization=spec.normalization),
                     progress=progress, require_every_class=True)

    # 1. The frozen recognizer, and its accuracy on the held-out images.
    frozen_backbone = keras_backbone(application, weights=weights, input_size=size, seed=seed)
    # No frame: the fine-tuned network is trained (by train()) on unframed pictures.
    frozen = learn(train_set, backbone=frozen_backbone, head="logistic", head_options={"class_weight": class_weight},
                   frame=0, threshold=None, progress=verbose)
    if frozen.labels != list(dataset.classes):
        missing = [c for c in dataset.classes if c not in frozen.labels]
        raise DatasetError(f"{dataset.source}: no readable training image for class(es) "
                           f"{', '.join(map(repr, missing))}; add images or remove the class", path=dataset.source)
    val_pixels = val_set.arrays(frozen.preprocessing, progress=progress)
    if not len(val_set):
        raise DatasetError(f"{dataset.source}: none of the held-out images could be read; "
                           "fix or replace them", path=dataset.source)
    frozen_accuracy = float((frozen.predict_proba(val_pixels).argmax(axis=1) == val_set.targets).mean())

    # 2. One Keras model starting from the converged head.
    keras = import_keras()
    base = build_application(application, weights=weights, input_size=size, seed=seed)
    normalized = keras.layers.UnitNormalization(axis=-1, name="l2_normalize")(base.output)
    scores = keras.layers.Dense(len(dataset.classes), activation="softmax", name="classes")(normalized)
    model = keras.Model(base.inputs, scores, name=f"{application}_fine_tuned")
    model.get_layer("classes").set_weights([frozen.head.weights_.T, frozen.head.bias_])
    weighted = [layer for layer in base.layers if layer.weights]
    if layers > len(weighted):
        raise UsageError(f"{application} has {len(weighted)} layers with weights; cannot unfreeze {layers}")
    unfrozen = set(id(layer) for layer in weighted[-layers:])
    for layer in base.layers:
        layer.trainable = id(layer) in unfrozen and not isinstance(layer, keras.layers.BatchNormalization)

    # 3. Train the unfrozen layers and the head with a low learning rate.
    result = train(
        train_set, model=model, val_data=val_set, output=output, epochs=epochs, batch_size=batch_size,
        image_size=size, normalization=spec.normalization, optimizer="adam", lr=lr, label_smoothing=0.0,
        weight_decay=0.0, schedule="constant", tta=False, patience=None, max_minutes=max_minutes,
        seed=seed, verbose=verbose, class_weight=class_weight,
    )
    return FineTuneResult(
        path=Path(result.path), classes=list(dataset.classes), frozen_val_accuracy=frozen_accuracy,
        fine_tuned_val_accuracy=float(max(result.best_val_accuracy, 0.0)), val_images=len(val_set),
        layers=layers, trainable_weights=int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        train=result, skipped=list(dict.fromkeys([*dataset.skipped, *train_set.skipped, *val_set.skipped])),
    )
