"""How an export is checked: sample pictures, and the exported file's scores against the source's.

Every export is run on sample images before it is kept (``samples``;
without them, :func:`synthetic_samples`) and its scores must match the
source's — the Keras model itself, or the learned recognizer — within a
tolerance (default :data:`TOLERANCE`, the largest absolute difference of
any class probability, and of the "unknown" threshold's confidence when the
file carries one), and its top-1 class must be the source's on every image
— unless the source itself scored the two within :data:`TOLERANCE` (a tie,
which any rounding decides), whatever tolerance was given.

>>> import numpy as np
>>> check = compare(np.array([[0.9, 0.1]]), np.array([[0.89995, 0.10005]]), "synthetic", TOLERANCE)
>>> check.ok, check.top1_agree
(True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..core.images import ImageSource, load_image, stack
from ..core.preprocessing import Preprocessing
from ..recognizer import Scores

__all__ = ["TOLERANCE", "ExportCheck", "Written", "compare", "sample_batch", "synthetic_samples"]

# Largest allowed difference of any class probability between the exported
# file and the original on the sample images.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    """How the exported file compared with the original on sample images."""

    samples: int
    sample_source: str  # "given" or "synthetic"
    max_abs_diff: float
    top1_agree: int
    tolerance: float
    confidence_max_abs_diff: float | None = None
    top1_differ: int = 0  # images whose top-1 class changed where the source had no tie

    @property
    def ok(self) -> bool:
        within = self.max_abs_diff <= self.tolerance and self.top1_differ == 0
        if self.confidence_max_abs_diff is not None:
            within = within and self.confidence_max_abs_diff <= self.tolerance
        return bool(within)


@dataclass(frozen=True)
class Written:
    """What a writer made: the file's input and outputs, and how to score a batch with what was written."""

    inputs: str
    outputs: tuple[str, ...]
    score: Callable[[np.ndarray], Scores]


def synthetic_samples(size: tuple[int, int] = (224, 224), count: int = 8) -> list[np.ndarray]:
    """Fixed, varied test pictures (noise, gradients, stripes) for when no photos are given.

    >>> [image.shape for image in synthetic_samples((4, 6), 2)]
    [(4, 6, 3), (4, 6, 3)]
    """
    rng = np.random.default_rng(1234)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    images = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            image = rng.integers(0, 256, (height, width, 3))
        elif kind == 1:
            image = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx + yy) % 256], axis=2)
        elif kind == 2:
            period = 4 + index
            image = np.where(((xx // period + yy // period) % 2)[..., None] == 1, rng.integers(0, 256, 3), rng.integers(0, 256, 3))
        else:
            image = np.clip(rng.normal(128, 60, (height // 8 + 1, width // 8 + 1, 3)), 0, 255).repeat(8, 0).repeat(8, 1)[:height, :width]
        images.append(np.ascontiguousarray(image, dtype=np.uint8))
    return images


def sample_batch(samples: Sequence[ImageSource] | None, preprocessing: Preprocessing) -> tuple[np.ndarray, str]:
    """The preprocessed uint8 batch to check on, and where it came from (``"given"`` or ``"synthetic"``)."""
    if samples:
        return stack([load_image(s, preprocessing) for s in samples]), "given"
    return stack([load_image(a, preprocessing) for a in synthetic_samples(preprocessing.size)]), "synthetic"


def compare(expected: np.ndarray, got: np.ndarray, sample_source: str, tolerance: float,
            expected_confidence: np.ndarray | None = None, got_confidence: np.ndarray | None = None) -> ExportCheck:
    """The :class:`ExportCheck` of ``got`` against ``expected`` (``N×classes``; confidences, when both exist, ``N``)."""
    confidence = None
    if expected_confidence is not None and got_confidence is not None:
        confidence = float(np.abs(np.ravel(expected_confidence) - np.ravel(got_confidence)).max())
    rows = np.arange(len(expected))
    chosen = got.argmax(1)
    # A changed top-1 counts unless the source scored the file's choice within TOLERANCE of its own best.
    differ = (chosen != expected.argmax(1)) & (expected.max(1) - expected[rows, chosen] > TOLERANCE)
    return ExportCheck(
        samples=len(expected),
        sample_source=sample_source,
        max_abs_diff=float(np.abs(expected - got).max()),
        top1_agree=int((expected.argmax(1) == chosen).sum()),
        tolerance=tolerance,
        confidence_max_abs_diff=confidence,
        top1_differ=int(differ.sum()),
    )
