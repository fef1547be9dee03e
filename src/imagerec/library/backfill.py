"""Bring catalog rows up to date from their files: read each file once, compute, store a batch at a time.

A catalog made by an older release lacks what a newer one records (EXIF
facts, colours named a newer way). :func:`backfill` reads one present file of
each content that needs it, on worker threads and in order, computes the
missing value from the file's bytes, and stores the results one transaction
per batch: a run killed half-way keeps what it committed and the next one
carries on. A file changed, removed or broken since it was indexed is
skipped; the next run's stat sees to it.

>>> import sqlite3, tempfile, os
>>> folder = tempfile.mkdtemp()
>>> open(os.path.join(folder, "a.txt"), "wb").write(b"four")
4
>>> class Cat:  # the catalog's transaction() is all backfill needs of it
...     db = sqlite3.connect(":memory:")
...     def transaction(self): return self.db
>>> stored = {}
>>> backfill(Cat(), folder, [(1, "a.txt"), (2, "gone.txt")], len, lambda cat, cid, n: stored.update({cid: n}))
1
>>> stored
{1: 4}
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..core.errors import ImageDecodeError
from ..core.images import DEFAULT_LIMITS
from ..core.pipeline import batches, default_workers, ordered_map

__all__ = ["backfill"]

T = TypeVar("T")


def backfill(
    cat: Any,
    root: str | os.PathLike[str],
    todo: Sequence[tuple[int, str]],
    compute: Callable[[bytes], T],
    store: Callable[[Any, int, T], None],
    *,
    workers: int | None = None,
    batch_size: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """``store(cat, content_id, compute(bytes))`` for each (content id, path under ``root``) of ``todo``; how many."""
    if not todo:
        return 0
    base = os.fspath(root)

    def read(item: tuple[int, str]) -> tuple[int, T | None]:
        content_id, path = item
        try:
            with open(os.path.join(base, path), "rb") as handle:
                data = handle.read(DEFAULT_LIMITS.max_bytes + 1)
            return content_id, compute(data)
        except (OSError, ImageDecodeError, ValueError):
            return content_id, None  # changed or broken since: the next run's stat sees to it

    done = 0
    for chunk in batches(ordered_map(read, todo, workers or default_workers()), batch_size):
        with cat.transaction():
            for content_id, value in chunk:
                if value is not None:
                    store(cat, content_id, value)
                    done += 1
        if on_progress:
            on_progress(done, len(todo))
    return done
