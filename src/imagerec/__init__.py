"""imagerec — build and deploy image recognition systems.

>>> import imagerec
>>> recognizer = imagerec.load("mobilenet_v2")
>>> best = recognizer.predict("../shared/photos/hot_dog.jpg", top_k=1)[0][0]
>>> best.label
'hotdog'
"""

from __future__ import annotations

from .core.errors import ImageDecodeError, ImagerecError
from .core.images import Limits, load_image
from .core.preprocessing import Preprocessing
from .evaluation import evaluate
from .loading import load
from .recognizer import Answer, FileResult, Prediction, Recognizer
from .training import train
from .transfer import learn

from .core.version import __version__

__all__ = [
    "ImageDecodeError",
    "ImagerecError",
    "Limits",
    "Preprocessing",
    "load_image",
    "Answer",
    "FileResult",
    "Prediction",
    "Recognizer",
    "load",
    "train",
    "evaluate",
    "learn",
    "__version__",
]
