"""How a model wants its pictures: :class:`Preprocessing`, and the one table of normalisations.

Every normalisation imagerec knows is an affine map per channel,
``out[c] = in[order[c]] * scale[c] + bias[c]`` on 0–255 pixel values, kept
once in :data:`NORMALIZATIONS`. The forms each runtime needs are generated
from that table, so a picture becomes the same numbers in NumPy (inference
backends), in torch (training), in an ONNX graph and in a Keras layer
(exports):

============  =================================================
``uint8``     raw 0–255 values (as float32 if the model wants floats)
``unit``      ``x / 255`` → [0, 1]
``tf``        ``x / 127.5 - 1`` → [-1, 1]
``torch``     ``(x / 255 - mean) / std`` with ImageNet mean and std
``caffe``     RGB → BGR, minus the ImageNet mean in 0–255 units
============  =================================================

>>> import numpy as np
>>> [round(float(v), 2) for v in normalize(np.array([[[[0, 255, 51]]]], np.uint8), "tf").ravel()]
[-1.0, 1.0, -0.6]
>>> Preprocessing(size=(224, 224), normalization="caffe").normalization
'caffe'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import UsageError

__all__ = ["Preprocessing", "Normalization", "NORMALIZATIONS", "normalization", "normalize", "ResizePolicy"]

ResizePolicy = Literal["crop", "squash"]
RESAMPLE_FILTERS = ("bilinear", "lanczos")  # Pillow filters a Preprocessing may name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # ImageNet mean in 0–255 units, B, G, R


@dataclass(frozen=True)
class Normalization:
    """``out[..., c] = in[..., order[c]] * scale[c] + bias[c]``, on 0–255 values.

    >>> NORMALIZATIONS["unit"].affine()[1].tolist()
    [0.0, 0.0, 0.0]
    """

    name: str
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    order: tuple[int, int, int] = (0, 1, 2)

    @property
    def identity(self) -> bool:
        return self.scale == (1.0, 1.0, 1.0) and self.bias == (0.0, 0.0, 0.0) and self.order == (0, 1, 2)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The map as a 3×3 matrix ``M`` and a bias ``b`` (``out = M @ in + b``), float64.

        A Keras export uses it as a fixed 1×1 convolution (kernel ``M.T``).
        """
        matrix = np.zeros((3, 3))
        for out_channel, in_channel in enumerate(self.order):
            matrix[out_channel, in_channel] = self.scale[out_channel]
        return matrix, np.array(self.bias, dtype=np.float64)

    def numpy(self, batch: np.ndarray) -> np.ndarray:
        """A uint8 (or float) ``N×H×W×3`` batch as the float32 input a model expects."""
        x = batch.astype(np.float32)
        if self.order != (0, 1, 2):
            x = x[..., list(self.order)]
        if self.scale != (1.0, 1.0, 1.0):
            x *= np.asarray(self.scale, np.float32)
        if self.bias != (0.0, 0.0, 0.0):
            x += np.asarray(self.bias, np.float32)
        return np.ascontiguousarray(x, dtype=np.float32)

    def torch(self, x: Any) -> Any:
        """The same map on a float NCHW torch tensor (training runs on these)."""
        import torch

        if self.order != (0, 1, 2):
            x = x[:, list(self.order)]
        if self.scale != (1.0, 1.0, 1.0):
            x = x * torch.tensor(self.scale, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        if self.bias != (0.0, 0.0, 0.0):
            x = x + torch.tensor(self.bias, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x

    def onnx(self, source: str, output: str, prefix: str = "imagerec_norm") -> tuple[list, list]:
        """ONNX nodes (and their constants) mapping the float NHWC tensor ``source`` to ``output``."""
        from onnx import helper, numpy_helper

        nodes, constants, current = [], [], source
        if self.order != (0, 1, 2):
            constants.append(numpy_helper.from_array(np.array(self.order, np.int64), f"{prefix}_order"))
            nodes.append(helper.make_node("Gather", [current, f"{prefix}_order"], [f"{prefix}_ordered"], axis=3,
                                          name=f"{prefix}_order"))
            current = f"{prefix}_ordered"
        for step, values in (("Mul", self.scale), ("Add", self.bias)):
            neutral = (1.0, 1.0, 1.0) if step == "Mul" else (0.0, 0.0, 0.0)
            if tuple(values) == neutral:
                continue
            name = f"{prefix}_{step.lower()}"
            constants.append(numpy_helper.from_array(np.asarray(values, np.float32), f"{name}_value"))
            nodes.append(helper.make_node(step, [current, f"{name}_value"], [name], name=name))
            current = name
        nodes.append(helper.make_node("Identity", [current], [output], name=f"{prefix}_out"))
        return nodes, constants


def _imagenet_torch() -> Normalization:
    return Normalization(
        "torch",
        scale=tuple(1.0 / (255.0 * s) for s in IMAGENET_STD),
        bias=tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),
    )


NORMALIZATIONS: dict[str, Normalization] = {
    "uint8": Normalization("uint8"),
    "unit": Normalization("unit", scale=(1 / 255,) * 3),
    "tf": Normalization("tf", scale=(1 / 127.5,) * 3, bias=(-1.0,) * 3),
    "torch": _imagenet_torch(),
    "caffe": Normalization("caffe", bias=tuple(-m for m in _CAFFE_MEAN_BGR), order=(2, 1, 0)),
}


def normalization(name: str) -> Normalization:
    """The :class:`Normalization` called ``name``, or a one-line ``UsageError``.

    >>> normalization("caffe").order
    (2, 1, 0)
    """
    try:
        return NORMALIZATIONS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown normalization {name!r}; expected one of {', '.join(NORMALIZATIONS)}") from None


def normalize(batch: np.ndarray, name: str) -> np.ndarray:
    """Turn a uint8 ``N×H×W×3`` batch into the float32 input a model with normalisation ``name`` expects."""
    return normalization(name).numpy(batch)


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its pictures: size, resize policy and normalisation.

    ``resize="crop"`` scales the shorter side to the target and cuts the
    centre; ``"squash"`` scales both sides independently (aspect ratio is
    not kept). ``normalization`` names what the backend does with the uint8
    pixels (``"uint8"`` = raw 0–255, the quantised models' convention;
    ``"tf"`` = scale to [-1, 1]; ``"torch"`` = ImageNet mean/std; ``"caffe"``
    = BGR minus ImageNet mean) — it is applied inside a backend, never here.
    ``frame=N`` puts the picture, resized to ``size`` minus ``N`` pixels on
    every side, on a mid-grey (128) canvas of ``size``: grey is what every
    normalisation maps to about zero, the value convolutions pad with. It
    is what ``imagerec learn`` feeds its backbones (docs/transfer.md).

    >>> Preprocessing(size=(224, 224)).resize
    'crop'
    >>> Preprocessing(size=(224, 224), frame=16).inner_size
    (192, 192)
    """

    size: tuple[int, int] = (224, 224)  # (height, width)
    resize: ResizePolicy = "crop"
    normalization: str = "uint8"
    frame: int = 0
    # The resampling filter: "lanczos" for models whose own code resizes that
    # way (Teachable Machine's ImageOps.fit), so scores match theirs.
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        normalization(self.normalization)
        if self.resize not in ("crop", "squash"):
            raise UsageError(f"resize policy must be 'crop' or 'squash', got {self.resize!r}")
        if self.resample not in RESAMPLE_FILTERS:
            raise UsageError(f"resample must be one of {', '.join(RESAMPLE_FILTERS)}, got {self.resample!r}")
        height, width = self.size
        if height <= 0 or width <= 0:
            raise UsageError(f"preprocessing size must be positive, got {self.size}")
        # A frame wider than a quarter of the side would leave the picture less than half the input.
        if not 0 <= self.frame <= min(height, width) // 4:
            raise UsageError(
                f"frame must be between 0 and {min(height, width) // 4} pixels for a {height}×{width} input, "
                f"got {self.frame}"
            )

    @property
    def inner_size(self) -> tuple[int, int]:
        """The (height, width) the picture itself is resized to, inside the frame."""
        return (self.size[0] - 2 * self.frame, self.size[1] - 2 * self.frame)

    def to_dict(self) -> dict:
        described = {"size": list(self.size), "resize": self.resize, "normalization": self.normalization}
        # Only when set: files and cache keys written before frames existed stay valid.
        if self.frame:
            described["frame"] = self.frame
        if self.resample != "bilinear":
            described["resample"] = self.resample
        return described

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(
            size=(int(data["size"][0]), int(data["size"][1])),
            resize=data.get("resize", "crop"),
            normalization=data.get("normalization", "uint8"),
            frame=int(data.get("frame", 0)),
            resample=data.get("resample", "bilinear"),
        )
