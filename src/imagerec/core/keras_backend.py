"""Keras, on the PyTorch backend imagerec builds and trains with — without overriding a user's choice.

Keras reads its backend once, when it is first imported: from the
``KERAS_BACKEND`` environment variable, else from ``keras.json`` in
``KERAS_HOME`` (default ``~/.keras``). :func:`import_keras` picks PyTorch only
when nothing chose a backend yet; if the user configured another one, or
Keras is already running on another one, imagerec's Keras features say so
in one line instead of silently switching. ``import imagerec`` never imports
Keras or touches the variable.

>>> keras = import_keras()
>>> keras.backend.backend()
'torch'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["import_keras", "configured_backend"]

BACKEND = "torch"


def configured_backend() -> str | None:
    """The backend the user chose for Keras (environment, then ``keras.json``), or None.

    >>> configured_backend() in (None, "torch", "jax", "tensorflow", "numpy")
    True
    """
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        settings = json.loads((home / "keras.json").read_text())
    except (OSError, ValueError):
        return None
    backend = settings.get("backend") if isinstance(settings, dict) else None
    return backend if isinstance(backend, str) and backend else None


def import_keras() -> Any:
    """The ``keras`` module on the PyTorch backend; a one-line ``UsageError`` if another was chosen."""
    if "keras" not in sys.modules and configured_backend() is None:
        os.environ["KERAS_BACKEND"] = BACKEND
    import keras

    running = keras.backend.backend()
    if running != BACKEND:
        raise UsageError(
            f"imagerec builds and runs Keras models on the {BACKEND} backend, but Keras is set to {running!r} "
            f"(KERAS_BACKEND or keras.json); run with KERAS_BACKEND={BACKEND}"
        )
    return keras
