"""TFLite model metadata (``TFLITE_METADATA``): a float classifier's normalisation and labels.

Classifiers made with TFLite Model Maker, MediaPipe Model Maker or the
TFLite metadata writer carry a ``TFLITE_METADATA`` entry: a small
flatbuffer (TFLite's ``metadata_schema.fbs``, identifier ``M001``) whose
input tensor lists ``NormalizationOptions`` (``(x - mean) / std``) and whose
output tensor names a label file packed into the model (the ``.tflite`` is
also a zip archive holding it).

The schema's Python bindings ship only in ``tflite-support`` (unmaintained,
and pinned to protobuf 3), so the few tables needed are read here with the
``flatbuffers`` runtime the LiteRT package already brings; field numbers are
those of ``metadata_schema.fbs``, checked against ``tflite-support``'s own
writer by the fixture ``tests/fixtures/keras2/float_classifier_metadata.tflite``.

>>> normalization_name([127.5], [127.5])
'tf'
>>> normalization_name([0.0], [1.0])
'uint8'
>>> normalization_name([10.0], [3.0]) is None
True
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from ..core.preprocessing import NORMALIZATIONS

__all__ = ["TFLiteMetadata", "read_tflite_metadata", "normalization_name", "METADATA_NAME"]

METADATA_NAME = "TFLITE_METADATA"
# metadata_schema.fbs: field numbers of the tables read here.
_MODEL_SUBGRAPHS = 3
_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 2, 3
_TENSOR_NAME, _TENSOR_PROCESS_UNITS, _TENSOR_ASSOCIATED_FILES = 0, 4, 6
_UNIT_OPTIONS_TYPE, _UNIT_OPTIONS = 0, 1
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union: NormalizationOptions
_NORM_MEAN, _NORM_STD = 0, 1
_FILE_NAME, _FILE_TYPE = 0, 2
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


@dataclass
class TFLiteMetadata:
    """What imagerec uses of a model's ``TFLITE_METADATA``: input mean/std and the label file's lines."""

    mean: list[float] | None = None
    std: list[float] | None = None
    labels: list[str] | None = None
    label_file: str | None = None


def normalization_name(mean: list[float], std: list[float]) -> str | None:
    """The :data:`~imagerec.core.preprocessing.NORMALIZATIONS` entry equal to ``(x - mean) / std``, if any."""
    mean3 = np.broadcast_to(np.asarray(mean, np.float64), (3,))
    std3 = np.broadcast_to(np.asarray(std, np.float64), (3,))
    if np.any(std3 == 0):
        return None
    scale, bias = 1.0 / std3, -mean3 / std3
    for name, entry in NORMALIZATIONS.items():
        if entry.order != (0, 1, 2):
            continue  # a channel swap cannot be said as mean/std
        if np.allclose(scale, entry.scale, rtol=1e-3, atol=1e-6) and np.allclose(bias, entry.bias, rtol=1e-3, atol=1e-4):
            return name
    return None


def read_tflite_metadata(model: bytes, entries: dict[str, bytes]) -> TFLiteMetadata | None:
    """Parse the ``TFLITE_METADATA`` entry of ``entries`` (from ``read_metadata``); None when absent or unreadable.

    ``model`` is the whole file, where the label file is packed.
    """
    raw = entries.get(METADATA_NAME)
    if not raw:
        return None
    try:
        return _parse(bytearray(raw), model)
    except Exception:  # a damaged table reads as no metadata; the caller then asks for the normalisation
        return None


def _parse(buffer: bytearray, model: bytes) -> TFLiteMetadata:
    from flatbuffers import encode, number_types, packer
    from flatbuffers.table import Table

    def vector_tables(table: Table, slot: int) -> list[Table]:
        offset = table.Offset(4 + 2 * slot)
        if not offset:
            return []
        start = table.Vector(offset)
        return [Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(offset))]

    def floats(table: Table, slot: int) -> list[float]:
        offset = table.Offset(4 + 2 * slot)
        if not offset:
            return []
        start = table.Vector(offset)
        return [float(table.Get(number_types.Float32Flags, start + 4 * i)) for i in range(table.VectorLen(offset))]

    def text(table: Table, slot: int) -> str | None:
        offset = table.Offset(4 + 2 * slot)
        return table.String(offset + table.Pos).decode("utf-8", "replace") if offset else None

    def byte(table: Table, slot: int) -> int:
        offset = table.Offset(4 + 2 * slot)
        return int(table.Get(number_types.Uint8Flags, offset + table.Pos)) if offset else 0

    root = Table(buffer, encode.Get(packer.uoffset, buffer, 0))
    found = TFLiteMetadata()
    subgraphs = vector_tables(root, _MODEL_SUBGRAPHS)
    if not subgraphs:
        return found
    inputs = vector_tables(subgraphs[0], _SUBGRAPH_INPUTS)
    for unit in vector_tables(inputs[0], _TENSOR_PROCESS_UNITS) if inputs else []:
        if byte(unit, _UNIT_OPTIONS_TYPE) == _NORMALIZATION_OPTIONS:
            options = Table(bytearray(), 0)
            unit.Union(options, unit.Offset(4 + 2 * _UNIT_OPTIONS))
            found.mean, found.std = floats(options, _NORM_MEAN), floats(options, _NORM_STD)
    outputs = vector_tables(subgraphs[0], _SUBGRAPH_OUTPUTS)
    for associated in vector_tables(outputs[0], _TENSOR_ASSOCIATED_FILES) if outputs else []:
        if byte(associated, _FILE_TYPE) == _TENSOR_AXIS_LABELS and found.label_file is None:
            found.label_file = text(associated, _FILE_NAME)
    if found.label_file:
        found.labels = _packed_lines(model, found.label_file)
    return found


def _packed_lines(model: bytes, name: str) -> list[str] | None:
    """Lines of the file ``name`` packed in the model's zip part (the metadata writer appends one)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            lines = archive.read(name).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError):
        return None
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]
