"""Teach a served model a new class from a few photos (the imprint head).

The first class taught under a new model name makes a learned recognizer
with :func:`imagerec.learn` (``head="imprint"``: a class is the mean of its
photos' embeddings, so a few photos are enough and nothing is trained); each
further class goes through :func:`imagerec.transfer.add_examples`. The new
recognizer then replaces the old one under the same name, so the next
request already recognises the class. Taught models live in memory until
the process stops.

>>> import asyncio
>>> registry = ModelRegistry(ServeConfig())
>>> teacher = Teacher(registry)
>>> shots = "../shared/photos/few-shot/"
>>> photos = [NamedImage(n, open(shots + n, "rb").read()) for n in ("hotdog_train_0.bmp", "hotdog_train_1.bmp")]
>>> host = asyncio.run(teacher.teach("snacks", "hot dog", photos))
>>> host.recognizer.labels
['hot dog']
>>> registry.close()
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Sequence

import numpy as np

from ..core.errors import ImageDecodeError, UsageError
from ..core.preprocessing import Preprocessing
from ..core.images import load_image
from ..transfer import add_examples, learn
from .config import ServeConfig
from .service import ModelHost, ModelRegistry, NamedImage, UploadTooLargeError

__all__ = ["Teacher", "DEFAULT_BACKBONE"]

DEFAULT_BACKBONE = "mobilenet_v2"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Teacher:
    """Adds classes to learned models in a :class:`ModelRegistry`, one at a time."""

    def __init__(self, registry: ModelRegistry, *, backbone: str = DEFAULT_BACKBONE) -> None:
        self.registry = registry
        self.config: ServeConfig = registry.config
        self.backbone = backbone
        self._lock = asyncio.Lock()
        self._taught: set[str] = set()
        self._created_by: dict[str, set[str]] = {}

    async def teach(self, model: str, label: str, images: Sequence[NamedImage], *, client: str | None = None) -> ModelHost:
        """Serve ``model`` with ``label`` learned from ``images``; returns its host.

        ``client`` (an anonymous caller's address) may create at most
        ``max_taught_per_client`` models, so no one caller fills every slot.
        """
        label = label.strip()
        if not label or len(label) > 100:
            raise UsageError("the class name must be 1 to 100 characters")
        if not _MODEL_NAME.match(model):
            raise UsageError(f"model name {model[:80]!r} must be letters, digits, '_', '.' or '-' (at most 64)")
        if not images:
            raise UsageError("no photos given: send one or more photos of the new class")
        if len(images) > self.config.max_images:
            raise UsageError(f"too many photos: {len(images)}, at most {self.config.max_images} per request")
        async with self._lock:  # two lessons at once must not lose one of them
            existing = self.registry.get(model).recognizer if model in self.registry else None
            if existing is not None and getattr(existing, "head", None) is None:
                raise UsageError(
                    f"{model!r} is a pretrained model and cannot learn new classes; teach into a new model name"
                )
            if existing is None and len(self._taught) >= self.config.max_taught_models:
                raise UsageError(
                    f"this server already holds {len(self._taught)} taught models (the limit); add classes to one of them"
                )
            mine = self._created_by.get(client, set()) if client is not None else set()
            if existing is None and client is not None and len(mine) >= self.config.max_taught_per_client:
                raise UsageError(
                    f"you already created {len(mine)} taught models (the limit per caller without an API key); "
                    f"add classes to {sorted(mine)[0]!r}"
                )
            preprocessing = existing.preprocessing if existing is not None else _backbone_preprocessing(self.backbone)
            loop = asyncio.get_running_loop()
            arrays = await asyncio.gather(
                *(loop.run_in_executor(self.registry.decode_pool, self._decode, image, preprocessing) for image in images)
            )
            recognizer = await loop.run_in_executor(None, self._learn, existing, model, label, list(arrays))
            # Replacing closes the old host, which finishes its queued images
            # first: done on a worker thread so the event loop never waits.
            host = await asyncio.to_thread(self.registry.add, model, recognizer, replace=existing is not None)
            if existing is None and client is not None:
                self._created_by.setdefault(client, set()).add(model)
            self._taught.add(model)
            return host

    def _decode(self, image: NamedImage, preprocessing: Preprocessing) -> np.ndarray:
        if image.error is not None:
            raise image.error
        if len(image.content) > self.config.max_image_bytes:
            raise UploadTooLargeError(
                f"image is {len(image.content):,} bytes, over the limit of {self.config.max_image_bytes:,} bytes",
                path=image.name,
            )
        stream = io.BytesIO(image.content)
        stream.name = image.name
        try:
            return load_image(stream, preprocessing, limits=self.config.limits)
        except MemoryError as exc:
            raise ImageDecodeError("out of memory while decoding", path=image.name) from exc

    def _learn(self, existing, model: str, label: str, arrays: list[np.ndarray]):
        # The photos are already decoded within the server's limits, so
        # learning sees pixel arrays only; nothing is cached on disk.
        data = {label: arrays}
        if existing is None:
            return learn(
                data, backbone=self.backbone, head="imprint", cache=False, progress=False, name=model,
                num_threads=self.config.num_threads,
            )
        return add_examples(existing, data, cache=False, progress=False)


def _backbone_preprocessing(name: str) -> Preprocessing:
    from .. import zoo

    return zoo.get(name).preprocessing
