"""The backbone type: a frozen feature extractor, uint8 batch in, embeddings out.

>>> from imagerec.transfer.backbones.base import default_frame
>>> from imagerec.core.preprocessing import Preprocessing
>>> default_frame(Preprocessing(size=(224, 224)))
16
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...core.preprocessing import Preprocessing

__all__ = ["Backbone", "default_frame"]


@dataclass
class Backbone:
    """A frozen feature extractor: uint8 batch in, ``N×dim`` embeddings out.

    ``kind`` is ``"zoo"`` (a zoo model run by LiteRT,
    :mod:`imagerec.transfer.backbones.zoo`), ``"pooled"`` (layers of several
    zoo models, :mod:`imagerec.transfer.backbones.pooled`) or ``"keras"`` (a
    Keras application exported to ONNX, :mod:`imagerec.transfer.backbones.keras`);
    ``name`` and ``sha256`` identify the exact weights, so a learned head is
    never used on features from other weights. :meth:`describe` is what a
    learned recognizer saves, and
    :func:`~imagerec.transfer.backbones.rebuild_backbone` reads it back.
    """

    name: str
    kind: str
    sha256: str
    preprocessing: Preprocessing
    dim: int
    run: Callable[[np.ndarray], np.ndarray]
    backend: object = None  # the Backend, when the recognizer should reuse it
    options: dict = field(default_factory=dict)  # how to rebuild it (keras: application, pooling...)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        out = np.asarray(self.run(batch), dtype=np.float32)
        return out.reshape(len(batch), -1)

    def framed(self, frame: int) -> "Backbone":
        """The same network fed pictures inside a grey frame of ``frame`` pixels (:class:`Preprocessing`)."""
        return dataclasses.replace(self, preprocessing=dataclasses.replace(self.preprocessing, frame=int(frame)))

    def describe(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "sha256": self.sha256, "dim": self.dim,
            "preprocessing": self.preprocessing.to_dict(), "options": self.options,
        }


def default_frame(preprocessing: Preprocessing) -> int:
    """The grey frame ``imagerec learn`` puts around pictures: 1/14 of the input side (16 px at 224).

    Chosen on CIFAR-10 (docs/transfer.md): at 10 examples a class it lifts
    ``mobilenet_multi`` from 58.9 % to 62.9 % and ``mobilenet_v2`` from
    55.9 % to 59.1 %; 12–20 px at 224 score alike.

    >>> default_frame(Preprocessing(size=(224, 224)))
    16
    """
    return round(min(preprocessing.size) / 14)


