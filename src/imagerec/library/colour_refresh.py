"""Name the stored colours of a catalog again when the colour naming changed — and nothing else.

Each content row records which naming computed its colours
(``contents.colours_version``, :data:`.colours.COLOURS_VERSION`; NULL on a
catalog migrated from before the column, whose colours were named the old
way). :func:`refresh_colours` finds the contents named by an older version,
reads one file of each and decodes it small (the 224×224 view colours are
read from), names its colours, and clears its description so that
:func:`.describe.describe_missing` writes it again from the catalog ("mostly
red and blue"). Nothing is recognised, no EXIF or place is read again, and
on an up-to-date catalog nothing is read at all. Each batch is one
transaction: a run killed half-way keeps what it committed and the next one
carries on.

>>> from imagerec.library import Catalog
>>> with Catalog("photos/.imagerec/catalog.db", root="photos") as cat:   # doctest: +SKIP
...     refresh_colours(cat, "photos")
16
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..core.images import DEFAULT_LIMITS, load_image
from .backfill import backfill
from .colours import COLOURS_VERSION, dominant_colours
from .facts import _COLOUR_VIEW

__all__ = ["refresh_colours", "stale_colours"]


def stale_colours(cat) -> list[tuple[int, str]]:
    """(content id, one present path) of every content whose colours an older naming computed.

    Contents without facts yet are left to :func:`.facts.fill_missing_facts`, which names their colours too.
    """
    return cat.db.execute(
        "SELECT c.id, min(f.path) FROM contents c JOIN files f ON f.content_id = c.id AND f.status = 'ok'"
        " WHERE c.facts IS NOT NULL AND (c.colours_version IS NULL OR c.colours_version < ?) GROUP BY c.id ORDER BY c.id",
        (COLOURS_VERSION,),
    ).fetchall()


def _colours_of(data: bytes) -> list[tuple[str, float]]:
    return dominant_colours(load_image(data, _COLOUR_VIEW, limits=DEFAULT_LIMITS))


def _store(cat, content_id: int, colours: list[tuple[str, float]]) -> None:
    cat.db.execute("DELETE FROM colours WHERE content_id = ?", (content_id,))
    cat.db.executemany("INSERT INTO colours (content_id, colour, share) VALUES (?, ?, ?)",
                       [(content_id, name, share) for name, share in colours])
    # The description says the colours: written again from the catalog by describe_missing.
    cat.db.execute("UPDATE contents SET colours_version = ?, description = NULL WHERE id = ?",
                   (COLOURS_VERSION, content_id))


def refresh_colours(
    cat,
    root: str | os.PathLike[str],
    *,
    workers: int | None = None,
    batch_size: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Name again the colours of every content an older naming computed; how many (0 when up to date)."""
    return backfill(cat, root, stale_colours(cat), _colours_of, _store,
                    workers=workers, batch_size=batch_size, on_progress=on_progress)
