"""Training-time augmentation of uint8 batches: mirror, shift, cut out — vectorised, no per-image loop.

>>> import numpy as np
>>> from imagerec.data.augment import augment
>>> augment(np.zeros((2, 8, 8, 3), np.uint8), np.random.default_rng(0), translate=2).shape
(2, 8, 8, 3)
"""

from __future__ import annotations

import numpy as np

__all__ = ["augment"]


def augment(
    batch: np.ndarray,
    rng: np.random.Generator,
    *,
    flip: bool = True,
    translate: int = 0,
    mirror: np.ndarray | None = None,
    cutout: int = 0,
) -> np.ndarray:
    """Randomly mirror, shift and cut out a uint8 ``N×H×W×3`` batch, all images at once.

    Each image is mirrored left–right with probability ½ (``flip``), or
    where the boolean ``mirror`` says, and shifted by up to ``translate``
    pixels in each direction, with the border reflected. One gather over a
    padded copy does both, so there is no per-image Python loop. ``cutout``
    then greys out a ``cutout``×``cutout`` square centred anywhere in the
    image (clipped at the borders), a regulariser for long runs.

    >>> batch = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    >>> out = augment(batch, np.random.default_rng(0), translate=1)
    >>> out.shape, out.dtype
    ((2, 4, 4, 3), dtype('uint8'))
    >>> int((augment(np.zeros((1, 8, 8, 3), np.uint8), np.random.default_rng(0), flip=False, cutout=2) == 128).sum()) % 3
    0
    """
    n, height, width = batch.shape[:3]
    out = _mirror_and_shift(batch, rng, flip=flip, translate=translate, mirror=mirror)
    if cutout > 0:
        out = out.copy() if out is batch else out
        out[_cutout_mask(n, height, width, int(cutout), rng)] = 128  # mid-grey: about the mean pixel
    return out


def _mirror_and_shift(batch, rng, *, flip, translate, mirror):
    n, height, width = batch.shape[:3]
    if not flip and translate <= 0:
        return batch
    pad = max(0, int(translate))
    source = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect") if pad else batch
    dy = rng.integers(0, 2 * pad + 1, n) if pad else np.zeros(n, np.int64)
    dx = rng.integers(0, 2 * pad + 1, n) if pad else np.zeros(n, np.int64)
    columns = np.arange(width)
    if flip:
        mirrored = rng.random(n) < 0.5 if mirror is None else np.asarray(mirror, dtype=bool)
        columns = np.where(mirrored[:, None], width - 1 - columns[None, :], columns[None, :])
    else:
        columns = np.broadcast_to(columns, (n, width))
    rows = dy[:, None] + np.arange(height)[None, :]
    columns = dx[:, None] + columns
    return source[np.arange(n)[:, None, None], rows[:, :, None], columns[:, None, :]]


def _cutout_mask(n: int, height: int, width: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An ``N×H×W`` mask of one ``size``-sided square per image, centred on a random pixel."""
    top = rng.integers(0, height, n) - size // 2
    left = rng.integers(0, width, n) - size // 2
    rows = np.arange(height)[None, :] - top[:, None]
    columns = np.arange(width)[None, :] - left[:, None]
    inside_rows = (rows >= 0) & (rows < size)
    inside_columns = (columns >= 0) & (columns < size)
    return inside_rows[:, :, None] & inside_columns[:, None, :]
