"""What can be exported, opened once: a trained ``.keras`` network or a learned recognizer.

Each source says what kind it is (the export table's row), what its files
must carry (labels, preprocessing, the ``imagerec`` metadata written into
them) and what the exported file must reproduce (:meth:`score`).

>>> open_source("notes.txt")
Traceback (most recent call last):
imagerec.core.errors.UsageError: notes.txt: cannot export this model; expected a .keras file (trained) or a .imagerec file (learned)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import zoo
from ..core.errors import ModelFileError, UsageError
from ..core.keras_backend import import_keras
from ..core.preprocessing import Preprocessing, normalize
from ..data.views import PredictionView, apply_view, prediction_views
from ..recognizer import Recognizer, Scores

__all__ = ["TrainedNetwork", "LearnedSource", "open_source", "keras_scores", "NO_VIEWS"]

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
        """``"learned on zoo"``, ``"learned on keras"`` or ``"learned on pooled"``: how the backbone is made."""
        return f"learned on {self.backbone.get('kind', 'zoo')}"

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


def open_source(model: Any) -> TrainedNetwork | LearnedSource:
    """A ``.keras`` path, a ``.imagerec`` path or a learned :class:`~imagerec.recognizer.Recognizer`, opened."""
    if isinstance(model, Recognizer):
        if model.head is None or not model.metadata.get("backbone"):
            raise UsageError(
                f"{model.name!r} is not a learned recognizer; export takes a .keras file or a recognizer made "
                "by imagerec.learn (or its .imagerec file)"
            )
        return LearnedSource(model)
    path = Path(os.fspath(model))
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return TrainedNetwork.open(path)
    if suffix == ".imagerec":
        from ..transfer.learned import load_learned

        return LearnedSource(load_learned(path))
    raise UsageError(
        f"{path}: cannot export this model; expected a .keras file (trained) or a .imagerec file (learned)"
    )
