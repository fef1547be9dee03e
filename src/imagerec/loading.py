"""``imagerec.load``: a recognizer for a zoo name or a model file, by an explicit table of formats.

Each file format owns a loader (``imagerec.formats.*`` and, for learned
recognizers, ``imagerec.transfer.learned``); this module is the only place
that knows them all, so nothing registers itself on import. Options are
checked: a setting any recognizer takes (``refine_margin``, ``workers``,
``batch_size``, ``threshold``) is applied to whatever is loaded, an option of
one format (``normalization`` for a plain ``.keras`` file) is passed to its
loader, and anything else is a one-line error rather than silently ignored.

>>> import imagerec
>>> imagerec.load("mobilenet_v2", refine_margin=0).refine_margin
0.0
>>> imagerec.load("mobilenet_v2", typo_option=1)
Traceback (most recent call last):
imagerec.core.errors.UsageError: unknown option typo_option for the zoo model 'mobilenet_v2'; it takes refine_margin, workers, batch_size, threshold

A name that looks like a file is a file (``pets.kears`` is a missing file, not
an unknown zoo model), and a mistyped zoo name gets a suggestion:

>>> imagerec.load("pets.kears")  # doctest: +ELLIPSIS
Traceback (most recent call last):
imagerec.core.errors.ModelFileError: pets.kears: no such model file (a model is a zoo name or a file ending in .tflite, .keras, ...)
>>> imagerec.load("mobilenetv2")  # doctest: +ELLIPSIS
Traceback (most recent call last):
imagerec.core.errors.UnknownModelError: no model named 'mobilenetv2'; did you mean 'mobilenet_v2' or 'mobilenet_v2_tf2'? known models: ...
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from . import zoo
from .core.errors import ModelFileError, UnknownModelError, UsageError
from .core.images import DEFAULT_LIMITS, Limits
from .formats import h5_recognizer as h5_format
from .formats import keras_recognizer as keras_format
from .formats import onnx as onnx_format
from .formats import tflite as tflite_format
from .recognizer import SETTINGS, Recognizer
from .transfer import learned as learned_format

__all__ = ["load", "Format", "FORMATS", "format_for"]


@dataclass(frozen=True)
class Format:
    """One kind of model file: its suffix, what it is, its loader and the options only it takes."""

    suffix: str
    what: str
    loader: Callable[..., Recognizer]
    options: tuple[str, ...] = ()
    takes_labels: bool = False


FORMATS: tuple[Format, ...] = (
    Format(".tflite", "a TensorFlow Lite model", tflite_format.load_tflite, ("normalization",), takes_labels=True),
    Format(".keras", "a Keras model", keras_format.load_recognizer, ("normalization",), takes_labels=True),
    Format(".onnx", "an ONNX model exported by imagerec", onnx_format.load_exported_onnx, takes_labels=True),
    Format(".h5", "a Keras 2 model", h5_format.load_h5, ("normalization", "architecture"), takes_labels=True),
    Format(learned_format.SUFFIX, "a learned recognizer", learned_format.load_learned),
)


def format_for(model: str | os.PathLike[str]) -> Format | None:
    """The :class:`Format` of a model file by its suffix; None for a zoo name.

    >>> format_for("cats.imagerec").what
    'a learned recognizer'
    >>> format_for("mobilenet_v2") is None
    True
    """
    text = os.fspath(model)
    suffix = Path(text).suffix.lower()
    for candidate in FORMATS:
        if candidate.suffix == suffix:
            return candidate
    if text in zoo_names():
        return None
    known = ", ".join(f.suffix for f in FORMATS)
    if Path(text).exists():
        raise UsageError(f"{text}: not a model imagerec can load (expected a zoo name or a file ending in {known})")
    if os.sep in text or "/" in text or suffix:
        # Zoo names have no dots or slashes: this was meant as a file.
        raise ModelFileError(f"{text}: no such model file (a model is a zoo name or a file ending in {known})", path=text)
    return None


def zoo_names() -> list[str]:
    """Every name and alias the zoo answers to.

    >>> "mobilenet_v2" in zoo_names()
    True
    """
    return [name for spec in zoo.list_models() for name in (spec.name, *spec.aliases)]


def _did_you_mean(name: str, exc: UnknownModelError) -> UnknownModelError:
    """``exc`` with the closest zoo names suggested, as for mistyped command names."""
    close = difflib.get_close_matches(name, zoo_names(), n=2, cutoff=0.6)
    if not close:
        return exc
    hint = " or ".join(repr(candidate) for candidate in close)
    message = str(exc.args[0] if exc.args else exc).replace(f"{name!r};", f"{name!r}; did you mean {hint}?", 1)
    return UnknownModelError(message, name=name)


def load(
    model: str | os.PathLike[str] = "mobilenet_v2",
    *,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    num_threads: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    **options: Any,
) -> Recognizer:
    """A :class:`~imagerec.recognizer.Recognizer` for a zoo model name or a model file.

    ``labels`` (a label file or a list) names the classes of a ``.tflite``,
    ``.keras`` or exported ``.onnx`` classifier; ``num_threads`` is the inference
    threads; ``limits`` bounds what a decode may cost. ``options`` are the
    recognizer settings in :data:`imagerec.recognizer.SETTINGS` and the
    options of the file's own format.

    >>> load("mobilenet_v1_embedder").can_embed
    True
    """
    settings = {key: options.pop(key) for key in list(options) if key in SETTINGS}
    kind = format_for(model)
    accepted = kind.options if kind is not None else ()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        what = f"{kind.what} ({os.fspath(model)})" if kind is not None else f"the zoo model {os.fspath(model)!r}"
        plural = "s" if len(unknown) > 1 else ""
        raise UsageError(f"unknown option{plural} {', '.join(unknown)} for {what}; it takes {', '.join(SETTINGS + accepted)}")
    if labels is not None and not (kind is not None and kind.takes_labels):
        what = kind.what if kind is not None else "a zoo model"
        raise UsageError(f"labels= is only for .tflite, .keras and .onnx classifiers; {what} brings its own")
    if kind is None:
        try:
            recognizer = tflite_format.load_zoo(os.fspath(model), num_threads=num_threads, limits=limits)
        except UnknownModelError as exc:
            raise _did_you_mean(os.fspath(model), exc) from None
    elif kind.takes_labels:
        recognizer = kind.loader(model, labels=labels, num_threads=num_threads, limits=limits, **options)
    else:
        recognizer = kind.loader(model, num_threads=num_threads, limits=limits, **options)
    return recognizer.configure(**settings)
