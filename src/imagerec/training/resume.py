"""The resume state of a training run: the ``.state.pt`` file, where it lives, and the checks before resuming.

The state of a run saving its model to ``pets.keras`` is kept in imagerec's
cache folder (``training/`` beside the zoo's ``models/``; see
:func:`state_path_for`), not beside the model: it is tens of megabytes a
user did not ask for. ``train --resume`` with the same output finds it.

The state is a dict of tensors and plain values (weights, optimizer state,
history, where in the epoch the run stopped) saved with ``torch.save`` and
read back with ``weights_only=True``, so reading one never unpickles code.
It is written atomically (:func:`imagerec.core.fs.atomic_path`): a Ctrl-C
while saving leaves the previous state whole. A run resumes only with the
same data, settings (but those in
:data:`~imagerec.training.config.RESUMABLE_CHANGES`) and model; what
differs is named.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "model.keras.state.pt")
>>> write_state(path, {"version": STATE_VERSION, "epoch": 2})
>>> read_state(path)["epoch"]
2
>>> state_path_for("pets.keras").parent.name, state_path_for("pets.keras").name.startswith("pets.keras.")
('training', True)
>>> model_difference(None, [], [(3, 3)], [(3, 4)])
'a weight of shape [3, 3] is [3, 4] now'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from .. import zoo
from ..core.errors import ImagerecError, UsageError
from ..core.fs import atomic_path
from .config import RESUMABLE_CHANGES, TrainConfig

__all__ = ["STATE_VERSION", "adopt_legacy_state", "state_path_for", "check_same_run", "model_difference", "model_signature", "read_state", "write_state"]

STATE_VERSION = 1


def state_path_for(model: str | os.PathLike[str]) -> Path:
    """Where the resume state of a run saving its model to ``model`` lives: the cache, keyed by the absolute path."""
    where = Path(model).resolve()
    key = hashlib.sha256(os.fspath(where).encode()).hexdigest()[:16]
    return zoo.cache_dir().parent / "training" / f"{where.name}.{key}.state.pt"


def adopt_legacy_state(model: str | os.PathLike[str], state: Path, *, resume: bool) -> None:
    """Move a state file that an earlier version left beside ``model`` to ``state`` (resuming),
    or remove it (a new run replaces it, as it always did)."""
    legacy = Path(model).with_name(Path(model).name + ".state.pt")
    if not legacy.is_file():
        return
    if resume and not state.is_file():
        state.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(legacy, state)
    else:
        legacy.unlink(missing_ok=True)


def write_state(path: str | os.PathLike[str], state: dict) -> None:
    """Save ``state`` to ``path`` atomically (readable by all, as the model beside it)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_state(path: str | os.PathLike[str]) -> dict:
    """The state saved at ``path``; a one-line error if there is none, or it is unreadable or of another version."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no saved state to resume from (train once without --resume)")
    try:
        state = torch.load(path, weights_only=True)  # never unpickles arbitrary objects
    except Exception as exc:
        raise ImagerecError(f"{path}: unreadable resume state ({exc}); delete it to start over", path=str(path)) from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise ImagerecError(f"{path}: resume state version {version} is not {STATE_VERSION}; delete it to start over",
                            path=str(path))
    return state


# Settings whose default trains differently from runs saved before the setting existed.
SETTINGS_BEFORE_THEY_EXISTED = {"class_weight": "none"}


def check_same_run(state: dict, *, path: Path, config: TrainConfig, classes: Sequence[str], data_digest: str,
                   model: Any, variables: Sequence[Any]) -> None:
    """Refuse to resume a run whose data, settings or model differ from the saved ones, naming what differs."""
    if state["classes"] != list(classes) or state["data"] != data_digest:
        raise UsageError(f"{path}: saved for a different dataset or split; "
                         "resume with the same data, --val-fraction and --seed (or delete the state)")

    def plain(value: Any) -> Any:  # tuples and lists compare equal, as they do once saved as JSON
        return json.loads(json.dumps(value, sort_keys=True, default=str))

    saved, current = state["config"], config.to_dict()
    # A setting added after the state was saved had its default then, or, where the
    # default changed the training, the value that trains as those runs did.
    saved = {**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}, **SETTINGS_BEFORE_THEY_EXISTED,
             **saved}
    differ = [key for key in current if key not in RESUMABLE_CHANGES and plain(saved.get(key)) != plain(current[key])]
    if differ:
        was = ", ".join(f"{key}={saved.get(key)!r}" for key in differ)
        now = ", ".join(f"{key}={current[key]!r}" for key in differ)
        raise UsageError(f"{path}: the run used {was}, not {now}; resume with the same settings "
                         "(only epochs, patience and the time budget may change) or delete the state")
    difference = model_difference(state.get("model"), model_signature(model),
                                  [tuple(w.shape) for w in state["weights"]], [tuple(v.shape) for v in variables])
    if difference:
        raise UsageError(f"{path}: the model differs from the saved run's ({difference}); "
                         "resume with the same model and settings or delete the state")


def model_signature(model: Any) -> list[str]:
    """Each layer's class, configuration (without its name) and weight shapes, as JSON strings.

    Layer names are left out: Keras numbers unnamed layers per process, so
    the same model built twice gets different names.
    """
    signature = []
    for layer in model.layers:
        try:
            config = {k: v for k, v in layer.get_config().items() if k != "name"}
        except Exception:  # noqa: BLE001 -- a layer that cannot describe itself is compared by its weights only
            config = {}
        entry = {"layer": type(layer).__name__, "config": config, "weights": [list(w.shape) for w in layer.weights]}
        signature.append(json.dumps(entry, sort_keys=True, default=str))
    return signature


def model_difference(saved: list[str] | None, current: list[str], saved_shapes: Sequence[tuple],
                     current_shapes: Sequence[tuple]) -> str | None:
    """What differs between two model signatures (or weight shapes, for states without one), or None."""
    if saved is not None and saved != current:
        if len(saved) != len(current):
            return f"{len(saved)} layers then, {len(current)} now"
        for number, (was, now) in enumerate(zip(saved, current), start=1):
            if was == now:
                continue
            was_d, now_d = json.loads(was), json.loads(now)
            if was_d["layer"] != now_d["layer"]:
                return f"layer {number} was a {was_d['layer']}, now a {now_d['layer']}"
            for key in sorted(set(was_d["config"]) | set(now_d["config"])):
                if was_d["config"].get(key) != now_d["config"].get(key):
                    return (f"layer {number} ({now_d['layer']}) had {key}={was_d['config'].get(key)!r}, "
                            f"now {now_d['config'].get(key)!r}")
            return f"layer {number} ({now_d['layer']}) had weights {was_d['weights']}, now {now_d['weights']}"
    if len(saved_shapes) != len(current_shapes):
        return f"{len(saved_shapes)} weight tensors then, {len(current_shapes)} now"
    for was, now in zip(saved_shapes, current_shapes):
        if was != now:
            return f"a weight of shape {list(was)} is {list(now)} now"
    return None
