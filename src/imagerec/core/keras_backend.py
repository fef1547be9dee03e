"""Keras, on the PyTorch backend imagerec builds and trains with — chosen only when imagerec needs it.

Keras reads its backend once, when it is first imported: from the
``KERAS_BACKEND`` environment variable, else from ``keras.json`` (which
Keras itself writes on its first import, with ``"tensorflow"`` in it, so
that file is not taken as a choice). ``import imagerec`` never imports Keras
nor touches the variable, so a program that uses Keras on another backend
and imagerec's recognizers side by side keeps its backend.
:func:`import_keras`, which imagerec's Keras features (training, Keras
backbones, exports) call, picks PyTorch when ``KERAS_BACKEND`` is unset and
Keras is not yet imported; if the user set another backend, or Keras already
runs on one, those features say so in one line instead of switching.

>>> keras = import_keras()
>>> keras.backend.backend()
'torch'
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .errors import UsageError

__all__ = ["import_keras", "BACKEND"]

BACKEND = "torch"


def import_keras() -> Any:
    """The ``keras`` module on the PyTorch backend; a one-line ``UsageError`` if another was chosen."""
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", BACKEND)
    import keras

    running = keras.backend.backend()
    if running != BACKEND:
        raise UsageError(
            f"imagerec builds and runs Keras models on the {BACKEND} backend, but Keras runs on {running!r} "
            f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')!r}); run with KERAS_BACKEND={BACKEND}"
        )
    return keras
