"""The catalog's time-of-day index: the parts of the day each photo was taken in, where SQL can read them.

A content's ``daytime`` column holds :func:`.daytime.parts_mask` of its stored
EXIF time and GPS position — a bit per part (sunrise, sunset, night, morning,
afternoon, evening; they overlap), 0 without an EXIF time — and NULL until
computed. It is computed from the catalog alone, never by reading a photo:
when indexing records a photo (:func:`put_daytimes`), and for the rows of a
catalog made before the column existed, or whose time or position changed
since, at the end of the next index run (:func:`fill_daytimes`; an
up-to-date catalog computes nothing).

A search reads "sunset" off the index on ``daytime`` as the few masks that
have the sunset bit (:func:`masks_with`), and "sunset evening" as those that
have both, so a time of day no photo was taken at costs one look at the
index. While some rows are not computed yet (:func:`ready` is false), the
search tests each photo instead, as before the column existed.

>>> from imagerec.library.daytime import bit
>>> len(masks_with(["sunset"])), all(mask & bit("sunset") for mask in masks_with(["sunset"]))
(32, True)
>>> masks_with(["sunrise", "sunset", "night", "morning", "afternoon", "evening"])
[63]
"""

from __future__ import annotations

import sqlite3
from typing import Callable, Iterable, Sequence

from .daytime import DAYTIMES, bit, parts_mask

__all__ = ["fill_daytimes", "masks_with", "put_daytimes", "ready"]

_BATCH = 5000  # rows per transaction: an index run killed during the fill keeps what it committed


def masks_with(parts: Iterable[str]) -> list[int]:
    """Every ``daytime`` value of a photo taken at all of ``parts``, ascending."""
    need = 0
    for part in parts:
        need |= bit(part)
    return [mask for mask in range(1 << len(DAYTIMES)) if mask & need == need]


def ready(cat) -> bool:
    """Whether every content's parts of the day are computed (one look at the index)."""
    try:
        return cat.db.execute("SELECT 1 FROM contents WHERE daytime IS NULL LIMIT 1").fetchone() is None
    except sqlite3.OperationalError:  # no such column: a catalog older than the column
        return False


def _compute(cat, rows: Sequence[tuple[int, str | None, float | None, float | None]]) -> None:
    cat.db.executemany(
        "UPDATE contents SET daytime = ? WHERE id = ?",
        [(parts_mask(taken_at, latitude, longitude), content_id) for content_id, taken_at, latitude, longitude in rows],
    )
    # No mark_changed(): the generation counter moves for what readers cache (vector indexes), which this is not.


def put_daytimes(cat, content_ids: Sequence[int]) -> None:
    """Compute the parts of the day of ``content_ids`` from their stored time and position (in the caller's transaction)."""
    for start in range(0, len(content_ids), 500):
        chunk = list(content_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        _compute(cat, cat.db.execute(
            f"SELECT id, taken_at, latitude, longitude FROM contents WHERE id IN ({marks})", chunk).fetchall())


def fill_daytimes(cat, *, batch: int = _BATCH, on_progress: Callable[[int], None] | None = None) -> int:
    """Compute the parts of the day of every content that lacks them; how many (0 on an up-to-date catalog)."""
    done, after = 0, -1
    while True:
        rows = cat.db.execute(
            "SELECT id, taken_at, latitude, longitude FROM contents WHERE daytime IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after, batch),
        ).fetchall()
        if not rows:
            return done
        with cat.transaction():
            _compute(cat, rows)
        done, after = done + len(rows), rows[-1][0]
        if on_progress:
            on_progress(done)
