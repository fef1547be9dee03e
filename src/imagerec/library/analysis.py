"""Read, hash, decode and recognise photo files: the work the indexer hands out.

Each file is read once: the same bytes give its sha256, its EXIF facts and
the pixels for every model. Decoding runs on a pool of threads (Pillow
releases the GIL) while the caller's thread runs inference on what is already
decoded, as in ``Recognizer.predict_files``. A file whose content the catalog
already knows is only read and hashed, never decoded.

The same :func:`analyse` runs locally and inside Ray actors.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Collection, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ..core.errors import ImageDecodeError
from ..core.preprocessing import Preprocessing
from ..core.images import load_model_input, stack
from ..core.pipeline import batches, default_workers, ordered_map
from ..recognizer import AHEAD_BATCHES, Recognizer, Scores
from .facts import Facts, colour_view, facts_of
from .walker import Entry

__all__ = ["Analysed", "ModelOutput", "analyse", "model_outputs", "ordered_map"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class ModelOutput:
    """What one model says about one photo: top labels and the embedding."""

    labels: list[int]
    scores: list[float]
    embedding: np.ndarray | None = None


@dataclass
class Analysed:
    """One file after reading: a hash and facts, then outputs, or an error."""

    entry: Entry
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    camera: str | None = None
    error: str | None = None
    known: bool = False  # the catalog already has this content: nothing was decoded
    facts: "Facts | None" = None  # colours, GPS position... (library.facts)
    outputs: list[ModelOutput] | None = None
    arrays: dict[Preprocessing, np.ndarray] = field(default_factory=dict, repr=False)
    approximate: dict[Preprocessing, bool] = field(default_factory=dict, repr=False)  # JPEG draft mode scaled it


def probe(
    entry: Entry,
    root: str,
    preprocessings: Sequence[Preprocessing],
    known: Collection[str],
    limits,
) -> Analysed:
    """Read one file; decode it for each preprocessing unless its hash is ``known``; read its facts."""
    result = Analysed(entry)
    path = os.path.join(root, entry.path)
    try:
        if entry.size > limits.max_bytes:
            raise ImageDecodeError(f"file is {entry.size:,} bytes, over the limit of {limits.max_bytes:,} bytes")
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
        result.sha256 = hashlib.sha256(data).hexdigest()
        if result.sha256 in known:
            result.known = True
            return result
        for preprocessing in dict.fromkeys(preprocessings):
            pixels, approximate = load_model_input(data, preprocessing, limits=limits)
            result.arrays[preprocessing], result.approximate[preprocessing] = pixels, approximate
        try:
            result.facts = facts_of(data, colour_view(result.arrays))
            facts = result.facts
            result.width, result.height, result.taken_at, result.camera = (
                facts.width, facts.height, facts.taken_at, facts.camera)
        except Exception:  # broken EXIF or the like must not fail a photo that decodes fine
            pass
    except ImageDecodeError as exc:
        result.error = exc.reason if exc.path in (None, "<bytes>", "<image>") else str(exc)
        result.arrays.clear()
    except OSError as exc:
        result.error = f"cannot read file ({exc.strerror or exc})"
    except MemoryError:
        result.error = "out of memory while decoding"
        result.arrays.clear()
    return result


def model_outputs(recognizer: Recognizer, batch: np.ndarray, top_k: int,
                  sources: Sequence[str] | None = None,
                  approximate: Sequence[bool] | None = None) -> list[ModelOutput]:
    """Top labels and the embedding of each image of a preprocessed batch, from one model run.

    Scores, near-tie refinement (from ``sources``, the files the batch was
    decoded from) and the ignore mask are the recognizer's own
    (:meth:`Recognizer.score_and_embed`, :meth:`Recognizer.refine`: only rows whose decode was
    ``approximate``, all when None,
    :meth:`Recognizer.rank`), so the catalog holds what ``imagerec predict``
    says. The catalog keeps what each photo looks like, so the open-set
    "unknown" decision is not applied here.
    """
    scores, embeddings = recognizer.score_and_embed(batch)
    scores = Scores(scores.probabilities, None)
    if sources is not None:
        # A file rewritten between the two reads is indexed again on the next run (its mtime changed).
        scores = recognizer.refine(scores, sources, approximate)
    ranked = recognizer.rank(scores, top_k)
    return [
        ModelOutput([p.index for p in row], [p.score for p in row], None if embeddings is None else embeddings[i])
        for i, row in enumerate(ranked)
    ]


def analyse(
    entries: Iterable[Entry],
    root: str,
    recognizers: Sequence[Recognizer],
    *,
    known: Collection[str] = frozenset(),
    top_k: int = 5,
    workers: int | None = None,
    batch_size: int = 16,
) -> Iterator[list[Analysed]]:
    """Analyse files in order, yielding lists of up to ``batch_size`` results."""
    if not recognizers:
        raise ValueError("analyse needs at least one recognizer")
    preprocessings = [r.preprocessing for r in recognizers]
    limits = recognizers[0].limits
    workers = workers or default_workers()

    def work(entry: Entry) -> Analysed:
        return probe(entry, root, preprocessings, known, limits)

    # Reading runs a few batches ahead, so the threads keep decoding while this one scores a
    # batch and decodes its near-ties again (memory: one model-sized array per photo ahead).
    ahead = max(batch_size * AHEAD_BATCHES, workers * 4)
    for chunk in batches(ordered_map(work, entries, workers, window=ahead), batch_size):
        decoded = [item for item in chunk if item.arrays]
        if decoded:
            per_model: list[list[ModelOutput]] = []
            for recognizer in recognizers:
                batch = stack([item.arrays[recognizer.preprocessing] for item in decoded])
                sources = [os.path.join(root, item.entry.path) for item in decoded]
                approximate = [item.approximate[recognizer.preprocessing] for item in decoded]
                per_model.append(model_outputs(recognizer, batch, top_k, sources, approximate))
            for row, item in enumerate(decoded):
                item.outputs = [outputs[row] for outputs in per_model]
                item.arrays, item.approximate = {}, {}
        yield chunk
