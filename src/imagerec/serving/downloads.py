"""Hand out a served learned model as a file: ``.imagerec``, or exported to TFLite / ONNX.

A model taught through the web page lives in the server's memory; this lets
its user keep it (``imagerec.load`` reads the ``.imagerec`` file) or ship it
to a phone or another runtime as one checked TFLite or ONNX file.

>>> import imagerec, tempfile
>>> from pathlib import Path
>>> shots = "../shared/photos/few-shot/"
>>> model = imagerec.learn({"cat": [shots + "cat_train_0.bmp"], "dog": [shots + "dog_train_0.bmp"]},
...                        head="imprint", cache=False, name="pets")
>>> model_file(model, "imagerec", Path(tempfile.mkdtemp())).name
'pets.imagerec'
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UsageError
from ..recognizer import Recognizer

__all__ = ["model_file", "DOWNLOAD_FORMATS"]

DOWNLOAD_FORMATS = {
    "imagerec": "application/zip",
    "tflite": "application/octet-stream",
    "onnx": "application/octet-stream",
}


def model_file(recognizer: Recognizer, format: str, folder: Path) -> Path:
    """Write ``recognizer`` into ``folder`` as ``format``; returns the file."""
    if format not in DOWNLOAD_FORMATS:
        raise UsageError(f"unknown format {format!r}; expected one of {', '.join(DOWNLOAD_FORMATS)}")
    if getattr(recognizer, "head", None) is None:
        raise UsageError(
            f"{recognizer.name!r} is a pretrained model: only taught (learned) models are handed out; "
            "pretrained ones come from the zoo (imagerec models download)"
        )
    if format == "imagerec":
        return recognizer.save(folder / f"{recognizer.name}.imagerec")
    from ..export import export

    # Checked on synthetic images: the server holds no photos of its own.
    return export(recognizer, format, folder / f"{recognizer.name}.{format}").path
