"""Backends run a model on a uint8 NHWC batch and return float arrays.

Every backend follows :class:`Backend`: ``run(batch, outputs)`` takes an
``N×H×W×3`` uint8 array and returns a dict with one float32 array per
requested output name (``"scores"`` always; ``"logits"`` and ``"embedding"``
when the model exposes them). Floats and normalisation live only in here.

>>> from imagerec.backends import Backend
>>> hasattr(Backend, "run")
True
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """Batch in, arrays out."""

    input_size: tuple[int, int]
    outputs: tuple[str, ...]

    def run(self, batch: np.ndarray, outputs: Sequence[str] = ("scores",)) -> dict[str, np.ndarray]:
        """Run the model on an ``N×H×W×3`` uint8 batch."""
        ...
