"""Test-time views: the shifted and mirrored copies whose scores are averaged at prediction time.

The training loop (NumPy batches), the Keras→ONNX conversion and the exports
(torch tensors) all follow the one plan :func:`prediction_views` lays out.

>>> [v.weight for v in prediction_views(True)]
[0.5, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PredictionView", "prediction_views", "apply_view"]


@dataclass(frozen=True)
class PredictionView:
    """One view of test-time augmentation: shift by (``dy``, ``dx``) pixels, maybe mirror, and its weight."""

    dy: int
    dx: int
    mirrored: bool
    weight: float


def prediction_views(flip: bool, shift: int = 0) -> tuple[PredictionView, ...]:
    """The views whose scores are averaged at prediction time, with their weights (summing to 1).

    ``flip`` averages each view with its mirror image. ``shift`` adds the
    image moved by ``shift`` pixels up-left and down-right (borders
    reflected), which together weigh as much as the unshifted image —
    the speed runs' "level 2" test-time augmentation. The training loop
    (on NumPy batches) and the ONNX export (on torch tensors) both follow
    this one plan.

    >>> [(v.dy, v.mirrored, v.weight) for v in prediction_views(True)]
    [(0, False, 0.5), (0, True, 0.5)]
    >>> len(prediction_views(True, shift=1)), sum(v.weight for v in prediction_views(False, shift=1))
    (6, 1.0)
    """
    offsets = [(0, 0, 1.0)] if shift <= 0 else [(0, 0, 0.5), (-shift, -shift, 0.25), (shift, shift, 0.25)]
    mirrors = (False, True) if flip else (False,)
    return tuple(
        PredictionView(dy, dx, mirrored, weight / len(mirrors)) for dy, dx, weight in offsets for mirrored in mirrors
    )


def apply_view(batch: np.ndarray, view: PredictionView) -> np.ndarray:
    """A uint8 ``N×H×W×3`` batch as ``view`` sees it (shifted with reflected borders, maybe mirrored).

    >>> batch = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1)
    >>> apply_view(batch, PredictionView(1, 1, False, 1.0))[0, :, :, 0].tolist()
    [[4, 5, 4], [7, 8, 7], [4, 5, 4]]
    """
    out = batch
    if view.dy or view.dx:
        pad = max(abs(view.dy), abs(view.dx))
        padded = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        height, width = batch.shape[1:3]
        out = padded[:, pad + view.dy:pad + view.dy + height, pad + view.dx:pad + view.dx + width]
    if view.mirrored:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)
