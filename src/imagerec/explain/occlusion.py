"""Occlusion heat maps: hide one square at a time, score through the model's own scoring path.

:func:`explain_photo` hides one square of the model's input at a time under
mid-grey (128 — what every normalisation maps to about zero), scores all the
hidden versions in batches with the scoring callable it is given, and
records, for every pixel, how far the explained label's probability fell on
average when that pixel was hidden. Nothing here knows what kind of model
scores the batches, so the same method explains int8 TFLite, ONNX, Keras and
learned recognizers alike.

The cost is one model run for the whole photo plus one per hidden square:
82 with the defaults (a square a quarter of the input side, moved by half a
square, 9×9 places including the ones that hang over the edges), about
0.5 s for the int8 MobileNet V2 on two cores (``bench/explain.py``).

>>> import numpy as np
>>> from PIL import Image
>>> from imagerec.core.preprocessing import Preprocessing
>>> photo = Image.new("RGB", (80, 40), (128, 128, 128))
>>> photo.paste((255, 0, 0), (50, 10, 70, 30))     # a red square at x 50–70, y 10–30
>>> def redness(batch):                            # a "model": how red the picture is
...     red = (batch[..., 0] > 200).mean(axis=(1, 2))
...     return np.stack([red, 1 - red], axis=1)
>>> heat = explain_photo(photo, redness, Preprocessing(size=(32, 32), resize="squash"),
...                      labels=["red", "other"], label="red")
>>> heat.label, heat.method, heat.map.shape, heat.runs
('red', 'occlusion', (40, 80), 82)
>>> 50 <= heat.peak[0] < 70 and 10 <= heat.peak[1] < 30
True
>>> heat.overlay().size
(80, 40)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from ..core.errors import UsageError
from ..core.images import resize
from ..core.preprocessing import Preprocessing
from .heatmap import HeatMap, finish, label_index

__all__ = ["GREY", "METHOD", "ScoreFn", "explain_photo"]

METHOD = "occlusion"
GREY = 128  # the fill of a hidden square, as in core.preprocessing's frame

ScoreFn = Callable[[np.ndarray], np.ndarray]


def explain_photo(
    photo: Image.Image,
    score: ScoreFn,
    preprocessing: Preprocessing,
    *,
    labels: Sequence[str],
    label: str | None = None,
    predictable: np.ndarray | None = None,
    batch_size: int = 16,
    window: float = 0.25,
    stride: float = 0.5,
) -> HeatMap:
    """The occlusion :class:`HeatMap` of ``photo`` for ``label`` (default: the best predictable class).

    ``score`` takes a preprocessed ``N×H×W×3`` uint8 batch and returns
    ``N×len(labels)`` probabilities. ``window`` is the hidden square's side
    as a fraction of the input's shorter side; ``stride`` how far it moves,
    as a fraction of the window.
    """
    if not 0 < window <= 1 or not 0 < stride <= 1:
        raise UsageError(f"window and stride must be in (0, 1], got window={window}, stride={stride}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    photo = photo.convert("RGB")
    seen = np.asarray(resize(photo, preprocessing), dtype=np.uint8)
    base = np.asarray(score(seen[None]), dtype=np.float32)[0]
    index = label_index(base, labels, label, predictable)
    boxes = _windows(seen.shape[:2], window, stride)
    drops = np.concatenate([
        base[index] - np.asarray(score(_hidden(seen, chunk)), dtype=np.float32)[:, index]
        for chunk in _chunks(boxes, batch_size)
    ])
    # Smoothed over one step of the window, so the map has no block edges and its peak is
    # the middle of the region whose hiding hurt most, not a corner of one square.
    step = max(1, round(stride * round(window * min(seen.shape[:2]))))
    heat = _box_blur(_box_blur(_accumulate(seen.shape[:2], boxes, drops), step), step)
    return finish(heat, photo, preprocessing, labels=labels, index=index, score=float(base[index]),
                  method=METHOD, runs=1 + len(boxes))


def _windows(size: tuple[int, int], window: float, stride: float) -> list[tuple[int, int, int, int]]:
    """The hidden squares ``(top, left, bottom, right)``, clipped to the input.

    They start partly outside the input and end partly outside it, so every
    pixel is hidden by as many squares as any other: with squares that stop
    at the edge, a border pixel's mean comes from fewer squares and an object
    near the border pulled the peak onto the border itself.
    """
    height, width = size
    side = max(1, round(window * min(height, width)))
    step = max(1, round(stride * side))

    def spans(length: int) -> list[tuple[int, int]]:
        starts = range(step - side, length, step)
        return [(max(0, start), min(length, start + side)) for start in starts]

    return [(top, left, bottom, right) for top, bottom in spans(height) for left, right in spans(width)]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _hidden(seen: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    batch = np.repeat(seen[None], len(boxes), axis=0)
    for row, (top, left, bottom, right) in enumerate(boxes):
        batch[row, top:bottom, left:right] = GREY
    return batch


def _accumulate(size: tuple[int, int], boxes: list[tuple[int, int, int, int]], drops: np.ndarray) -> np.ndarray:
    """Each pixel's mean drop over the squares that hid it."""
    total = np.zeros(size, np.float64)
    count = np.zeros(size, np.float64)
    for (top, left, bottom, right), drop in zip(boxes, drops):
        total[top:bottom, left:right] += drop
        count[top:bottom, left:right] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def _box_blur(values: np.ndarray, size: int) -> np.ndarray:
    """A separable moving average over ``size`` pixels, edges repeated (twice ≈ a Gaussian)."""
    if size <= 1:
        return values
    before, after = size // 2, size - 1 - size // 2
    for axis in (0, 1):
        padded = np.pad(values, [(before, after) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        sums = np.cumsum(padded, axis=axis, dtype=np.float64)
        sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
        upper = np.take(sums, np.arange(size, sums.shape[axis]), axis=axis)
        lower = np.take(sums, np.arange(0, sums.shape[axis] - size), axis=axis)
        values = ((upper - lower) / size).astype(np.float32)
    return values
