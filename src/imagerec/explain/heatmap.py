"""What every explanation method returns: :class:`HeatMap`, and the geometry back to the photo's pixels.

A method computes its map on the model's input grid (after resize, crop
and frame); :func:`finish` maps it back onto the photo (a centre crop's
cut-away strips get 0, a squash is undone, a frame is stripped), finds the
peak and wraps it all in a :class:`HeatMap`.

>>> import numpy as np
>>> from PIL import Image
>>> from imagerec.core.preprocessing import Preprocessing
>>> on_input = np.zeros((10, 10), np.float32); on_input[2, 7] = 1.0
>>> heat = finish(on_input, Image.new("RGB", (40, 20)), Preprocessing(size=(10, 10), resize="squash"),
...               labels=["a"], index=0, score=0.9, method="occlusion", runs=1)
>>> heat.map.shape, heat.peak
((20, 40), [29, 4])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..core.errors import UsageError
from ..core.preprocessing import Preprocessing

__all__ = ["HeatMap", "check_label", "finish", "label_index", "peak_of", "to_photo_grid"]


@dataclass(frozen=True)
class HeatMap:
    """Where a model looked for ``label`` in one photo.

    ``map`` is ``H×W`` float32 in the photo's own pixel grid, larger where
    the region drove the label more (for occlusion: how much the label's
    probability fell, on average, when that pixel was hidden, negative where
    hiding helped; for Grad-CAM: the rectified gradient-weighted activation
    of the last convolutional layer). ``peak`` is ``[x, y]`` of its maximum
    in the photo's pixels; ``score`` the label's probability on the whole
    photo; ``method`` ``"occlusion"`` or ``"grad-cam"``; ``runs`` the model
    runs it took (a Grad-CAM run is one forward and one backward pass).
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

    def overlay(self, *, alpha: float = 0.6, colormap: str = "turbo", mark_peak: bool = True,
                max_side: int | None = None) -> Image.Image:
        """The photo with the heat map laid over it in colour (hot = what drove the answer), peak marked.

        ``max_side`` draws it downscaled so its longer side is at most that
        many pixels (the web page and the evaluation report want small images).
        """
        from matplotlib import colormaps  # only drawing needs matplotlib

        photo, values, peak = self.photo.convert("RGB"), self.map, self.peak
        if max_side is not None and max(photo.size) > max_side:
            ratio = max_side / max(photo.size)
            size = (max(1, round(photo.width * ratio)), max(1, round(photo.height * ratio)))
            photo = photo.resize(size, Image.Resampling.BILINEAR)
            values = np.asarray(Image.fromarray(values, "F").resize(size, Image.Resampling.BILINEAR), np.float32)
            peak = [min(size[0] - 1, int(peak[0] * ratio)), min(size[1] - 1, int(peak[1] * ratio))]
        top = float(values.max())
        # uint8 levels and a 256-entry colour table: a 12-megapixel photo costs a few
        # 12-megapixel uint8 planes, not float RGBA arrays of hundreds of megabytes.
        levels = np.round(np.clip(values, 0, None) * (255 / top if top > 0 else 0)).astype(np.uint8)
        table = colormaps[colormap](np.linspace(0, 1, 256), bytes=True)[:, :3]
        colours = Image.fromarray(table[levels], "RGB")
        weight = Image.fromarray(np.round(levels * alpha).astype(np.uint8), "L")
        image = Image.composite(colours, photo, weight)
        if mark_peak:
            _mark(image, peak)
        return image


def finish(on_input: np.ndarray, photo: Image.Image, preprocessing: Preprocessing, *, labels: Sequence[str],
           index: int, score: float, method: str, runs: int) -> HeatMap:
    """The :class:`HeatMap` of a map computed on the model's input grid (frame included)."""
    in_photo = to_photo_grid(np.asarray(on_input, np.float32), photo.size, preprocessing)
    return HeatMap(in_photo, labels[index], index, float(score), method, peak_of(in_photo), runs, photo)


def peak_of(values: np.ndarray, *, tolerance: float = 0.02) -> list[int]:
    """``[x, y]`` of the map's maximum; on a plateau (within ``tolerance`` of the maximum), its middle.

    A plain argmax takes the plateau's first pixel: its top-left corner, or
    the photo's edge when the plateau reaches it (occlusion of an object a
    max-pooling model sees gives such plateaus). The pixel of the plateau
    nearest to its centroid is inside it even when it is not convex.

    >>> values = np.zeros((5, 9), np.float32); values[1:4, 2:7] = 1.0
    >>> peak_of(values)
    [4, 2]
    """
    top = float(values.max())
    near = values >= top - tolerance * abs(top) if top > 0 else values >= top
    ys, xs = np.nonzero(near)
    nearest = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return [int(xs[nearest]), int(ys[nearest])]


def label_index(base: np.ndarray, labels: Sequence[str], label: str | None,
                predictable: np.ndarray | None) -> int:
    """The index of ``label`` (default: the best predictable class of ``base``), or a one-line ``UsageError``."""
    if label is None:
        mask = np.ones(len(base), bool) if predictable is None else predictable
        return int(np.argmax(np.where(mask, base, -np.inf)))
    return check_label(labels, label)


def check_label(labels: Sequence[str], label: str) -> int:
    """The index of ``label`` in ``labels``, or a one-line ``UsageError`` suggesting close names.

    >>> check_label(["tabby", "tiger cat"], "cat")
    Traceback (most recent call last):
    imagerec.core.errors.UsageError: label 'cat' is not one of the model's 2 classes; did you mean 'tiger cat'?
    """
    try:
        return list(labels).index(label)
    except ValueError:
        close = [name for name in labels if label.lower() in name.lower()][:5]
        hint = f"; did you mean {', '.join(repr(name) for name in close)}?" if close else ""
        raise UsageError(f"label {label!r} is not one of the model's {len(labels)} classes{hint}") from None


def to_photo_grid(heat: np.ndarray, photo_size: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray:
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
    scaled = Image.fromarray(np.ascontiguousarray(heat, np.float32), "F").resize(
        (box[2] - box[0], box[3] - box[1]), Image.Resampling.BILINEAR)
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
