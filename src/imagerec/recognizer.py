"""``Recognizer``: preprocessing + backend + labels, and ``load`` to get one.

>>> import imagerec
>>> recognizer = imagerec.load("mobilenet_v2")
>>> [p.label for p in recognizer.predict("../shared/photos/parrot.jpg", top_k=1)[0]]
['macaw']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .backends import Backend
from .errors import ModelFileError, UsageError
from .images import DEFAULT_LIMITS, ImageSource, Limits, Preprocessing, stack
from .pipeline import Decoded, decode_one, batches, decode_ordered

__all__ = ["Prediction", "FileResult", "Recognizer", "load", "register_loader", "softmax", "UNKNOWN"]

# The label predicted when a recognizer with a threshold is not sure enough.
UNKNOWN = "unknown"

# A photo decoded in JPEG draft mode whose best class leads the runner-up
# by less than this is decoded again in full and predicted again. On the
# issue-2 benchmark that is about one photo in six, and it lifts top-1
# agreement with a full decode from 97 % to 99.5 % (bench/predict_throughput.py).
DEFAULT_REFINE_MARGIN = 0.1


@dataclass(frozen=True)
class Prediction:
    """One label for one image: its name, probability and class index.

    >>> Prediction("macaw", 0.91, 89).to_dict()
    {'label': 'macaw', 'score': 0.91, 'index': 89}
    """

    label: str
    score: float
    index: int

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(float(self.score), 6), "index": int(self.index)}


@dataclass
class FileResult:
    """What became of one input in a batch run: predictions or an error."""

    path: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "predictions": [p.to_dict() for p in self.predictions]}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed in float64 for stability.

    >>> softmax(np.array([[0.0, 0.0]])).tolist()
    [[0.5, 0.5]]
    """
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class Recognizer:
    """Recognise what is in images with one model.

    ``predict`` returns probabilities (top-k per image); ``embed`` returns
    the model's image embedding. Images may be paths, bytes, file objects,
    PIL images, ``H×W×3`` arrays or an ``N×H×W×3`` batch array.
    Labels listed in ``ignore`` (e.g. ImageNet's ``background``) are never
    returned. ``synonyms`` optionally gives, per class, every name the class
    goes by (the label itself first).

    A learned recognizer (see :mod:`imagerec.transfer`) also has a ``head``:
    any object with ``predict_proba(embeddings)`` (and optionally
    ``confidence(embeddings)``) whose classes are ``labels``; it classifies
    the backend's embedding instead of using the backend's own scores. With
    a ``threshold``, an image whose confidence (the head's ``confidence``,
    else the best probability) is below it is predicted as ``"unknown"``
    (index -1, score 1 − the best class's probability), followed by the
    best ``top_k - 1`` classes. ``metadata`` travels with :meth:`save`.

    Large JPEGs are decoded in draft mode (scaled down by the decoder, many
    times faster). When that leaves a photo's best two classes within
    ``refine_margin`` of each other, the photo is decoded again at full size
    and that answer is the one returned, so near-ties come out as a full
    decode would give them. ``refine_margin=0`` never decodes twice;
    ``refine_margin=1`` always answers from the full decode. Paths and bytes
    are refined; file objects and URLs are read once and keep the first answer.
    """

    def __init__(
        self,
        backend: Backend,
        labels: Sequence[str],
        preprocessing: Preprocessing,
        *,
        name: str = "model",
        sha256: str | None = None,
        ignore: Iterable[str] = (),
        limits: Limits = DEFAULT_LIMITS,
        workers: int | None = None,
        batch_size: int = 16,
        synonyms: Sequence[Sequence[str]] | None = None,
        head=None,
        threshold: float | None = None,
        metadata: dict | None = None,
        task: str = "classify",
        refine_margin: float = DEFAULT_REFINE_MARGIN,
    ) -> None:
        if task not in ("classify", "embed"):
            raise UsageError(f"task must be 'classify' or 'embed', got {task!r}")
        if head is not None:
            if "embedding" not in backend.outputs:
                raise UsageError(f"a head needs a backend with an embedding output; {name!r} has {backend.outputs}")
            head_labels = list(getattr(head, "labels_", labels))
            if head_labels != list(labels):
                raise UsageError(f"the head's classes {head_labels} differ from the labels {list(labels)}")
        self.head = head
        # An embedding model ("embed") has no classes of its own until a head is learned on it.
        self.task = "classify" if head is not None else task
        self.threshold = None if threshold is None else float(threshold)
        self.metadata = dict(metadata or {})
        self.backend = backend
        self.labels = list(labels)
        self.synonyms = [tuple(names) for names in synonyms] if synonyms else [(label,) for label in self.labels]
        self.preprocessing = preprocessing
        self.name = name
        self.sha256 = sha256
        self.limits = limits
        self.workers = workers
        self.batch_size = batch_size
        self.refine_margin = float(refine_margin)
        ignored = set(ignore)
        self._keep = np.array([label not in ignored for label in self.labels], dtype=bool)

    def __repr__(self) -> str:
        return f"Recognizer(name={self.name!r}, labels={len(self.labels)}, input={self.preprocessing.size})"

    @property
    def num_classes(self) -> int:
        return int(self._keep.sum())

    @property
    def predictable(self) -> np.ndarray:
        """Boolean mask over ``labels``: False for labels in ``ignore`` (never predicted)."""
        return self._keep.copy()

    @property
    def can_embed(self) -> bool:
        return "embedding" in self.backend.outputs

    @property
    def classifies(self) -> bool:
        """False for an embedding model: it has no labels to predict, only :meth:`embed`."""
        return self.task == "classify"

    def _require_classes(self) -> None:
        if not self.classifies:
            raise UsageError(
                f"{self.name!r} is an embedding model: it gives vectors, not labels. Use it with "
                f"recognizer.embed(), imagerec index / similar, or teach it classes with "
                f"`imagerec learn DATA --backbone {self.name}`"
            )

    # -- arrays -----------------------------------------------------------

    def preprocess(self, images: ImageSource | Sequence[ImageSource]) -> np.ndarray:
        """Decode and resize ``images`` into the ``N×H×W×3`` uint8 batch the model takes.

        Raises ``ImageDecodeError`` on the first image that cannot be read.
        """
        sources = _as_list(images)
        if isinstance(sources, np.ndarray):
            # A uint8 batch at the model's size is taken as already preprocessed
            # (unless the model wants a frame, which such a batch cannot show).
            ready = tuple(sources.shape[1:3]) == self.preprocessing.size and sources.dtype == np.uint8
            if ready and not self.preprocessing.frame:
                return np.ascontiguousarray(sources)
            sources = list(sources)
        return stack([item.array for item in self._decode_all(sources)])

    def predict_proba(self, images: ImageSource | Sequence[ImageSource]) -> np.ndarray:
        """Class probabilities, ``N×len(labels)`` float32 (rows sum to about 1)."""
        self._require_classes()
        return self._score_sources(images)[0]

    def predict(
        self, images: ImageSource | Sequence[ImageSource], top_k: int = 5, *, min_score: float = 0.0
    ) -> list[list[Prediction]]:
        """The ``top_k`` most probable labels for each image, best first."""
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        self._require_classes()
        return self._top_k(*self._score_sources(images), top_k, min_score)

    def margins(self, probabilities: np.ndarray) -> np.ndarray:
        """How far each row's best predictable class leads the runner-up.

        >>> import numpy as np
        >>> recognizer = Recognizer(None, ["a", "b", "c"], Preprocessing(size=(1, 1)))
        >>> [round(float(m), 2) for m in recognizer.margins(np.array([[0.5, 0.3, 0.2]], np.float32))]
        [0.2]
        """
        masked = np.where(self._keep[None, :], probabilities, -np.inf)
        if masked.shape[1] < 2 or self.num_classes < 2:
            return np.full(len(masked), np.inf)
        top2 = -np.partition(-masked, 1, axis=1)[:, :2]
        return top2[:, 0] - top2[:, 1]

    def embed(self, images: ImageSource | Sequence[ImageSource]) -> np.ndarray:
        """The model's embedding of each image, ``N×D`` float32."""
        if not self.can_embed:
            raise UsageError(f"model {self.name!r} has no embedding output")
        return self.backend.run(self.preprocess(images), ("embedding",))["embedding"]

    # -- files ------------------------------------------------------------

    def predict_files(
        self,
        sources: Iterable[ImageSource],
        top_k: int = 5,
        *,
        min_score: float = 0.0,
        on_result: Callable[[FileResult], None] | None = None,
    ) -> Iterator[FileResult]:
        """Predict for many inputs, decoding in parallel with inference.

        Yields one :class:`FileResult` per source, in order; a source that
        cannot be decoded yields a result with ``error`` set instead of
        raising, so one bad file never stops the others.
        """
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        self._require_classes()
        decoded = decode_ordered(sources, self.preprocessing, workers=self.workers, limits=self.limits)
        for chunk in batches(decoded, self.batch_size):
            good = [item for item in chunk if item.array is not None]
            ranked = iter(self._top_k(*self._scored_items(good), top_k, min_score)) if good else iter(())
            for item in chunk:
                if item.error is not None:
                    result = FileResult(item.name, error=str(item.error))
                else:
                    result = FileResult(item.name, predictions=next(ranked))
                if on_result is not None:
                    on_result(result)
                yield result

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a learned recognizer (one with a head) to a ``.imagerec`` file.

        See :mod:`imagerec.transfer.learned` for the format; ``imagerec.load``
        reads it back.
        """
        if self.head is None:
            raise UsageError(
                f"{self.name!r} is a pretrained model, not a learned one: only recognizers made by "
                "imagerec.learn can be saved (the model file itself is already on disk)"
            )
        from .transfer.learned import save_recognizer

        return save_recognizer(self, path)

    # -- internals --------------------------------------------------------

    def _decode_all(self, sources: list[ImageSource]) -> list[Decoded]:
        """Decode every source (in parallel when there are several); raise the first error."""
        if len(sources) == 1:
            items = [decode_one(0, sources[0], self.preprocessing, self.limits)]
        else:
            items = list(decode_ordered(sources, self.preprocessing, workers=self.workers, limits=self.limits))
        for item in items:
            if item.error is not None:
                raise item.error
        return items

    def _score_sources(self, images: ImageSource | Sequence[ImageSource]) -> tuple[np.ndarray, np.ndarray | None]:
        sources = _as_list(images)
        if isinstance(sources, np.ndarray):
            return self._scored(self.preprocess(sources))
        return self._scored_items(self._decode_all(sources))

    def _scored_items(self, items: list[Decoded]) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`_scored` for decoded items, with draft-mode near-ties decoded again in full."""
        probabilities, confidence = self._scored(stack([item.array for item in items]))
        if self.refine_margin <= 0:
            return probabilities, confidence
        margins = self.margins(probabilities)
        redo = [
            row
            for row, item in enumerate(items)
            if item.approximate and margins[row] < self.refine_margin and _rereadable(item.source)
        ]
        if not redo:
            return probabilities, confidence
        again = decode_ordered(
            [items[row].source for row in redo], self.preprocessing, workers=self.workers, limits=self.limits, exact=True
        )
        # A file changed or removed since the first read keeps its first answer.
        done = [(row, item.array) for row, item in zip(redo, again) if item.array is not None]
        if done:
            rows = [row for row, _ in done]
            exact_probabilities, exact_confidence = self._scored(stack([array for _, array in done]))
            probabilities[rows] = exact_probabilities
            if confidence is not None and exact_confidence is not None:
                confidence[rows] = exact_confidence
        return probabilities, confidence

    def _scored(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, with a threshold, the confidence to compare with it."""
        if self.head is None:
            if self.threshold is not None and "confidence" in self.backend.outputs:
                # An exported learned recognizer: its graph computes the head's own confidence.
                out = self.backend.run(batch, ("scores", "confidence"))
                return self._normalized(out["scores"]), out["confidence"].reshape(len(batch))
            probabilities = self._probabilities(batch)
            confidence = None if self.threshold is None else np.where(self._keep[None, :], probabilities, 0).max(axis=1)
            return probabilities, confidence
        embeddings = self.backend.run(batch, ("embedding",))["embedding"]
        probabilities = np.asarray(self.head.predict_proba(embeddings), dtype=np.float32)
        if self.threshold is None:
            return probabilities, None
        if hasattr(self.head, "confidence"):
            return probabilities, np.asarray(self.head.confidence(embeddings))
        return probabilities, probabilities.max(axis=1)

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        if "logits" in self.backend.outputs:
            return softmax(self.backend.run(batch, ("logits",))["logits"]).astype(np.float32)
        return self._normalized(self.backend.run(batch, ("scores",))["scores"])

    @staticmethod
    def _normalized(scores: np.ndarray) -> np.ndarray:
        totals = scores.sum(axis=1, keepdims=True)
        if scores.min() < 0 or scores.max() > 1 or np.any(totals > 1.1):
            return softmax(scores).astype(np.float32)  # raw scores (logits) from a bare model
        # A quantised softmax rounds thin mass away, so rows sum to less than
        # one; renormalising keeps scores comparable across images.
        return (scores / np.maximum(totals, 1e-12)).astype(np.float32)

    def _top_k(
        self, probabilities: np.ndarray, confidence: np.ndarray | None, top_k: int, min_score: float
    ) -> list[list[Prediction]]:
        masked = np.where(self._keep[None, :], probabilities, -np.inf)
        k = min(top_k, self.num_classes)
        # Stable sort keeps the lower class index first among equal scores.
        order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        results = []
        for position, (row, indices) in enumerate(zip(probabilities, order)):
            ranked = [Prediction(self.labels[i], float(row[i]), int(i)) for i in indices if row[i] >= min_score]
            if confidence is not None and self.threshold is not None and confidence[position] < self.threshold:
                # Not sure enough: "unknown" first, then the runners-up for context.
                best = float(row[indices[0]]) if len(indices) else 0.0
                ranked = [Prediction(UNKNOWN, max(0.0, 1.0 - best), -1)] + ranked[: top_k - 1]
            results.append(ranked)
        return results


def _rereadable(source: ImageSource) -> bool:
    """Whether decoding ``source`` again reads the same bytes without a network call."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return True
    if isinstance(source, (str, os.PathLike)):
        text = os.fsdecode(source)
        return not text.startswith(("http://", "https://"))
    return False


def _as_list(images: ImageSource | Sequence[ImageSource]) -> list[ImageSource] | np.ndarray:
    if isinstance(images, np.ndarray):
        return images if images.ndim == 4 else [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise UsageError("no images given")
        return list(images)
    return [images]


Loader = Callable[..., Recognizer]
_LOADERS: dict[str, Loader] = {}


def register_loader(suffix: str, loader: Loader) -> None:
    """Teach :func:`load` to open files ending in ``suffix`` (e.g. ``".keras"``)."""
    _LOADERS[suffix.lower()] = loader


def load(
    model: str | os.PathLike[str] = "mobilenet_v2",
    *,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    num_threads: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    **options,
) -> Recognizer:
    """A :class:`Recognizer` for a zoo model name or a model file.

    Files are opened by suffix: ``.tflite`` directly (``labels`` names the
    label file or gives the list), and whatever other formats are registered
    with :func:`register_loader`.

    >>> load("mobilenet_v1_embedder").can_embed
    True
    """
    from . import zoo

    text = os.fspath(model)
    suffix = Path(text).suffix.lower()
    if suffix in _LOADERS:
        return _LOADERS[suffix](text, num_threads=num_threads, limits=limits, **options)
    if suffix == ".tflite":
        return _load_tflite_file(Path(text), labels, num_threads, limits)
    if os.sep in text or "/" in text or Path(text).exists():
        known = ", ".join(sorted({".tflite", *_LOADERS}))
        raise UsageError(f"{text}: not a model imagerec can load (expected a zoo name or a file ending in {known})")
    spec = zoo.get(text)
    return _load_spec(spec, num_threads, limits)


def _load_spec(spec, num_threads: int | None, limits: Limits, path: Path | None = None) -> Recognizer:
    """The recognizer of a zoo spec, from its fetched file or from ``path`` (the same bytes)."""
    from . import zoo
    from .backends.litert import LiteRTBackend

    path = path or zoo.fetch(spec.model)
    extra = {}
    if spec.embedding_tensor:
        extra["embedding"] = spec.embedding_tensor
    if spec.logits_tensor:
        extra["logits"] = spec.logits_tensor
    backend = LiteRTBackend(path, num_threads=num_threads, extra_outputs=extra)
    if spec.task == "embed":
        return Recognizer(backend, [], spec.preprocessing, name=spec.name, sha256=spec.model.sha256,
                          limits=limits, task="embed")
    lines = zoo.read_labels(zoo.fetch(spec.labels))
    if spec.label_synonyms:
        synonyms = [tuple(name.strip() for name in line.split(",") if name.strip()) or (line,) for line in lines]
    else:
        synonyms = [(line,) for line in lines]
    names = [names_[0] for names_ in synonyms]
    if len(names) != backend.output_dim("scores"):
        raise ModelFileError(
            f"{spec.name}: {len(names)} labels for {backend.output_dim('scores')} model outputs", path=str(path)
        )
    ignore = [spec.background_label] if spec.background_label else []
    return Recognizer(
        backend,
        names,
        spec.preprocessing,
        name=spec.name,
        sha256=spec.model.sha256,
        ignore=ignore,
        limits=limits,
        synonyms=synonyms,
    )


def _load_tflite_file(path: Path, labels, num_threads: int | None, limits: Limits) -> Recognizer:
    from . import zoo
    from .backends.litert import LiteRTBackend

    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file", path=str(path))
    digest = zoo.sha256_file(path)
    known = zoo.find_by_sha256(digest)
    if known is not None and labels is None:
        # A copy of a zoo model: its labels, background class and embedding come with it.
        return _load_spec(known, num_threads, limits, path=path)
    info = _read_tflite_metadata(path).get("imagerec")
    if info is not None:
        return _load_exported_tflite(path, info, labels, digest, num_threads, limits)
    backend = LiteRTBackend(path, num_threads=num_threads)
    size = backend.output_dim("scores")
    names = [f"class_{i}" for i in range(size)] if labels is None else _label_list(labels)
    if len(names) != size:
        raise UsageError(f"{path}: the model has {size} outputs but {len(names)} labels were given")
    preprocessing = Preprocessing(size=backend.input_size, resize="crop", normalization="uint8")
    return Recognizer(
        backend, names, preprocessing, name=path.stem, sha256=digest, ignore=["background"], limits=limits
    )


def _read_tflite_metadata(path: Path) -> dict[str, bytes]:
    """The file's metadata entries; none if it cannot be read (LiteRTBackend then says why)."""
    from .backends.litert import read_metadata

    try:
        return read_metadata(path.read_bytes())
    except OSError:
        return {}


def _load_exported_tflite(path: Path, raw_info: bytes, labels, digest: str, num_threads: int | None,
                          limits: Limits) -> Recognizer:
    """A ``.tflite`` that ``imagerec export`` wrote: labels, preprocessing and threshold from its metadata."""
    import json

    from .backends.litert import LiteRTBackend

    try:
        info = json.loads(raw_info)
        names = list(info["labels"]) if labels is None else _label_list(labels)
        preprocessing = Preprocessing.from_dict(info["preprocessing"])
        threshold = info.get("threshold")
        outputs = list(info.get("outputs") or ["scores"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: its imagerec metadata is damaged ({exc})", path=str(path)) from exc
    if threshold is None or "confidence" not in outputs:
        backend, threshold = LiteRTBackend(path, num_threads=num_threads), None
    else:
        # The head's own confidence is a graph output: the threshold is compared with it.
        backend = LiteRTBackend(path, num_threads=num_threads, extra_outputs={"confidence": "confidence"})
    if len(names) != backend.output_dim("scores"):
        raise ModelFileError(f"{path}: {backend.output_dim('scores')} outputs but {len(names)} labels", path=str(path))
    return Recognizer(backend, names, preprocessing, name=path.stem, sha256=digest, threshold=threshold,
                      metadata=info, limits=limits)


def _label_list(labels: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    """Labels given as a label file's path or as a list."""
    from . import zoo

    return zoo.read_labels(labels) if isinstance(labels, (str, os.PathLike)) else list(labels)
