"""Zoo models as backbones: a loaded recognizer's ``embedding`` output, run where it already runs.

A zoo model with an embedding output (``mobilenet_v2`` 1280-d,
``mobilenet_v1_embedder`` 1024-d) is its own backbone: :func:`zoo_backbone`
loads it by name, and :func:`backbone_from_recognizer` wraps a recognizer
that is already loaded, so a server reuses the model it holds instead of
loading it again. A learned recognizer gives back the backbone it was
learned on.

>>> from imagerec.transfer.backbones.zoo import zoo_backbone
>>> backbone = zoo_backbone("mobilenet_v2")
>>> backbone.kind, backbone.dim
('zoo', 1280)
"""

from __future__ import annotations

import numpy as np

from ...core.errors import UsageError
from ...formats.tflite import load_zoo
from .base import Backbone

__all__ = ["backbone_from_recognizer", "zoo_backbone"]


def zoo_backbone(name: str, *, num_threads: int | None = None) -> Backbone:
    """The zoo model ``name`` (its file's sha256 checked) as a backbone."""
    return backbone_from_recognizer(load_zoo(name, num_threads=num_threads))


def backbone_from_recognizer(recognizer, *, name: str | None = None, kind: str = "zoo", options: dict | None = None) -> Backbone:
    """Wrap a :class:`~imagerec.Recognizer` whose model has an embedding output.

    A learned recognizer gives back the backbone it was learned on (same
    name, sha256 and options, so the embedding cache keys match); a zoo
    recognizer is its own backbone.
    """
    backend = recognizer.backend
    described = getattr(recognizer, "metadata", {}).get("backbone") if getattr(recognizer, "head", None) is not None else None
    if described:
        return Backbone(
            name=described["name"], kind=described.get("kind", "zoo"), sha256=described["sha256"],
            preprocessing=recognizer.preprocessing, dim=int(described["dim"]),
            run=lambda batch: backend.run(batch, ("embedding",))["embedding"], backend=backend,
            options=dict(described.get("options") or {}),
        )
    if not recognizer.can_embed:
        raise UsageError(
            f"model {recognizer.name!r} has no embedding output, so it cannot serve as a backbone; "
            "use mobilenet_v2 or mobilenet_v1_embedder"
        )
    dim = int(backend.output_dim("embedding")) if hasattr(backend, "output_dim") else int(
        backend.run(np.zeros((1, *recognizer.preprocessing.size, 3), np.uint8), ("embedding",))["embedding"].shape[1]
    )
    return Backbone(
        name=name or recognizer.name,
        kind=kind,
        sha256=recognizer.sha256 or "",
        preprocessing=recognizer.preprocessing,
        dim=dim,
        run=lambda batch: backend.run(batch, ("embedding",))["embedding"],
        backend=backend,
        options=dict(options or {}),
    )
