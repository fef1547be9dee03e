"""Export a trained or learned recognizer as one standalone model file, checked.

What can be exported here, and how:

=====================================  ===============================================  =========================
source                                 ``onnx``                                         ``tflite``
=====================================  ===============================================  =========================
``.keras`` (trained with imagerec)     one graph: uint8 NHWC images → the model's       the same graph, converted by
                                       normalisation → network → ``scores``             litert-torch (``imagerec[tflite]``)
``.imagerec`` / learned recognizer     one graph: uint8 NHWC images → the int8         one graph: the int8 backbone
on a zoo (int8 TFLite) backbone        backbone (QDQ, :mod:`~imagerec.formats.          + the head (+ ``confidence``)
                                       tflite_onnx`) → the head (+ ``confidence``)
learned on a Keras-application         one graph: uint8 images → normalisation →       the ``keras`` export's model
backbone (``keras:MobileNetV2``, or    the backbone's ONNX export (cut at its           (+ ``confidence``), converted
a Keras zoo model: ``--backbone        embedding) → the head (+ ``confidence``)         by litert-torch
mobilenet_v3_large``)
a Keras zoo model by name              one graph: uint8 images → normalisation →       the application with its
(``mobilenet_v3_large``, ``resnet50``) its cached ONNX export → ``scores``              weights, by litert-torch
a TFLite classifier: an int8 zoo       the TFLite graph converted by                    the model itself (a zoo
model by name (``mobilenet_v2``), a    :mod:`~imagerec.formats.tflite_onnx` (int8 as    model byte for byte; any
``.tflite`` imagerec loads (imported,  QDQ), normalisation inside for a float model     other with imagerec's
Teachable Machine's, exported)                                                          metadata)
=====================================  ===============================================  =========================

``keras`` is offered for recognizers learned on a Keras-application backbone:
one Keras model (normalisation as a fixed 1×1 convolution → the application
→ L2 normalisation → the head's Dense layers → softmax) that takes raw 0–255
pixels, saved with imagerec's metadata so ``imagerec.load`` reads it back. A
``.keras`` model already is one, and an int8 TFLite backbone has no Keras
equivalent.

A learned head is exported from what it describes
(:meth:`~imagerec.transfer.heads.Head.dense_layers`), whatever its kind.

Every export is checked before it is kept: the exported file is run on
sample images (``samples``; without them, fixed synthetic images) and its
scores must match the original's — the Keras model itself, or the learned
recognizer — within ``tolerance`` (default :data:`TOLERANCE`, the largest
absolute difference of any class probability). A file that fails the check
is not written and :class:`~imagerec.core.errors.ModelFileError` says by how much. The
top-1 class must also be the source's on every sample image (a tie in the
source, closer than :data:`TOLERANCE`, may go either way).

Modules: :mod:`~imagerec.export.api` (``export``, the table of routes),
:mod:`~imagerec.export.sources` (what is exported), :mod:`~imagerec.export.check`,
:mod:`~imagerec.export.onnx`, :mod:`~imagerec.export.tflite`, :mod:`~imagerec.export.keras`.

>>> import imagerec, tempfile, os
>>> shots = "../shared/photos/few-shot"
>>> model = imagerec.learn({"cat": [f"{shots}/cat_train_0.bmp"], "dog": [f"{shots}/dog_train_0.bmp"]},
...                        head="imprint", threshold=None, cache=False)
>>> result = export(model, "tflite", os.path.join(tempfile.mkdtemp(), "pets.tflite"))
>>> result.check.ok, result.check.max_abs_diff < TOLERANCE
(True, True)
"""

from __future__ import annotations

from .api import FORMATS, ExportResult, export
from .check import TOLERANCE, ExportCheck, synthetic_samples

__all__ = ["export", "ExportResult", "ExportCheck", "FORMATS", "TOLERANCE", "synthetic_samples"]
