"""Small classifiers on frozen embeddings, and the "unknown" threshold.

Three heads, all scikit-learn-style classifiers (``fit`` / ``predict_proba``
/ ``predict``, ``classes_``, ``get_params`` / ``set_params``, learned state
ending in ``_``; ``sklearn.base.clone`` works), all working on L2-normalised
embeddings and all saved as plain arrays (no pickled code):

- :class:`LogisticHead` — multinomial logistic regression; the regularisation
  strength ``C`` is chosen by stratified cross-validation.
- :class:`DenseHead` — the course's Keras head, ``Dense(units, relu)`` +
  ``Dropout(0.5)`` + ``Dense(classes, softmax)``; trained with Keras, run
  in NumPy (inference never goes through Keras eagerly).
- :class:`ImprintHead` — weight imprinting / nearest class mean: a class is
  the normalised mean of its examples' normalised embeddings, so one photo
  is enough and adding a class needs no training at all.

Every head has ``confidence(embeddings)``: the number the "unknown" threshold
is compared with — for every head, the cosine similarity to the nearest class
mean. (The best probability of a logistic or dense head is a poor test for
"none of these": trained to separate the taught classes, they give photos of
other things confident probabilities too. Measured on generated shapes with
three taught classes, a probability threshold rejected 30 % of an untaught
shape and 8 % of unrelated photos; the class-mean similarity rejected 100 %
of both.) :func:`calibrate` picks the threshold from held-out scores.

Every head also describes itself as :class:`DenseLayer` objects
(:meth:`Head.dense_layers`), which is all an export needs to rebuild it.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(1, 0.1, (5, 8)), rng.normal(-1, 0.1, (5, 8))])
>>> head = ImprintHead().fit(X, np.repeat([0, 1], 5), ["cat", "dog"])
>>> int(head.predict_proba(X[:1]).argmax()), head.classes_.tolist()
(0, ['cat', 'dog'])
>>> from imagerec.core.arrays import softmax
>>> x = l2_normalize(X[:1])
>>> for layer in head.dense_layers():
...     x = layer.apply(x)
>>> bool(np.allclose(softmax(x), head.predict_proba(X[:1]), atol=1e-6))
True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...core.arrays import l2_normalize
from ...core.errors import ModelFileError, UsageError
from .base import CLASS_WEIGHTS, DEFAULT_CLASS_WEIGHT, DenseLayer, Head, check_class_weight
from .calibration import Calibration, calibrate, held_out_scores
from .dense import DenseHead
from .imprint import ImprintHead
from .logistic import LogisticHead, one_standard_error_choice, shrunk_scale

__all__ = [
    "CLASS_WEIGHTS",
    "DEFAULT_CLASS_WEIGHT",
    "check_class_weight",
    "Head",
    "DenseLayer",
    "LogisticHead",
    "one_standard_error_choice",
    "shrunk_scale",
    "DenseHead",
    "ImprintHead",
    "HEADS",
    "make_head",
    "head_from_state",
    "l2_normalize",
    "Calibration",
    "calibrate",
    "held_out_scores",
]

# The head kinds by the name stored as the head "type" in .imagerec manifests.
HEADS: dict[str, type[Head]] = {"logistic": LogisticHead, "dense": DenseHead, "imprint": ImprintHead}


def make_head(kind: str | Head, **options) -> Head:
    """A new head by name (``"logistic"``, ``"dense"``, ``"imprint"``), or ``kind`` itself; ``options`` are its settings.

    An option the head does not take is a one-line ``UsageError``.

    >>> make_head("imprint").kind, make_head("logistic", class_weight="none").class_weight
    ('imprint', 'none')
    """
    if isinstance(kind, Head):
        # Options over a given head make a new one (checked by its constructor), never change the caller's.
        return make_head(kind.kind, **{**kind.get_params(), **options}) if options else kind
    if kind not in HEADS:
        raise UsageError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
    valid = HEADS[kind]._param_names()
    for name in options:
        if name == "class_weight" and name not in valid:
            raise UsageError(f"class weights apply to the logistic and dense heads; the {kind} head's class means "
                             "do not depend on how many photos a class has")
        if name not in valid:
            raise UsageError(f"the {kind} head has no option {name!r}; it takes {', '.join(valid)}")
    return HEADS[kind](**options)


def head_from_state(kind: str, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> Head:
    """Rebuild a fitted head from what :meth:`Head.params` and :meth:`Head.arrays` gave."""
    if kind not in HEADS:
        raise ModelFileError(f"unknown head type {kind!r} (known: {', '.join(HEADS)}); a newer imagerec may read it")
    try:
        return HEADS[kind].from_state(params, arrays, labels)
    except KeyError as exc:
        raise ModelFileError(f"the {kind} head is missing its {exc.args[0]!r} array or setting") from exc
    except TypeError as exc:
        raise ModelFileError(f"the {kind} head's settings are not valid ({exc})") from exc
