"""Decode many images in parallel, in order, with bounded memory.

Decoding (Pillow releases the GIL while it decodes and resamples) runs on a
pool of threads sized to the cores while the caller runs inference on what is
already decoded, so the two overlap. At most ``window`` images are in flight,
so memory stays bounded however many files are given, and results come back
in the order of the sources.

>>> import numpy as np
>>> from imagerec.core.images import Preprocessing
>>> from imagerec.core.pipeline import decode_ordered
>>> items = list(decode_ordered([np.zeros((8, 8, 3), np.uint8), b""], Preprocessing(size=(4, 4))))
>>> items[0].array.shape, type(items[1].error).__name__
((4, 4, 3), 'ImageDecodeError')
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from .errors import ImageDecodeError
from .images import DEFAULT_LIMITS, IMAGE_SUFFIXES, Detail, ImageSource, Limits, describe_source, load_model_input
from .preprocessing import Preprocessing

__all__ = ["Decoded", "decode_one", "decode_ordered", "batches", "default_workers", "expand_paths", "ordered_map"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Decoded:
    """One source after decoding: ``array`` or ``error`` is set, never both.

    ``approximate`` says JPEG draft mode scaled the picture down while
    decoding it, so a finer ``detail`` would give other pixels (see
    :func:`imagerec.core.images.load_model_input`).
    """

    position: int
    source: ImageSource
    array: np.ndarray | None = None
    error: ImageDecodeError | None = None
    approximate: bool = False

    @property
    def name(self) -> str:
        return describe_source(self.source)


def default_workers() -> int:
    """Decode threads: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def decode_one(
    position: int,
    source: ImageSource,
    preprocessing: Preprocessing,
    limits: Limits = DEFAULT_LIMITS,
    exact: bool = False,
    detail: Detail = "draft",
) -> Decoded:
    """Decode one source into a :class:`Decoded`; a decoding error is returned, not raised."""
    try:
        array, approximate = load_model_input(source, preprocessing, limits=limits, exact=exact, detail=detail)
        return Decoded(position, source, array=array, approximate=approximate)
    except ImageDecodeError as exc:
        return Decoded(position, source, error=exc)
    except MemoryError:  # a hostile file must not take the whole run down
        return Decoded(position, source, error=ImageDecodeError("out of memory while decoding", path=describe_source(source)))


def decode_ordered(
    sources: Iterable[ImageSource],
    preprocessing: Preprocessing,
    *,
    workers: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    window: int | None = None,
    exact: bool = False,
    detail: Detail = "draft",
) -> Iterator[Decoded]:
    """Yield a :class:`Decoded` per source, in source order.

    Errors are returned, not raised, so one bad file never stops a run.
    ``detail`` says how finely large JPEGs are decoded ("draft", "fine" or
    "full"; ``exact=True`` is "full": every pixel is decoded).
    """
    workers = workers or default_workers()
    window = window or max(8, workers * 8)
    iterator = enumerate(sources)
    if workers == 1:
        for position, source in iterator:
            yield decode_one(position, source, preprocessing, limits, exact, detail)
        return
    pending: deque[Future[Decoded]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagerec-decode") as pool:
        try:
            for position, source in islice(iterator, window):
                pending.append(pool.submit(decode_one, position, source, preprocessing, limits, exact, detail))
            while pending:
                done = pending.popleft().result()
                for position, source in islice(iterator, 1):
                    pending.append(pool.submit(decode_one, position, source, preprocessing, limits, exact, detail))
                yield done
        finally:
            for future in pending:  # the consumer stopped early: do not decode the rest
                future.cancel()


def batches(items: Iterable[Decoded], size: int) -> Iterator[list[Decoded]]:
    """Group decoded items into lists of ``size`` (the last may be shorter).

    >>> [len(b) for b in batches(range(5), 2)]
    [2, 2, 1]
    """
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def expand_paths(paths: Sequence[str | os.PathLike[str]], *, recursive: bool = False) -> list[str]:
    """Files named directly, plus the image files inside named folders.

    Folders contribute files whose suffix is an image type, sorted by name;
    hidden entries are skipped; ``recursive`` descends into sub-folders
    (symlinked folders are not followed, so there are no loops). A named
    path that does not exist is kept, so the caller reports it.

    >>> expand_paths(["no/such/file.jpg"])
    ['no/such/file.jpg']
    """
    found: list[str] = []
    for path in paths:
        text = os.fspath(path)
        if not os.path.isdir(text):
            found.append(text)
            continue
        found.extend(_walk(text, recursive))
    return found


def _walk(folder: str, recursive: bool) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            subfolders.append(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
            yield entry.path
    if recursive:
        for sub in subfolders:
            yield from _walk(sub, recursive)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, at most ``window`` items ahead.

    >>> list(ordered_map(lambda x: x * x, range(5), workers=2))
    [0, 1, 4, 9, 16]
    """
    iterator = iter(items)
    if workers <= 1:
        yield from map(fn, iterator)
        return
    window = window or workers * 4
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagerec-map") as pool:
        try:
            for item in islice(iterator, window):
                pending.append(pool.submit(fn, item))
            while pending:
                done = pending.popleft().result()
                for item in islice(iterator, 1):
                    pending.append(pool.submit(fn, item))
                yield done
        finally:
            for future in pending:
                future.cancel()
