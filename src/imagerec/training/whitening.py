"""A fixed first layer that whitens the pixels, set from the training images: :func:`whiten_from_data`.

The CIFAR-10 speed runs start :func:`~imagerec.architectures.fast_resnet`
from a convolution whose filters decorrelate the pixel patches of the
training set, and never train it: the network then starts from
decorrelated inputs instead of having to learn to decorrelate them.
:func:`imagerec.train` calls this on a built ``fast_resnet`` before the
first step (a user's own model, or a ``stem=N`` network, has no such layer).

>>> from imagerec.architectures import course_cnn
>>> whiten_from_data(course_cnn(input_shape=(16, 16, 3), num_classes=2), np.zeros((4, 16, 16, 3), np.uint8), "unit")
False
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.preprocessing import normalization as normalization_table

__all__ = ["whiten_from_data"]


def whiten_from_data(model: Any, images: np.ndarray, normalization: str, *, limit: int = 5000, eps: float = 5e-4) -> bool:
    """Set a model's ``"whiten"`` convolution from the patch statistics of ``images``
    and freeze its kernel; return whether the model has one.

    Each k×k×3 patch, centred on the mean patch, is projected on the
    eigenvectors of the patch covariance and divided by the square root of
    the eigenvalue (plus ``eps`` of the average variance, so that noise is
    not blown up); a second set of filters gives the negated projections,
    so the activation after it keeps both signs. The output over the
    training images then has (nearly) unit covariance: the network starts
    from decorrelated pixels instead of having to learn to decorrelate them.

    >>> from imagerec.architectures import fast_resnet
    >>> model = fast_resnet(input_shape=(16, 16, 3), num_classes=2, widths=(8,))
    >>> pictures = np.random.default_rng(0).integers(0, 256, (50, 16, 16, 3)).astype(np.uint8)
    >>> whiten_from_data(model, pictures, "unit"), model.get_layer("whiten").kernel.trainable
    (True, False)
    """
    import torch

    try:
        layer = model.get_layer("whiten")
    except ValueError:
        return False
    kh, kw, channels, filters = layer.kernel.shape
    dims = kh * kw * channels
    if filters != 2 * dims:
        return False
    picked = images[np.random.default_rng(0).permutation(len(images))[:limit]]
    total, outer, count = np.zeros(dims), np.zeros((dims, dims)), 0
    for start in range(0, len(picked), 500):
        x = torch.from_numpy(np.ascontiguousarray(picked[start:start + 500])).permute(0, 3, 1, 2).float()
        x = normalization_table(normalization).torch(x).permute(0, 2, 3, 1).numpy().astype(np.float64)
        height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
        # The patch as Keras lays out a kernel: rows, then columns, then channels.
        patches = np.concatenate(
            [x[:, dy:dy + height, dx:dx + width, :] for dy in range(kh) for dx in range(kw)], axis=-1
        ).reshape(-1, dims)
        total += patches.sum(axis=0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0, None) + eps * max(np.trace(covariance) / dims, 1e-12)
    projections = (eigenvectors / np.sqrt(eigenvalues)).T[::-1]  # one row per filter, largest variance first
    weights = np.concatenate([projections, -projections])
    kernel = weights.T.reshape(kh, kw, channels, filters).astype(np.float32)
    layer.kernel.assign(kernel)
    if layer.use_bias:
        layer.bias.assign((-(weights @ mean)).astype(np.float32))
    layer.kernel.trainable = False
    return True

