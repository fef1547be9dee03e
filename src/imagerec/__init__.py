"""imagerec — build and deploy image recognition systems.

>>> import imagerec
>>> recognizer = imagerec.load("mobilenet_v2")
>>> best = recognizer.predict("../shared/photos/hot_dog.jpg", top_k=1)[0][0]
>>> best.label
'hotdog'
"""

from __future__ import annotations

import os as _os

# Keras reads its backend once, at first import; the course's API runs on
# PyTorch here unless the user already chose another backend.
_os.environ.setdefault("KERAS_BACKEND", "torch")

from .errors import ImageDecodeError, ImagerecError  # noqa: E402
from .images import Limits, Preprocessing, load_image  # noqa: E402
from .recognizer import FileResult, Prediction, Recognizer, load  # noqa: E402
from .transfer import learn  # noqa: E402  (also registers the .imagerec loader)
from . import keras_io as _keras_io  # noqa: F401,E402  (registers the .keras loader)
from . import export as _export  # noqa: F401,E402  (registers the .onnx loader of exported models)
from .training import train  # noqa: E402
from .evaluation import evaluate  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ImageDecodeError",
    "ImagerecError",
    "Limits",
    "Preprocessing",
    "load_image",
    "FileResult",
    "Prediction",
    "Recognizer",
    "load",
    "train",
    "evaluate",
    "learn",
    "__version__",
]
