"""``Recognizer``: preprocessing + backend + labels, and the one path from pixels to answers.

Every surface that predicts — the CLI, the Python API, the HTTP service,
evaluation and the photo library — goes through :meth:`Recognizer.score`
(a preprocessed batch to probabilities) and :meth:`Recognizer.rank`
(probabilities to one :class:`~imagerec.answers.Answer` per image: the
top-k classes after the ignore mask, and the decision — "unknown", "not
sure"). :func:`imagerec.load` (in :mod:`imagerec.loading`) opens model files
and zoo names.

>>> import imagerec
>>> recognizer = imagerec.load("mobilenet_v2")
>>> answer = recognizer.predict("../shared/photos/parrot.jpg", top_k=2)[0]
>>> answer.label, answer.index, answer.sure, [p.label for p in answer]
('macaw', 88, True, ['macaw', 'lorikeet'])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from .answers import SURE_LEVEL, UNKNOWN, Answer, FileResult, Prediction
from .backends import Backend
from .core.errors import UsageError
from .core.arrays import softmax
from .core.images import DEFAULT_LIMITS, Detail, ImageSource, Limits, load_pil, stack
from .core.preprocessing import Preprocessing
from .core.pipeline import Decoded, decode_one, batches, decode_ordered
from .explain import GradientFn, HeatMap, explain as explain_heat

__all__ = ["Prediction", "Answer", "FileResult", "Recognizer", "Scores", "softmax", "UNKNOWN", "SURE_LEVEL", "SETTINGS"]

# What imagerec.load(..., **settings) may set on any recognizer it opens.
SETTINGS = ("refine_margin", "workers", "batch_size", "threshold")

# A photo decoded in JPEG draft mode whose best class leads the runner-up
# by less than this is decoded again in full and predicted again (about one
# photo in seven). Calibrated on 300 generated photos the benchmark never sees
# (bench/predict_throughput.py --calibrate 300): the draft answers that differ
# from a full decode's all had margins under 0.078, so 0.1 keeps a safety
# margin; a 1/2-scale decode is no substitute for the full one (it differed on
# 9 of those photos' 43 near-ties, at margins up to 0.053; docs/speed.md).
DEFAULT_REFINE_MARGIN = 0.1
# How many batches of photos are decoded ahead of the one being scored (memory: one
# model-sized array each, 150 KB at 224×224).
AHEAD_BATCHES = 4


class Scores(NamedTuple):
    """What a model says about a batch, before ranking.

    ``probabilities`` is ``N×len(labels)`` float32; ``confidence`` (only
    with a threshold) is what the threshold is compared with, one per image.
    """

    probabilities: np.ndarray
    confidence: np.ndarray | None


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
    a ``threshold``, an image whose match (the head's ``confidence``, else
    the best probability) is below it gets the answer ``"unknown"``: the
    :class:`~imagerec.answers.Answer` still ranks the classes by their own
    probabilities and says which came closest. ``metadata`` travels with :meth:`save`.

    ``skip_outputs`` leading model outputs are not classes and are dropped
    from the probabilities (the TF-slim ImageNet models' ``background`` at
    output 0), so ``labels[i]`` is ImageNet-1k class ``i`` as Keras numbers it.

    Large JPEGs are decoded in draft mode (scaled down by the decoder, many
    times faster). When that leaves a photo's best two classes within
    ``refine_margin`` of each other, the photo is decoded again in full
    (see :meth:`next_detail`) and that answer is the one returned, so
    near-ties come out as a full decode gives them.
    ``refine_margin=0`` never decodes twice; ``refine_margin=1`` always
    answers from the full decode. Paths and bytes
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
        skip_outputs: int = 0,
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
        self.skip_outputs = int(skip_outputs)
        ignored = set(ignore)
        self._keep = np.array([label not in ignored for label in self.labels], dtype=bool)

    def configure(self, **settings: Any) -> "Recognizer":
        """Change the run-time settings named in :data:`SETTINGS`; refuses any other name.

        >>> r = Recognizer(None, ["a", "b"], Preprocessing(size=(1, 1)))
        >>> r.configure(refine_margin=0).refine_margin
        0.0
        >>> r.configure(typo=1)
        Traceback (most recent call last):
        imagerec.core.errors.UsageError: unknown setting(s) typo; a recognizer takes refine_margin, workers, batch_size, threshold
        """
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise UsageError(f"unknown setting(s) {', '.join(unknown)}; a recognizer takes {', '.join(SETTINGS)}")
        if "refine_margin" in settings:
            margin = float(settings["refine_margin"])
            if not 0 <= margin <= 1:
                raise UsageError(f"refine_margin must be between 0 and 1, got {settings['refine_margin']}")
            self.refine_margin = margin
        if "batch_size" in settings:
            if int(settings["batch_size"]) < 1:
                raise UsageError(f"batch_size must be at least 1, got {settings['batch_size']}")
            self.batch_size = int(settings["batch_size"])
        if "workers" in settings:
            self.workers = None if settings["workers"] is None else int(settings["workers"])
        if "threshold" in settings:
            self.threshold = None if settings["threshold"] is None else float(settings["threshold"])
        return self

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
    ) -> list[Answer]:
        """The answer for each image: its ``top_k`` most probable labels, best first, and the decision on them
        (:class:`~imagerec.answers.Answer`: ``label`` is the answer, ``"unknown"`` below the threshold)."""
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        self._require_classes()
        return self.rank(self._score_sources(images), top_k, min_score=min_score)

    def predict_batch(self, batch: np.ndarray, top_k: int = 5, *, min_score: float = 0.0) -> list[Answer]:
        """:meth:`predict` for a batch that is already preprocessed (``preprocess``, or a decode with
        this recognizer's ``preprocessing``): nothing is decoded, resized or framed again.

        The service and the photo library decode on their own threads and
        hand their batches here, so they answer exactly as :meth:`predict` does.
        """
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        self._require_classes()
        return self.rank(self.score(self._checked_batch(batch)), top_k, min_score=min_score)

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

    # Set by the formats that can rebuild the model in Keras (formats/keras_apps, keras_recognizer,
    # h5_recognizer): a zero-argument callable returning the Grad-CAM gradient function, built on first use.
    # A learned recognizer (a head) has its own (transfer.learned: through a Keras backbone and the head).
    gradient_source: Callable[[], GradientFn] | None = None

    @property
    def gives_gradients(self) -> bool:
        """Whether :meth:`gradients` has a function to give (without building it)."""
        return self.gradient_source is not None and self.head is None

    def gradients(self) -> GradientFn | None:
        """The function Grad-CAM takes the model's gradients from (see :mod:`imagerec.explain.gradcam`),
        or None when the model gives none (TFLite and ONNX files: they are explained by occlusion)."""
        return self.gradient_source() if self.gives_gradients else None

    def explain(self, image: ImageSource, label: str | None = None, *, method: str = "auto") -> HeatMap:
        """Where the model looked for ``label`` (default: its answer) in ``image``: a
        :class:`~imagerec.explain.HeatMap` by ``method`` — ``"occlusion"`` (scored through :meth:`score`),
        ``"grad-cam"`` (needs :meth:`gradients`) or ``"auto"`` (Grad-CAM when the model gives gradients,
        else occlusion); ``HeatMap.method`` says which was used (see :mod:`imagerec.explain`)."""
        self._require_classes()
        return explain_heat(load_pil(image, limits=self.limits), lambda batch: self.score(batch).probabilities,
                            self.preprocessing, labels=self.labels, label=label, predictable=self._keep,
                            method=method, gradients=self.gradients, batch_size=self.batch_size)

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
        # Decoding runs up to AHEAD_BATCHES batches ahead, so the decode threads stay busy while this
        # thread scores a batch and decodes its near-ties again (a full decode takes 80 ms).
        decoded = decode_ordered(sources, self.preprocessing, workers=self.workers, limits=self.limits,
                                 window=AHEAD_BATCHES * self.batch_size)
        for chunk in batches(decoded, self.batch_size):
            good = [item for item in chunk if item.array is not None]
            ranked = iter(self.rank(self._scored_items(good), top_k, min_score=min_score)) if good else iter(())
            for item in chunk:
                if item.error is not None:
                    result = FileResult(item.name, error=item.error)
                else:
                    result = FileResult(item.name, predictions=next(ranked))
                if on_result is not None:
                    on_result(result)
                yield result

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a learned recognizer to a ``.imagerec`` file (see :class:`imagerec.transfer.learned.LearnedRecognizer`).

        A pretrained or trained model is already a file on disk, so only
        recognizers made by :func:`imagerec.learn` can be saved.
        """
        raise UsageError(
            f"{self.name!r} is a pretrained model, not a learned one: only recognizers made by "
            "imagerec.learn can be saved (the model file itself is already on disk)"
        )

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

    def _score_sources(self, images: ImageSource | Sequence[ImageSource]) -> Scores:
        sources = _as_list(images)
        if isinstance(sources, np.ndarray):
            return self.score(self.preprocess(sources))
        return self._scored_items(self._decode_all(sources))

    def _scored_items(self, items: list[Decoded]) -> Scores:
        """:meth:`score` for decoded items, then :meth:`refine` for the draft-mode near-ties."""
        scores = self.score(stack([item.array for item in items]))
        return self.refine(scores, [item.source for item in items], [item.approximate for item in items])

    def next_detail(self, margin: float, decoded_at: Detail = "draft") -> Detail | None:
        """How finely to decode a photo again, given the margin of its answer from an approximate decode.

        An answer from an approximate decode (draft or "fine" detail) whose
        best two classes are within ``refine_margin`` is decoded again in
        full. None: the answer stands. Every path that refines
        (:meth:`refine`, the service) asks here, so all answer near-ties alike.

        >>> recognizer = Recognizer(None, ["a", "b"], Preprocessing(size=(1, 1)))
        >>> recognizer.next_detail(0.05), recognizer.next_detail(0.003, "fine"), recognizer.next_detail(0.5)
        ('full', 'full', None)
        """
        if self.refine_margin <= 0 or decoded_at == "full" or margin >= self.refine_margin:
            return None
        return "full"

    def refine(self, scores: Scores, sources: Sequence[ImageSource],
               approximate: Sequence[bool] | None = None) -> Scores:
        """``scores`` with each near-tie answered from a finer decode of its source, as :meth:`predict` answers.

        A row is decoded again when :meth:`next_detail` asks for it, it was
        decoded approximately (JPEG draft mode; ``approximate`` None means
        it may have been) and its source can be read again without a network
        call; a row still approximate and still tied goes one level finer.
        Callers that decode on their own (evaluation, the service) pass their
        first-pass scores here, so every path answers near-ties alike. The
        rows are replaced in place.
        """
        if self.refine_margin <= 0 or not len(sources):
            return scores
        probabilities, confidence = scores
        margins = self.margins(probabilities)
        flags = [True] * len(sources) if approximate is None else list(approximate)
        rows = [row for row, source in enumerate(sources) if flags[row] and _rereadable(source)]
        level: Detail = "draft"
        while rows:
            wanted = [(row, self.next_detail(float(margins[row]), level)) for row in rows]
            redo = [row for row, detail in wanted if detail is not None]
            if not redo:
                break
            level = next(detail for _, detail in wanted if detail is not None)  # one level for all at a stage
            again = decode_ordered(
                [sources[row] for row in redo], self.preprocessing, workers=self.workers, limits=self.limits, detail=level
            )
            # A file changed or removed since the first read keeps its last answer.
            done = [(row, item) for row, item in zip(redo, again) if item.array is not None]
            if not done:
                break
            done_rows = [row for row, _ in done]
            finer_probabilities, finer_confidence = self.score(stack([item.array for _, item in done]))
            probabilities[done_rows] = finer_probabilities
            if confidence is not None and finer_confidence is not None:
                confidence[done_rows] = finer_confidence
            margins[done_rows] = self.margins(finer_probabilities)
            rows = [row for row, item in done if item.approximate]
        return Scores(probabilities, confidence)

    def _checked_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.dtype != np.uint8 or tuple(batch.shape[1:3]) != self.preprocessing.size:
            raise UsageError(
                f"expected a preprocessed N×{self.preprocessing.size[0]}×{self.preprocessing.size[1]}×3 uint8 batch, "
                f"got {batch.dtype} {batch.shape}"
            )
        return batch

    def score(self, batch: np.ndarray) -> Scores:
        """Probabilities (and, with a threshold, the confidence) for a preprocessed uint8 batch."""
        return self.score_and_embed(batch, embed=False)[0]

    def score_and_embed(self, batch: np.ndarray, *, embed: bool = True) -> tuple[Scores, np.ndarray | None]:
        """:meth:`score` and, when the model has one, the embedding of a preprocessed batch, from one model run.

        The photo library records both for every photo; an embedding model
        (no classes) gives an ``N×0`` probability array.
        """
        outputs = self.backend.outputs
        if not self.classifies:
            wanted = []
        elif self.head is not None:
            wanted = ["embedding"]
        elif self.threshold is not None and "confidence" in outputs:
            wanted = ["scores", "confidence"]  # an exported learned recognizer: its graph computes the confidence
        elif "logits" in outputs:
            wanted = ["logits"]  # finer-grained than a quantised softmax output
        else:
            wanted = ["scores"]
        if embed and self.can_embed and "embedding" not in wanted:
            wanted.append("embedding")
        out = self.backend.run(batch, tuple(wanted)) if wanted else {}
        embeddings = out.get("embedding") if embed else None
        if not self.classifies:
            return Scores(np.zeros((len(batch), 0), np.float32), None), embeddings
        if self.head is not None:
            probabilities = np.asarray(self.head.predict_proba(out["embedding"]), dtype=np.float32)
            confidence = None
            if self.threshold is not None:
                confidence = (np.asarray(self.head.confidence(out["embedding"])) if hasattr(self.head, "confidence")
                              else probabilities.max(axis=1))
            return Scores(probabilities, confidence), embeddings
        if "confidence" in wanted:
            return Scores(self._normalized(out["scores"]), out["confidence"].reshape(len(batch))), embeddings
        probabilities = softmax(out["logits"]) if "logits" in wanted else self._normalized(out["scores"])
        # Dropped after normalising over every output, so a class's probability
        # is the model's own and a row may sum to a little under one.
        probabilities = probabilities[:, self.skip_outputs:]
        confidence = None if self.threshold is None else np.where(self._keep[None, :], probabilities, 0).max(axis=1)
        return Scores(probabilities, confidence), embeddings

    @staticmethod
    def _normalized(scores: np.ndarray) -> np.ndarray:
        totals = scores.sum(axis=1, keepdims=True)
        if scores.min() < 0 or scores.max() > 1 or np.any(totals > 1.1):
            return softmax(scores)  # raw scores (logits) from a bare model
        # A quantised softmax rounds thin mass away, so rows sum to less than
        # one; renormalising keeps scores comparable across images.
        return (scores / np.maximum(totals, 1e-12)).astype(np.float32)

    def rank(self, scores: Scores, top_k: int = 5, *, min_score: float = 0.0) -> list[Answer]:
        """The :class:`~imagerec.answers.Answer` of each row of ``scores``: its ``top_k`` predictable classes,
        best first, and the decision ("unknown" when the row's confidence is under the threshold).

        >>> import numpy as np
        >>> recognizer = Recognizer(None, ["cat", "dog"], Preprocessing(size=(1, 1)), threshold=0.5)
        >>> answer = recognizer.rank(Scores(np.array([[0.7, 0.3]]), np.array([0.4])))[0]
        >>> answer.label, answer.closest.label, [p.label for p in answer]
        ('unknown', 'cat', ['cat', 'dog'])
        """
        probabilities, confidence = scores
        masked = np.where(self._keep[None, :], probabilities, -np.inf)
        k = min(top_k, self.num_classes)
        # Stable sort keeps the lower class index first among equal scores.
        order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        threshold = self.threshold if confidence is not None else None
        results = []
        for position, (row, indices) in enumerate(zip(probabilities, order)):
            ranked = [Prediction(self.labels[i], float(row[i]), int(i)) for i in indices]
            match = None if confidence is None else float(confidence[position])
            results.append(Answer([p for p in ranked if p.score >= min_score], best=ranked[0] if ranked else None,
                                  match=match, threshold=threshold))
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
