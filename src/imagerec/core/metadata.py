"""The declared schema of every metadata block imagerec reads from a model file.

A ``.imagerec`` manifest, the ``imagerec`` metadata of an exported ``.onnx``
or ``.tflite`` file and the ``imagerec.json`` of a ``.keras`` file are each
parsed and checked here, against one pydantic model, before anything is
built from them. Parsing is bounded (pydantic-core's JSON parser refuses
nesting over 200 levels and numbers out of range), types are strict (a
string is never a list of labels, ``"0.5"`` is not a threshold) and numbers
are finite; anything else is one line of :class:`ModelFileError` naming the
first problem. Unknown keys are kept, so files from a newer imagerec that
only add keys still load.

>>> block = parse_block(b'{"labels": ["cat", "dog"], "preprocessing": {"size": [224, 224]}}',
...                     ExportedMetadata, "m.onnx", "imagerec metadata")
>>> block.labels, block.threshold
(['cat', 'dog'], None)
>>> parse_block(b'{"labels": "abcd", "preprocessing": {"size": [224, 224]}}', ExportedMetadata, "m.onnx", "imagerec metadata")
Traceback (most recent call last):
...
imagerec.core.errors.ModelFileError: m.onnx: its imagerec metadata is invalid: labels: Input should be a valid list
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictInt, StrictStr, ValidationError
from pydantic_core import from_json

from .errors import ModelFileError

__all__ = [
    "ArrayBlock", "BackboneBlock", "ExportedMetadata", "HeadBlock", "KerasMetadata", "LearnedManifest",
    "PreprocessingBlock", "parse_block", "parse_json", "validate_block",
]

Block = TypeVar("Block", bound=BaseModel)


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__} {str(value)[:40]!r}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("the number is too large") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {number}")
    return number


Finite = Annotated[float, PlainValidator(_finite)]
Labels = Annotated[list[Annotated[StrictStr, Field(max_length=1000)]], Field(min_length=1, max_length=100_000)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Side = Annotated[StrictInt, Field(ge=1, le=16384)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class PreprocessingBlock(_Block):
    """``Preprocessing.to_dict()``: names are checked by ``Preprocessing.from_dict`` itself."""

    size: Annotated[list[Side], Field(min_length=2, max_length=2)]
    resize: StrictStr = "crop"
    normalization: StrictStr = "uint8"
    frame: Annotated[StrictInt, Field(ge=0, le=4096)] = 0
    resample: StrictStr = "bilinear"


class ArrayBlock(_Block):
    """One array of a learned head: where it is, its sha256, shape and dtype."""

    file: Annotated[StrictStr, Field(pattern=r"^arrays/[A-Za-z0-9_.-]{1,100}\.npy$")]
    sha256: Sha256
    shape: Annotated[list[Annotated[StrictInt, Field(ge=0, le=2**40)]], Field(max_length=8)]
    dtype: Literal["float16", "float32", "float64", "int64", "int32", "uint8", "bool"]


class BackboneBlock(_Block):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    kind: Optional[StrictStr] = None  # zoo, pooled or keras (the loader names them); none in the first files: zoo
    sha256: Sha256
    dim: Optional[Annotated[StrictInt, Field(ge=1, le=1_000_000)]] = None
    preprocessing: Optional[PreprocessingBlock] = None
    options: Optional[dict[str, Any]] = None


class HeadBlock(_Block):
    type: StrictStr
    params: Optional[dict[str, Any]] = None


class LearnedManifest(_Block):
    """``manifest.json`` of a ``.imagerec`` file (format and version are checked before it)."""

    format: Literal["imagerec-learned"]
    format_version: Annotated[StrictInt, Field(ge=1)]
    name: Optional[StrictStr] = None
    backbone: BackboneBlock
    preprocessing: Optional[PreprocessingBlock] = None
    labels: Labels
    head: HeadBlock
    threshold: Optional[Finite] = None
    calibration: Optional[dict[str, Any]] = None
    metrics: Optional[dict[str, Any]] = None
    training: Optional[dict[str, Any]] = None
    arrays: Annotated[dict[Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")], ArrayBlock],
                      Field(min_length=1, max_length=64)]


class ExportedMetadata(_Block):
    """The ``imagerec`` metadata entry of an exported ``.onnx`` or ``.tflite`` file."""

    labels: Labels
    preprocessing: PreprocessingBlock
    threshold: Optional[Finite] = None


class KerasMetadata(_Block):
    """``imagerec.json`` inside a ``.keras`` file that imagerec saved."""

    version: StrictInt
    classes: Optional[Labels] = None
    preprocessing: Optional[PreprocessingBlock] = None
    flip_average: StrictBool = False
    shift_average: Annotated[StrictInt, Field(ge=0, le=64)] = 0
    config: Optional[dict[str, Any]] = None
    metrics: Optional[dict[str, Any]] = None


def parse_json(raw: bytes | str, where: str, what: str) -> Any:
    """JSON with bounded nesting and numbers; one-line :class:`ModelFileError` otherwise."""
    try:
        return from_json(raw)
    except ValueError as exc:
        raise ModelFileError(f"{where}: its {what} is damaged (not valid JSON: {str(exc).splitlines()[0]})",
                             path=where) from None


def validate_block(data: Any, schema: type[Block], where: str, what: str) -> Block:
    """``data`` checked against ``schema``; the first problem as one line of :class:`ModelFileError`."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        place = ".".join(str(part) for part in first["loc"])
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        message = first["msg"].splitlines()[0]
        raise ModelFileError(f"{where}: its {what} is invalid: {place + ': ' if place else ''}{message}{more}",
                             path=where) from None


def parse_block(raw: bytes | str, schema: type[Block], where: str, what: str) -> Block:
    """:func:`parse_json` then :func:`validate_block`."""
    return validate_block(parse_json(raw, where, what), schema, where, what)
