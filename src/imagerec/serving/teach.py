"""Teach served models classes from a few photos, and change what they were taught.

The first class taught under a new model name makes a learned recognizer
with :func:`imagerec.learn` (``head="imprint"``: a class is the mean of its
photos' embeddings, so a few photos are enough and nothing is trained); each
further lesson goes through :func:`imagerec.transfer.add_examples`. Every
photo is kept as an :class:`~imagerec.transfer.examples.Example` (a 96-pixel
thumbnail and its embedding, under a stable id), so an example can be
removed and a class renamed or deleted (:mod:`imagerec.transfer.examples`),
and after every change the model's card carries a leave-one-out estimate
(:mod:`imagerec.transfer.estimate`). The new recognizer replaces the old one
under the same name, so the next request already answers with it.

Taught models live in memory; :meth:`Teacher.keep` writes one to the
server's ``taught_dir`` (``imagerec serve --taught-dir DIR``), again after
every change, and the next start loads it. On a keyed server a taught model
belongs to the key that made it (its *scope*): the same name under two keys
is two models.

>>> import asyncio
>>> registry = ModelRegistry(ServeConfig())
>>> teacher = Teacher(registry)
>>> shots = "../shared/photos/few-shot/"
>>> photos = [NamedImage(n, open(shots + n, "rb").read()) for n in ("hotdog_train_0.bmp", "hotdog_train_1.bmp")]
>>> host = asyncio.run(teacher.teach("snacks", "hot dog", photos))
>>> host.recognizer.labels
['hot dog']
>>> [(c["label"], c["count"], len(c["examples"])) for c in teacher.card("snacks")["classes"]]
[('hot dog', 2, 2)]
>>> registry.close()
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import re
import secrets
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from ..core.errors import ImageDecodeError, UnknownModelError, UsageError
from ..core.images import load_pil
from ..core.preprocessing import Preprocessing
from ..recognizer import Recognizer
from ..transfer import add_examples, learn, recalibrated
from ..transfer.backbones import backbone_from_recognizer
from ..transfer.estimate import Estimate, enough_examples, leave_one_out
from ..transfer.examples import Example, check_label, relabel, without_class, without_examples
from ..transfer.features import extract
from ..transfer.heads import ImprintHead
from .config import ServeConfig
from .service import ModelHost, ModelRegistry, NamedImage, UploadTooLargeError
from .taught_store import TaughtStore

__all__ = ["Teacher", "DEFAULT_BACKBONE", "NotTaughtError", "THUMBNAIL_SIDE"]

DEFAULT_BACKBONE = "mobilenet_v2"
THUMBNAIL_SIDE = 96  # the long side of an example's thumbnail on the card
MAX_EXAMPLES_PER_MODEL = 1000  # ~8 kB each (embedding and thumbnail), and the card carries every thumbnail
# A head other than imprint is refitted once per held-out example: above this the card shows no estimate.
MAX_REFITTED_ESTIMATE = 200
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class NotTaughtError(UnknownModelError):
    """No taught model, class or example by that name or id (HTTP 404)."""


@dataclass
class Taught:
    """One taught model as the server holds it: where it is served, its examples, whether it is kept."""

    name: str
    scope: str | None
    host: ModelHost
    examples: list[Example] = field(default_factory=list)
    kept: bool = False
    estimate: Estimate | None = None

    @property
    def recognizer(self) -> Recognizer:
        return self.host.recognizer


class _MemoryCache:
    """An embedding cache for one lesson: what learning embedded is read back, not embedded again."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {key: self.rows[key] for key in keys if key in self.rows}

    def put(self, items: dict[str, np.ndarray]) -> None:
        self.rows.update(items)


class Teacher:
    """Teaches, changes, keeps and forgets the taught models of a :class:`ModelRegistry`, one change at a time."""

    def __init__(self, registry: ModelRegistry, *, backbone: str = DEFAULT_BACKBONE) -> None:
        self.registry = registry
        self.config: ServeConfig = registry.config
        self.backbone = backbone
        self._lock = asyncio.Lock()
        self._models: dict[tuple[str | None, str], Taught] = {}
        self._created_by: dict[str, set[str]] = {}
        self.store = TaughtStore(self.config.taught_dir) if self.config.taught_dir else None
        if self.store is not None:
            self._load_kept()

    # -- teaching --------------------------------------------------------------------

    async def teach(self, model: str, label: str, images: Sequence[NamedImage], *, client: str | None = None,
                    scope: str | None = None) -> ModelHost:
        """Serve ``model`` with ``label`` learned from ``images``; returns its host.

        ``client`` (an anonymous caller's address) may create at most
        ``max_taught_per_client`` models, so no one caller fills every slot.
        """
        label = check_label(label)
        _check_model_name(model)
        if not images:
            raise UsageError("no photos given: send one or more photos of the new class")
        if len(images) > self.config.max_images:
            raise UsageError(f"too many photos: {len(images)}, at most {self.config.max_images} per request")
        async with self._lock:  # two lessons at once must not lose one of them
            taught = self._models.get((scope, model))
            base = taught.recognizer if taught is not None else self._base(model, scope)
            if taught is None:
                self._check_room(model, client)
            elif len(taught.examples) + len(images) > MAX_EXAMPLES_PER_MODEL:
                raise UsageError(f"{model!r} has {len(taught.examples)} examples; a taught model keeps at most "
                                 f"{MAX_EXAMPLES_PER_MODEL} (remove some, or teach into a new model)")
            preprocessing = base.preprocessing if base is not None else _backbone_preprocessing(self.backbone)
            loop = asyncio.get_running_loop()
            decoded = await asyncio.gather(
                *(loop.run_in_executor(self.registry.decode_pool, self._decode, image, preprocessing) for image in images)
            )
            pictures = [picture for picture, _ in decoded]
            recognizer, embeddings, ok = await loop.run_in_executor(None, self._learn, base, model, label, pictures)
            new = [Example(_new_id(), label, embedding, thumbnail)
                   for embedding, (_, thumbnail), good in zip(embeddings, decoded, ok) if good]
            examples = (taught.examples if taught is not None else []) + new
            taught = await self._commit(model, scope, recognizer, examples, taught)
            if client is not None:
                self._created_by.setdefault(client, set()).add(model)
            return taught.host

    def _base(self, model: str, scope: str | None) -> Recognizer | None:
        """A served model that is not (yet) taught here, to teach more into; None for a new name."""
        if not self.registry.has(model, scope):
            return None
        existing = self.registry.get(model, scope=scope).recognizer
        if getattr(existing, "head", None) is None:
            raise UsageError(f"{model!r} is a pretrained model and cannot learn new classes; teach into a new model name")
        return existing

    def _check_room(self, model: str, client: str | None) -> None:
        if len(self._models) >= self.config.max_taught_models:
            raise UsageError(
                f"this server already holds {len(self._models)} taught models (the limit); add classes to one of them"
            )
        mine = self._created_by.get(client, set()) if client is not None else set()
        if client is not None and model not in mine and len(mine) >= self.config.max_taught_per_client:
            raise UsageError(
                f"you already created {len(mine)} taught models (the limit per caller without an API key); "
                f"add classes to {sorted(mine)[0]!r}"
            )

    def _decode(self, image: NamedImage, preprocessing: Preprocessing) -> tuple[Image.Image, bytes]:
        """The photo, no larger than twice the model's input (learning frames it as predictions do), and its thumbnail."""
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
            picture = load_pil(stream, dataclasses.replace(preprocessing, frame=0), limits=self.config.limits)
            side = 2 * max(preprocessing.size)
            picture.thumbnail((side, side))  # bounded memory while the lesson's photos wait
            small = picture.copy()
            small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            jpeg = io.BytesIO()
            small.save(jpeg, "JPEG", quality=80)
        except MemoryError as exc:
            raise ImageDecodeError("out of memory while decoding", path=image.name) from exc
        return picture, jpeg.getvalue()

    def _learn(self, base: Recognizer | None, model: str, label: str, pictures: list[Image.Image]):
        """``(recognizer, embedding of each picture, whether each was learned)``; every picture is embedded once."""
        memory = _MemoryCache()
        data = {label: pictures}
        if base is None:
            recognizer = learn(
                data, backbone=self.backbone, head="imprint", cache=memory, progress=False, name=model,
                num_threads=self.config.num_threads,
            )
        else:
            recognizer = add_examples(base, data, cache=memory, progress=False)
            recognizer.name = model
        # The same backbone and pictures: read from the lesson's cache, not embedded again.
        found = extract(pictures, backbone_from_recognizer(recognizer), cache=memory, progress=False)
        return recognizer, found.embeddings[:, 0], found.ok

    # -- the card --------------------------------------------------------------------

    def card(self, model: str, scope: str | None = None) -> dict:
        """What the teaching page shows of ``model``: classes, example thumbnails, the estimate."""
        return _card(self._taught(model, scope))

    def _taught(self, model: str, scope: str | None) -> Taught:
        taught = self._models.get((scope, model))
        if taught is None:
            raise NotTaughtError(f"no taught model named {model[:80]!r}; teach it a class first", name=model)
        return taught

    # -- changing what was taught ----------------------------------------------------

    async def remove_example(self, model: str, example_id: str, scope: str | None = None) -> dict | None:
        """Forget one example; the card, or None when that emptied the model (it is then deleted)."""
        async with self._lock:
            taught = self._taught(model, scope)
            example = next((e for e in taught.examples if e.id == example_id), None)
            if example is None:
                raise NotTaughtError(f"model {model!r} has no example with id {example_id[:80]!r}", name=model)
            if taught.recognizer.labels == [example.label] and int(taught.recognizer.head.class_counts_[0]) == 1:
                await self._forget(taught)
                return None
            recognizer = await asyncio.to_thread(
                without_examples, taught.recognizer, example.embedding[None, :], [example.label]
            )
            rest = [e for e in taught.examples if e.id != example_id]
            return _card(await self._commit(model, scope, recognizer, rest, taught))

    async def rename_class(self, model: str, label: str, new: str, scope: str | None = None) -> dict:
        """Call class ``label`` ``new``; its examples follow it."""
        async with self._lock:
            taught = self._taught(model, scope)
            self._check_class(taught, label)
            recognizer = relabel(taught.recognizer, label, new)
            new = check_label(new)
            examples = [dataclasses.replace(e, label=new) if e.label == label else e for e in taught.examples]
            return _card(await self._commit(model, scope, recognizer, examples, taught))

    async def delete_class(self, model: str, label: str, scope: str | None = None) -> dict | None:
        """Forget class ``label``; the card, or None when it was the last class (the model is then deleted)."""
        async with self._lock:
            taught = self._taught(model, scope)
            self._check_class(taught, label)
            if taught.recognizer.labels == [label]:
                await self._forget(taught)
                return None
            recognizer = await asyncio.to_thread(without_class, taught.recognizer, label)
            examples = [e for e in taught.examples if e.label != label]
            return _card(await self._commit(model, scope, recognizer, examples, taught))

    async def delete_model(self, model: str, scope: str | None = None) -> None:
        """Stop serving ``model`` and forget it, its kept file too."""
        async with self._lock:
            await self._forget(self._taught(model, scope))

    async def open_model(self, model: str, recognizer: Recognizer, examples: list[Example], *,
                         scope: str | None = None, client: str | None = None) -> dict:
        """Serve an opened learned recognizer (a ``.imagerec`` file) as taught model ``model``; its card."""
        _check_model_name(model)
        async with self._lock:
            taught = self._models.get((scope, model))
            if taught is None:
                if self.registry.has(model, scope):
                    raise UsageError(f"{model!r} is already served here and not a taught model; open the file as another name")
                self._check_room(model, client)
            recognizer.name = model
            taught = await self._commit(model, scope, recognizer, examples, taught)
            if client is not None:
                self._created_by.setdefault(client, set()).add(model)
            return _card(taught)

    async def keep(self, model: str, scope: str | None = None) -> dict:
        """Save ``model`` in the taught folder, now and after every change, so the next start serves it again."""
        async with self._lock:
            taught = self._taught(model, scope)
            if self.store is None:
                raise UsageError("this server keeps no taught models: start it with imagerec serve --taught-dir DIR")
            await asyncio.to_thread(self.store.save, taught.recognizer, taught.examples, scope, model)
            taught.kept = True
            return _card(taught)

    def _check_class(self, taught: Taught, label: str) -> None:
        if label not in taught.recognizer.labels:
            raise NotTaughtError(f"model {taught.name!r} has no class named {label[:100]!r}; classes: "
                                 f"{', '.join(taught.recognizer.labels)}", name=taught.name)

    async def _commit(self, model: str, scope: str | None, recognizer: Recognizer, examples: list[Example],
                      taught: Taught | None) -> Taught:
        """Serve ``recognizer`` as ``model`` with ``examples``: kept file first (a failed save changes nothing), then the host."""
        recognizer = await asyncio.to_thread(_recalibrated, recognizer, examples)
        estimate = await asyncio.to_thread(_estimate, recognizer, examples)
        if taught is not None and taught.kept and self.store is not None:
            await asyncio.to_thread(self.store.save, recognizer, examples, scope, model)
        # Replacing closes the old host, which finishes its queued images
        # first: done on a worker thread so the event loop never waits.
        replace = taught is not None or self.registry.has(model, scope)
        host = await asyncio.to_thread(self.registry.add, model, recognizer, replace=replace, scope=scope)
        kept = taught.kept if taught is not None else False
        taught = Taught(model, scope, host, list(examples), kept, estimate)
        self._models[(scope, model)] = taught
        return taught

    async def _forget(self, taught: Taught) -> None:
        if taught.kept and self.store is not None:
            await asyncio.to_thread(self.store.delete, taught.scope, taught.name)
        self._models.pop((taught.scope, taught.name), None)
        await asyncio.to_thread(self.registry.remove, taught.name, scope=taught.scope)
        for models in self._created_by.values():
            models.discard(taught.name)

    # -- kept models at start --------------------------------------------------------

    def _load_kept(self) -> None:
        """Serve every kept model the configured keys can reach; a file that cannot be read is skipped with a warning."""
        for scope, name, recognizer, examples in self.store.load_all(self.config, _MODEL_NAME):
            if self.registry.has(name, scope) or len(self._models) >= self.config.max_taught_models:
                self.store.skip(name, "its name is taken or the taught-model limit is reached")
                continue
            recognizer.name = name
            host = self.registry.add(name, recognizer, scope=scope)
            self._models[(scope, name)] = Taught(name, scope, host, examples, True, _estimate(recognizer, examples))


def _check_model_name(model: str) -> None:
    if not _MODEL_NAME.match(model):
        raise UsageError(f"model name {model[:80]!r} must be letters, digits, '_', '.' or '-' (at most 64)")


def _new_id() -> str:
    return secrets.token_urlsafe(9)  # 12 characters of [A-Za-z0-9_-]


def _estimate(recognizer: Recognizer, examples: list[Example]) -> Estimate | None:
    labels = [e.label for e in examples]
    head = getattr(recognizer, "head", None)
    if not enough_examples(labels) or head is None:
        return None
    if not isinstance(head, ImprintHead) and len(examples) > MAX_REFITTED_ESTIMATE:
        return None
    return leave_one_out(np.stack([e.embedding for e in examples]), labels, recognizer.head)


def _recalibrated(recognizer: Recognizer, examples: list[Example]) -> Recognizer:
    """The "unknown" threshold measured again on every kept example (the imprint head keeps none itself).

    Only when every class has its examples here: a model opened from a file
    without them keeps the threshold it came with.
    """
    if not examples or {e.label for e in examples} != set(recognizer.labels):
        return recognizer
    return recalibrated(recognizer, np.stack([e.embedding for e in examples]), [e.label for e in examples])


def _card(taught: Taught) -> dict:
    recognizer = taught.recognizer
    counts = np.asarray(recognizer.head.class_counts_)
    classes = []
    for label, count in zip(recognizer.labels, counts):
        mine = [e for e in taught.examples if e.label == label]
        classes.append({
            "label": label, "count": max(int(count), len(mine)),
            "examples": [{"id": e.id, "thumbnail": _data_url(e.thumbnail)} for e in mine],
        })
    return {
        "model": taught.name, "backbone": (recognizer.metadata.get("backbone") or {}).get("name"),
        "kept": taught.kept, "classes": classes,
        "estimate": taught.estimate.to_dict() if taught.estimate is not None else None,
    }


def _data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _backbone_preprocessing(name: str) -> Preprocessing:
    from .. import zoo

    return zoo.get(name).preprocessing
