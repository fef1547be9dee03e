"""Why did the model say that? Occlusion heat maps, through the model's own scoring path.

:func:`explain_photo` hides one square of the model's input at a time under
mid-grey (128 — what every normalisation maps to about zero), scores all the
hidden versions in batches with the scoring callable it is given, and
records, for every pixel, how far the explained label's probability fell on
average when that pixel was hidden. Nothing here knows what kind of model
scores the batches, so the same method explains int8 TFLite, ONNX and
learned recognizers alike. :meth:`imagerec.Recognizer.explain` passes its
own :meth:`~imagerec.Recognizer.score`; this module sits below the
recognizer (it imports only ``core``), so the recognizer's method is a thin
call down into it.

The cost is one model run for the whole photo plus one per hidden square:
82 with the defaults (a square a quarter of the input side, moved by half a
square, 9×9 places including the ones that hang over the edges), about
0.5 s for the int8 MobileNet V2 on two cores (``bench/explain.py``).

The map is returned in the photo's own pixel grid: the part of the photo a
centre crop cut away gets 0 (the model never saw it), a squash is undone,
and a frame is stripped.

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

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .core.errors import UsageError
from .core.images import resize
from .core.preprocessing import Preprocessing

__all__ = ["GREY", "METHOD", "HeatMap", "explain_photo"]

METHOD = "occlusion"
GREY = 128  # the fill of a hidden square, as in core.preprocessing's frame

ScoreFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class HeatMap:
    """Where a model looked for ``label`` in one photo.

    ``map`` is ``H×W`` float32 in the photo's own pixel grid: how much the
    label's probability fell, on average, when that pixel was hidden (may be
    negative where hiding helped). ``peak`` is ``[x, y]`` of its maximum in
    the photo's pixels; ``score`` the label's probability on the whole
    photo; ``runs`` the model runs it took.
    """

    map: np.ndarray
    label: str
    index: int
    score: float
    method: str
    peak: list[int]
    runs: int
    photo: Image.Image = dataclasses.field(repr=False)

    def to_dict(self) -> dict:
        """The JSON form: ``label``, ``method``, ``peak``, ``score``."""
        return {"label": self.label, "method": self.method, "peak": list(self.peak), "score": round(self.score, 6)}

    def overlay(self, *, alpha: float = 0.6, colormap: str = "turbo", mark_peak: bool = True) -> Image.Image:
        """The photo with the heat map laid over it in colour (hot = what drove the answer), peak marked."""
        from matplotlib import colormaps  # only drawing needs matplotlib

        top = float(self.map.max())
        # uint8 levels and a 256-entry colour table: a 12-megapixel photo costs a few
        # 12-megapixel uint8 planes, not float RGBA arrays of hundreds of megabytes.
        levels = np.round(np.clip(self.map, 0, None) * (255 / top if top > 0 else 0)).astype(np.uint8)
        table = colormaps[colormap](np.linspace(0, 1, 256), bytes=True)[:, :3]
        colours = Image.fromarray(table[levels], "RGB")
        weight = Image.fromarray(np.round(levels * alpha).astype(np.uint8), "L")
        image = Image.composite(colours, self.photo.convert("RGB"), weight)
        if mark_peak:
            _mark(image, self.peak)
        return image


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
    index = _label_index(base, labels, label, predictable)
    boxes = _windows(seen.shape[:2], window, stride)
    drops = np.concatenate([
        base[index] - np.asarray(score(_hidden(seen, chunk)), dtype=np.float32)[:, index]
        for chunk in _chunks(boxes, batch_size)
    ])
    # Smoothed over one step of the window, so the map has no block edges and its peak is
    # the middle of the region whose hiding hurt most, not a corner of one square.
    step = max(1, round(stride * round(window * min(seen.shape[:2]))))
    heat = _box_blur(_box_blur(_accumulate(seen.shape[:2], boxes, drops), step), step)
    in_photo = _to_photo_grid(heat, photo.size, preprocessing)
    y, x = np.unravel_index(int(np.argmax(in_photo)), in_photo.shape)
    return HeatMap(in_photo, labels[index], index, float(base[index]), METHOD, [int(x), int(y)],
                   1 + len(boxes), photo)


def _label_index(base: np.ndarray, labels: Sequence[str], label: str | None,
                 predictable: np.ndarray | None) -> int:
    if label is None:
        mask = np.ones(len(base), bool) if predictable is None else predictable
        return int(np.argmax(np.where(mask, base, -np.inf)))
    try:
        return list(labels).index(label)
    except ValueError:
        close = [name for name in labels if label.lower() in name.lower()][:5]
        hint = f"; did you mean {', '.join(repr(name) for name in close)}?" if close else ""
        raise UsageError(f"label {label!r} is not one of the model's {len(labels)} classes{hint}") from None


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


def _to_photo_grid(heat: np.ndarray, photo_size: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray:
    """Undo the preprocessing's geometry: strip the frame, undo the squash or place the crop."""
    frame = preprocessing.frame
    if frame:
        heat = heat[frame:heat.shape[0] - frame, frame:heat.shape[1] - frame]
    width, height = photo_size
    inner_h, inner_w = heat.shape
    if preprocessing.resize == "squash":
        left, top, crop_w, crop_h = 0.0, 0.0, float(width), float(height)
    else:  # the same centre box core.images.resize keeps
        scale = max(inner_w / width, inner_h / height)
        crop_w, crop_h = min(width, inner_w / scale), min(height, inner_h / scale)
        left, top = max(0.0, (width - crop_w) / 2), max(0.0, (height - crop_h) / 2)
    box = (round(left), round(top), round(left + crop_w), round(top + crop_h))
    scaled = Image.fromarray(heat, "F").resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.BILINEAR)
    out = np.zeros((height, width), np.float32)
    out[box[1]:box[3], box[0]:box[2]] = np.asarray(scaled, dtype=np.float32)
    return out


def _mark(image: Image.Image, peak: Sequence[int]) -> None:
    """A white ring with a dark edge at the peak, visible on any colour."""
    x, y = peak
    radius = max(4, round(min(image.size) / 40))
    draw = ImageDraw.Draw(image)
    for width, colour in ((max(3, radius // 2), (0, 0, 0)), (max(1, radius // 4), (255, 255, 255))):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=width)
