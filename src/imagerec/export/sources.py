"""What can be exported, opened once: a trained ``.keras`` network, a learned recognizer, a Keras zoo model,
or a TFLite classifier (an int8 zoo model by name, a ``.tflite`` file imagerec loads).

Each source says what kind it is (the export table's row), what its files
must carry (labels, preprocessing, the ``imagerec`` metadata written into
them) and what the exported file must reproduce (:meth:`score`).

>>> open_source("notes.txt")
Traceback (most recent call last):
imagerec.core.errors.UsageError: notes.txt: cannot export this model; expected a .keras file (trained), a .imagerec file (learned), a .tflite file or a zoo model's name (imagerec models list)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import zoo
from ..core.errors import ModelFileError, UnknownModelError, UsageError
from ..core.keras_backend import import_keras
from ..core.preprocessing import Preprocessing, normalize
from ..data.views import PredictionView, apply_view, prediction_views
from ..recognizer import Recognizer, Scores

__all__ = ["TrainedNetwork", "LearnedSource", "KerasZooModel", "TFLiteModel", "open_source", "keras_scores", "NO_VIEWS"]

NO_VIEWS = prediction_views(False, 0)  # the image as it is, weight 1


def keras_scores(model: Any, x: np.ndarray, views: tuple[PredictionView, ...] = NO_VIEWS) -> np.ndarray:
    """The weighted mean of a Keras model's scores over test-time ``views`` of the float batch ``x``."""
    keras = import_keras()
    scores = sum(view.weight * keras.ops.convert_to_numpy(model(apply_view(x, view), training=False)) for view in views)
    return np.asarray(scores, np.float32).reshape(len(x), -1)


@dataclass
class TrainedNetwork:
    """A ``.keras`` file trained with imagerec: the model, its preprocessing, test-time views and class names."""

    path: Path
    model: Any
    preprocessing: Preprocessing
    flip_average: bool
    shift_average: int
    labels: list[str]

    kind = "trained"

    @classmethod
    def open(cls, path: Path) -> "TrainedNetwork":
        from ..formats.keras import load_keras_model, read_metadata

        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file", path=str(path))
        metadata = read_metadata(path) or {}
        model = load_keras_model(path)
        shape = tuple(model.inputs[0].shape)
        preprocessing = (
            Preprocessing.from_dict(metadata["preprocessing"])
            if metadata.get("preprocessing")
            else Preprocessing(size=(int(shape[1]), int(shape[2])), normalization="unit")
        )
        labels = metadata.get("classes") or [f"class_{i}" for i in range(int(model.outputs[0].shape[-1]))]
        return cls(path, model, preprocessing, bool(metadata.get("flip_average", False)),
                   int(metadata.get("shift_average", 0)), list(labels))

    @property
    def description(self) -> str:
        return str(self.path)

    @property
    def views(self) -> tuple[PredictionView, ...]:
        return prediction_views(self.flip_average, self.shift_average)

    def info(self, batch: str) -> dict:
        """What an exported file says about itself (its ``imagerec`` metadata); ``batch`` is its batch dimension."""
        return {
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "outputs": ["scores"],
            "input": f"image: uint8 {batch}×H×W×3 RGB, resized as 'preprocessing' says; normalisation is inside the graph",
            "flip_average": self.flip_average,
            "shift_average": self.shift_average,
            "source": self.path.name,
        }

    def score(self, batch: np.ndarray) -> Scores:
        """What the export must reproduce: the Keras model itself, averaged over its test-time views."""
        return Scores(keras_scores(self.model, normalize(batch, self.preprocessing.normalization), self.views), None)


@dataclass
class LearnedSource:
    """A recognizer made by ``imagerec.learn``: a backbone and a head that describes itself as dense layers."""

    recognizer: Recognizer

    @property
    def backbone(self) -> dict:
        return self.recognizer.metadata["backbone"]

    @property
    def kind(self) -> str:
        """How the backbone is made: ``"learned on zoo"`` (an int8 TFLite), ``"learned on keras zoo"`` (a Keras
        zoo model by name), ``"learned on keras"`` (a ``keras:`` application) or ``"learned on pooled"``."""
        kind = self.backbone.get("kind") or "zoo"
        if kind == "zoo" and zoo.get(self.backbone["name"]).backend == "keras":
            return "learned on keras zoo"
        return f"learned on {kind}"

    @property
    def head(self) -> Any:
        return self.recognizer.head

    @property
    def labels(self) -> list[str]:
        return list(self.recognizer.labels)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.recognizer.preprocessing

    @property
    def description(self) -> str:
        return repr(self.recognizer.name)

    @property
    def thresholded(self) -> bool:
        return self.recognizer.threshold is not None

    def info(self, batch: str, outputs: tuple[str, ...]) -> dict:
        """What an exported file says about itself (its ``imagerec`` metadata); ``batch`` is its batch dimension."""
        return {
            "labels": self.labels,
            "preprocessing": self.preprocessing.to_dict(),
            "threshold": self.recognizer.threshold if "confidence" in outputs else None,
            "head": self.head.kind,
            "backbone": self.backbone["name"],
            "outputs": list(outputs),
            "input": f"uint8 {batch}×H×W×3 RGB, resized as 'preprocessing' says",
        }

    def score(self, batch: np.ndarray) -> Scores:
        """What the export must reproduce: the recognizer's own scores (and confidence, with a threshold)."""
        return self.recognizer.score(batch)

    def zoo_backbone(self) -> tuple[Path, zoo.ModelSpec]:
        """The backbone's model file and zoo entry, checked to be the one the head was learned on."""
        spec = zoo.get(self.backbone["name"])
        model_path = zoo.fetch(spec.model)
        if zoo.sha256_file(model_path) != self.backbone["sha256"]:
            raise ModelFileError(f"{model_path}: not the backbone the head was learned on (sha256 differs)",
                                 path=str(model_path))
        return model_path, spec


@dataclass
class KerasZooModel:
    """A Keras zoo model by name (``mobilenet_v3_large``, ``resnet50``...): the application with its published weights."""

    spec: zoo.ModelSpec
    recognizer: Recognizer

    kind = "keras zoo"

    @classmethod
    def open(cls, name: str) -> "KerasZooModel":
        from ..formats.keras_apps import load_keras_spec

        spec = zoo.get(name)
        return cls(spec, load_keras_spec(spec, num_threads=1))

    @property
    def labels(self) -> list[str]:
        return list(self.recognizer.labels)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.spec.preprocessing

    @property
    def description(self) -> str:
        return self.spec.name

    @property
    def file_stem(self) -> str:
        """The default exported file's name (the spec's name, whatever alias was given)."""
        return self.spec.name

    def info(self, batch: str) -> dict:
        """What an exported file says about itself (its ``imagerec`` metadata); ``batch`` is its batch dimension."""
        return {
            "labels": self.labels,
            "preprocessing": self.preprocessing.to_dict(),
            "outputs": ["scores"],
            "input": f"image: uint8 {batch}×H×W×3 RGB, resized as 'preprocessing' says; normalisation is inside the graph",
            "source": f"{self.spec.name} (keras.applications.{self.spec.application}, weights {self.spec.model.filename})",
        }

    def score(self, batch: np.ndarray) -> Scores:
        """What the export must reproduce: the zoo model as ``imagerec.load`` runs it."""
        return self.recognizer.score(batch)

    def keras_model(self) -> Any:
        """The application with its classifier, built by Keras from the verified weights file."""
        from ..formats.keras_apps import build_keras_application

        return build_keras_application(self.spec, zoo.fetch(self.spec.model))


@dataclass
class TFLiteModel:
    """A TFLite classifier: an int8 zoo model by name (``mobilenet_v2``), or a ``.tflite`` file that
    ``imagerec.load`` opens (imported, Teachable Machine's, exported by imagerec, a float classifier)."""

    path: Path
    recognizer: Recognizer
    spec: zoo.ModelSpec | None  # the zoo entry of a zoo model or of a copy of one

    kind = "tflite"

    @classmethod
    def from_zoo(cls, spec: zoo.ModelSpec) -> "TFLiteModel":
        from ..formats.tflite import load_spec

        if spec.task != "classify":
            raise UsageError(f"{spec.name} is an embedding model (no classes): there are no scores to export")
        path = zoo.fetch(spec.model)
        return cls(path, load_spec(spec, num_threads=1, path=path), spec)

    @classmethod
    def from_file(cls, path: Path) -> "TFLiteModel":
        from ..formats.tflite import load_tflite

        recognizer = load_tflite(path, num_threads=1)
        spec = zoo.find_by_sha256(recognizer.sha256) if recognizer.sha256 else None
        return cls(path, recognizer, spec)

    @property
    def labels(self) -> list[str]:
        """One name per output of the model file: a zoo model's leading ``background`` output is named too,
        so the exported file and its labels file line up (``imagerec.load`` drops it again)."""
        return ["background"] * self.recognizer.skip_outputs + list(self.recognizer.labels)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.recognizer.preprocessing

    @property
    def description(self) -> str:
        return self.spec.name if self.spec is not None and self.path.name == self.spec.model.filename \
            else str(self.path)

    @property
    def file_stem(self) -> str | None:
        """A zoo model's name (as its default exported file's name); None for a file of the user's."""
        return self.spec.name if self.spec is not None and self.path.name == self.spec.model.filename else None

    @property
    def thresholded(self) -> bool:
        """Whether the file computes an "unknown" confidence (a learned recognizer that imagerec exported)."""
        return self.recognizer.threshold is not None and "confidence" in self.recognizer.backend.outputs

    def extra_tensors(self) -> dict[str, str]:
        """The file's tensors an ONNX export must output besides its ``scores``: ``logits`` / ``confidence``
        where the recognizer scores from them."""
        wanted = {}
        if self.spec is not None and self.spec.logits_tensor:
            wanted["logits"] = self.spec.logits_tensor
        if self.thresholded:
            wanted["confidence"] = "confidence"
        return wanted

    def info(self, batch: str, outputs: tuple[str, ...]) -> dict:
        """What an exported file says about itself (its ``imagerec`` metadata); ``batch`` is its batch dimension."""
        return {
            "labels": self.labels,
            "preprocessing": self.preprocessing.to_dict(),
            "threshold": self.recognizer.threshold if "confidence" in outputs else None,
            "outputs": list(outputs),
            "input": f"image: uint8 {batch}×H×W×3 RGB, resized as 'preprocessing' says; normalisation is inside the graph",
            "source": self.description if self.spec is None else f"{self.spec.name} ({self.spec.model.filename})",
        }

    def score(self, batch: np.ndarray) -> Scores:
        """What the export must reproduce: the model as ``imagerec.load`` runs it (by LiteRT)."""
        return self.recognizer.score(batch)


def open_source(model: Any) -> TrainedNetwork | LearnedSource | KerasZooModel | TFLiteModel:
    """A ``.keras`` path, a ``.imagerec`` path, a ``.tflite`` path, a learned
    :class:`~imagerec.recognizer.Recognizer` or the name of a zoo model, opened."""
    if isinstance(model, Recognizer):
        if model.head is None or not model.metadata.get("backbone"):
            raise UsageError(
                f"{model.name!r} is not a learned recognizer; export takes a .keras file or a recognizer made "
                "by imagerec.learn (or its .imagerec file)"
            )
        return LearnedSource(model)
    spec = _zoo_spec(model) if isinstance(model, str) else None
    if spec is not None:
        return KerasZooModel.open(model) if spec.backend == "keras" else TFLiteModel.from_zoo(spec)
    path = Path(os.fspath(model))
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return TrainedNetwork.open(path)
    if suffix == ".imagerec":
        from ..transfer.learned import load_learned

        return LearnedSource(load_learned(path))
    if suffix == ".tflite":
        return TFLiteModel.from_file(path)
    if suffix == ".onnx":
        raise UsageError(
            f"{path}: an .onnx file already is a standalone model file (imagerec.load, predict and serve read it); "
            "export takes a .keras file, a .imagerec file, a .tflite file or a zoo model's name"
        )
    raise UsageError(
        f"{path}: cannot export this model; expected a .keras file (trained), a .imagerec file (learned), "
        "a .tflite file or a zoo model's name (imagerec models list)"
    )


def _zoo_spec(name: str) -> zoo.ModelSpec | None:
    """The zoo entry a name or alias stands for (a file of that name wins: it is what the user pointed at)."""
    try:
        spec = zoo.get(name)
    except UnknownModelError:
        return None
    return None if Path(name).exists() else spec
