"""A synthetic labelled dataset of coloured shapes, for tests, demos and docs.

>>> import tempfile
>>> from imagerec.data.synthetic import make_shapes
>>> sorted(p.name for p in make_shapes(tempfile.mkdtemp(), per_class=1).iterdir())
['circle', 'cross', 'square', 'triangle']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import DatasetError

__all__ = ["SHAPES", "make_shapes"]

SHAPES = ("circle", "square", "triangle", "cross")


def make_shapes(
    folder: str | os.PathLike[str],
    *,
    per_class: int = 50,
    size: int = 32,
    classes: Sequence[str] = SHAPES,
    seed: int = 0,
    format: str = "png",
) -> Path:
    """Write a small labelled dataset of coloured shapes: ``folder/<shape>/<n>.png``.

    Each image holds one shape of a random colour, size and position on a
    noisy background of another colour, so a classifier must learn the
    shape, not the colour. Useful for tests, demos and trying options fast.

    >>> import tempfile
    >>> from imagerec.data import load_dataset, make_shapes
    >>> root = make_shapes(tempfile.mkdtemp(), per_class=3)
    >>> load_dataset(root).class_counts()
    {'circle': 3, 'cross': 3, 'square': 3, 'triangle': 3}
    """
    from PIL import Image, ImageDraw

    unknown = set(classes) - set(SHAPES)
    if unknown:
        raise DatasetError(f"unknown shapes {sorted(unknown)}; choose from {', '.join(SHAPES)}")
    rng = np.random.default_rng(seed)
    root = Path(folder)
    for shape in classes:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            background = rng.integers(0, 256, 3)
            colour = (background + rng.integers(80, 176, 3)) % 256  # always far from the background
            noise = rng.integers(-20, 21, (size, size, 3))
            pixels = np.clip(background[None, None, :] + noise, 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            radius = rng.uniform(0.22, 0.4) * size
            cx, cy = rng.uniform(radius, size - radius, 2)
            fill = tuple(int(c) for c in colour)
            if shape == "circle":
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
            elif shape == "square":
                draw.rectangle((cx - radius * 0.85, cy - radius * 0.85, cx + radius * 0.85, cy + radius * 0.85), fill=fill)
            elif shape == "triangle":
                draw.polygon([(cx, cy - radius), (cx - radius, cy + radius * 0.8), (cx + radius, cy + radius * 0.8)], fill=fill)
            else:
                bar = radius * 0.35
                draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=fill)
                draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=fill)
            image.save(root / shape / f"{n:04d}.{format}")
    return root
