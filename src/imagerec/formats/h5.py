"""Keras 2 HDF5 model files (``model.save("model.h5")``, Teachable Machine's ``keras_model.h5``) rebuilt in Keras 3.

Keras 3 refuses most files Keras 2 (``tf.keras``) wrote: their layer configs
carry arguments Keras 3 no longer takes (``groups`` on ``DepthwiseConv2D``,
``ragged`` on inputs...) and its legacy loader stumbles on nested models
(Teachable Machine's ``Sequential`` inside a ``Sequential``). This module
reads the file with h5py, rewrites the architecture into what Keras 3 takes
(:func:`keras3_config`), builds it on the torch backend, and copies every
weight by layer name (:func:`copy_weights`): the HDF5 layout names each
weight ``<layer>/<weight>:0`` inside the group of its top-level layer, so
nested models need no guessing about order.

A weights-only file (``model.save_weights("w.h5")``) has no architecture:
:func:`load_h5_model` takes one then, as a Keras model (e.g. the course's
network built again in code).

Safety: the architecture is JSON, but a ``Lambda`` layer in it carries
Python bytecode; such files are refused, as Keras's safe mode would.

>>> import json
>>> old = {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 1, "kernel_size": [3, 3]}}
>>> keras3_config(old)["config"]
{'name': 'dw', 'kernel_size': [3, 3]}
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelFileError
from ..core.keras_backend import import_keras

__all__ = ["H5File", "read_h5", "keras3_config", "load_h5_model", "copy_weights", "is_h5"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Arguments Keras 2 wrote that Keras 3 refuses, by layer class ("*": every layer).
_DROPPED_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "*": ("ragged",),
    "DepthwiseConv2D": ("groups",),  # always 1 there; Keras 3's DepthwiseConv2D has no such argument
    "InputLayer": ("ragged",),
}
_REFUSED_LAYERS = ("Lambda", "TFOpLambda", "SlicingOpLambda")  # Python code or TensorFlow ops inside


class H5File:
    """What a Keras 2 HDF5 file holds: its architecture (if any), Keras version and weight groups."""

    def __init__(self, path: Path, config: dict | None, keras_version: str | None, layer_names: list[str]) -> None:
        self.path = path
        self.config = config
        self.keras_version = keras_version
        self.layer_names = layer_names

    @property
    def has_architecture(self) -> bool:
        return self.config is not None


def is_h5(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with the HDF5 signature.

    >>> is_h5(__file__)
    False
    """
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_h5(path: str | os.PathLike[str]) -> H5File:
    """Read the architecture and the list of weight groups of a Keras 2 ``.h5`` file (no weights yet)."""
    import h5py

    where = Path(path)
    if not where.is_file():
        raise ModelFileError(f"{where}: no such model file", path=str(where))
    if not is_h5(where):
        raise ModelFileError(f"{where}: not an HDF5 file (a Keras 2 .h5 model starts with the HDF5 signature)",
                             path=str(where))
    try:
        with h5py.File(where, "r") as handle:
            raw = handle.attrs.get("model_config")
            config = json.loads(_text(raw)) if raw is not None else None
            weights = handle["model_weights"] if "model_weights" in handle else handle
            names = [_text(name) for name in weights.attrs.get("layer_names", [])]
            version = handle.attrs.get("keras_version")
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{where}: not a readable Keras .h5 file ({exc})", path=str(where)) from exc
    if config is None and not names:
        raise ModelFileError(f"{where}: an HDF5 file, but not one Keras wrote (no model config, no layer weights)",
                             path=str(where))
    return H5File(where, config, _text(version) if version is not None else None, names)


def keras3_config(config: Any) -> Any:
    """A Keras 2 architecture (the JSON dict in ``model_config``) rewritten into one Keras 3 builds."""
    if isinstance(config, list):
        return [keras3_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    out = {key: keras3_config(value) for key, value in config.items()}
    kind = out.get("class_name")
    if isinstance(kind, str) and isinstance(out.get("config"), dict):
        if kind in _REFUSED_LAYERS:
            raise ModelFileError(
                f"the model contains a {kind} layer (Python code or TensorFlow operations) that imagerec will not run"
            )
        # Keras 2.13+ names modules ("tf_keras.src.engine.functional") Keras 3 does not have;
        # without them Keras 3 reads the config the legacy way, which knows Keras 2's layout.
        out.pop("module", None)
        out.pop("registered_name", None)
        layer = dict(out["config"])
        for name in (*_DROPPED_ARGUMENTS.get("*", ()), *_DROPPED_ARGUMENTS.get(kind, ())):
            layer.pop(name, None)
        for ends in ("input_layers", "output_layers"):
            # Keras 2 returned a lone tensor from a model with one output; Keras 3 keeps
            # a list of one as a list, which the next layer cannot take.
            value = layer.get(ends)
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
                layer[ends] = value[0]
        out["config"] = layer
    return out


def load_h5_model(path: str | os.PathLike[str], *, architecture: Any = None) -> Any:
    """The Keras 3 model of a Keras 2 ``.h5`` file, weights loaded.

    ``architecture`` (a Keras model) is needed, and used, for a weights-only file.
    """
    keras = import_keras()
    info = read_h5(path)
    if architecture is not None:
        model = architecture
    elif info.config is None:
        raise ModelFileError(
            f"{info.path}: holds weights only (model.save_weights); build the network in code and pass it "
            "as architecture=, or save the whole model with model.save()",
            path=str(info.path),
        )
    else:
        try:
            model = _build(keras, keras3_config(info.config))
        except ModelFileError as exc:
            raise ModelFileError(f"{info.path}: {exc}", path=str(info.path)) from exc
        except Exception as exc:  # Keras raises TypeError / ValueError for configs it cannot build
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise ModelFileError(
                f"{info.path}: Keras 3 cannot rebuild this Keras {info.keras_version or '2'} architecture ({first})",
                path=str(info.path),
            ) from exc
    copy_weights(info, model)
    return model


def _build(keras: Any, config: dict) -> Any:
    """The model of a Keras 2 architecture, through Keras 3's public ``from_config`` (it reads the legacy layout)."""
    builders = {"Sequential": keras.Sequential, "Functional": keras.Model, "Model": keras.Model}
    kind = config.get("class_name")
    if kind not in builders:
        raise ModelFileError(f"expected a Sequential or Functional model, the file holds a {kind}")
    with warnings.catch_warnings():
        # Keras 2 configs give layers input_shape=, which Keras 3 builds with and warns about.
        warnings.filterwarnings("ignore", message=".*input_shape.*", category=UserWarning)
        return builders[kind].from_config(config["config"])


def copy_weights(info: H5File, model: Any) -> None:
    """Set every weight of ``model`` from the file, matched by layer name (nested models included)."""
    import h5py

    leaves = _leaf_layers(model)
    try:
        with h5py.File(info.path, "r") as handle:
            root = handle["model_weights"] if "model_weights" in handle else handle
            stored: dict[str, list[np.ndarray]] = {}
            for group_name in info.layer_names:
                group = root[group_name]
                for weight_name in (_text(n) for n in group.attrs.get("weight_names", [])):
                    layer_name = weight_name.rsplit("/", 2)[-2] if "/" in weight_name else group_name
                    stored.setdefault(layer_name, []).append(np.asarray(group[weight_name]))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"{info.path}: its weights cannot be read ({exc})", path=str(info.path)) from exc
    missing = [name for name, layer in leaves.items() if layer.weights and name not in stored]
    if missing:
        raise ModelFileError(
            f"{info.path}: no weights for layer{'s' if len(missing) > 1 else ''} {', '.join(missing[:5])} "
            "(the file and the architecture do not match)",
            path=str(info.path),
        )
    for name, layer in leaves.items():
        if not layer.weights:
            continue
        values = stored[name]
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise ModelFileError(
                f"{info.path}: layer {name} wants weights of shapes {shapes}, the file has "
                f"{[tuple(v.shape) for v in values]}",
                path=str(info.path),
            )
        layer.set_weights(values)


def _leaf_layers(model: Any) -> dict[str, Any]:
    """Every layer that is not itself a model, by name, depth first (nested models opened)."""
    found: dict[str, Any] = {}
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and layer.layers:
            found.update(_leaf_layers(layer))
        else:
            found[layer.name] = layer
    return found
