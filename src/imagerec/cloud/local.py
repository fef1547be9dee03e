"""An imagerec :class:`~imagerec.recognizer.Recognizer` behind the provider interface.

It runs on this machine, so it costs nothing per image and has no upload
limits; its labels are the model's own class names (ImageNet's for the
default model), with every synonym the label file gives kept as aliases.

>>> from imagerec.cloud.local import LocalProvider
>>> provider = LocalProvider("mobilenet_v2")
>>> provider.labels(["../shared/photos/parrot.jpg"], top_k=1)[0][0].label
'macaw'
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from ..core.errors import CloudError, ImageDecodeError
from ..core.images import ImageSource, describe_source
from ..recognizer import FileResult, Prediction, Recognizer
from .base import Provider, Upload

__all__ = ["LocalProvider"]


class LocalProvider(Provider):
    """Labels from a local model (a zoo name, a model file or a Recognizer)."""

    name = "local"

    def __init__(self, model: str | Recognizer = "mobilenet_v2", *, num_threads: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._model = model
        self._num_threads = num_threads
        self._recognizer: Recognizer | None = model if isinstance(model, Recognizer) else None
        self.load_seconds = 0.0

    @property
    def recognizer(self) -> Recognizer:
        """The model, loaded on first use (the load time is kept apart from latency)."""
        if self._recognizer is None:
            from ..loading import load

            started = time.perf_counter()
            self._recognizer = load(self._model, num_threads=self._num_threads)
            self.load_seconds = time.perf_counter() - started
        return self._recognizer

    def setup(self) -> None:
        self.recognizer

    @property
    def model_name(self) -> str:
        return self.recognizer.name

    def _annotate(self, uploads: Sequence[Upload], top_k: int) -> list[list[Prediction] | CloudError]:
        raise NotImplementedError  # label_files does the work directly: nothing is uploaded

    def label_files(
        self,
        sources: Sequence[ImageSource],
        top_k: int = 10,
        *,
        on_result: Callable[[FileResult], None] | None = None,
    ) -> list[FileResult]:
        sources = self._checked_request(sources, top_k)
        recognizer = self.recognizer
        results: list[FileResult] = []
        # One image at a time, so each latency is that image's own
        # decode + preprocess + inference, comparable with a cloud round trip.
        for source in sources:
            name = describe_source(source)
            started = time.perf_counter()
            try:
                predictions = recognizer.predict([source], top_k=top_k)[0]
            except ImageDecodeError as exc:
                result = FileResult(name, error=exc, seconds=time.perf_counter() - started)
            else:
                result = FileResult(name, predictions=predictions, seconds=time.perf_counter() - started)
                for p in predictions:
                    names = recognizer.synonyms[p.index] if 0 <= p.index < len(recognizer.synonyms) else ()
                    if len(names) > 1:
                        self._aliases[p.label] = tuple(names[1:])
            self.requests_sent += 1
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results
