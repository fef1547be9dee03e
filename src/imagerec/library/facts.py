"""What indexing records about a photo besides its labels: colours, date, camera, place, size.

- **Colours**: the basic colour names covering the photo (:mod:`.colours`).
- **Date taken and camera**: from EXIF (``DateTimeOriginal``, ``Make`` +
  ``Model``), as before.
- **Position and place**: the EXIF GPS position, named offline by the
  ``reverse-geocode`` package (GeoNames' cities of 1,000 people or more, with
  their region and country; it ships the data, so nothing is downloaded):
  "Paris, Île-de-France, France".
- **Size**: upright width and height.

They live in the catalog's ``contents`` rows (``latitude``, ``longitude``,
``place``, ``facts`` = the :data:`FACTS_VERSION` that computed them) and its
``colours`` table; the cameras and places seen go to ``terms``, so a query
reads "iphone" or "paris" without scanning the catalog. A catalog made before
these fields existed gets them on its next ``imagerec index``: only the
contents whose ``facts`` is missing are read again (a small decode for the
colours), and an up-to-date catalog reads nothing.

>>> facts = Facts(width=4, height=3, colours=[("red", 0.6)], latitude=48.8566, longitude=2.3522)
>>> place_name(facts.latitude, facts.longitude)
'Paris, Île-de-France, France'
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Callable

import numpy as np

from ..core.images import DEFAULT_LIMITS, load_image
from ..core.preprocessing import Preprocessing
from .backfill import backfill
from .colours import COLOURS_VERSION, dominant_colours

__all__ = ["FACTS_VERSION", "Facts", "facts_of", "fill_missing_facts", "gps_position", "place_name", "put_facts"]

# Bump when what is computed changes: contents with an older version are read again.
FACTS_VERSION = 1
# The view colours are read from: what most models are fed (MobileNet's 224×224 centre crop), so
# indexing reuses the model's decoded pixels instead of decoding the photo a second time.
_COLOUR_VIEW = Preprocessing(size=(224, 224), resize="crop")


def colour_view(decoded: dict) -> "np.ndarray | None":
    """Among a photo's decoded arrays (by preprocessing), the one colours are read from, if there."""
    for preprocessing, pixels in decoded.items():
        same = (preprocessing.size, preprocessing.resize, preprocessing.frame, preprocessing.resample)
        if same == (_COLOUR_VIEW.size, _COLOUR_VIEW.resize, _COLOUR_VIEW.frame, _COLOUR_VIEW.resample):
            return pixels
    return None


@dataclass
class Facts:
    """What one content is, besides what a model sees in it."""

    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    colours: list[tuple[str, float]] = field(default_factory=list)


def read_facts(image) -> tuple[int, int, str | None, str | None]:
    """Upright width and height, EXIF date taken and camera of an opened PIL image."""
    width, height = image.size
    taken = camera = None
    try:
        exif = image.getexif()
        if exif.get(0x0112, 1) in (5, 6, 7, 8):  # stored turned by 90°
            width, height = height, width
        details = exif.get_ifd(0x8769)
        taken = details.get(36867) or details.get(36868) or exif.get(306)
        make, model = exif.get(271), exif.get(272)
        make, model = (str(part).strip("\x00 ") if part else "" for part in (make, model))
        # Many cameras repeat the make in the model ("Canon" + "Canon EOS 50D"): say it once.
        camera = (model if make and model.lower().startswith(make.lower()) else f"{make} {model}").strip() or None
        if isinstance(taken, bytes):
            taken = taken.decode("ascii", "replace")
        taken = str(taken).strip("\x00 ") if taken else None
    except Exception:  # broken EXIF must not fail a photo that decodes fine
        pass
    return width, height, taken, camera


def gps_position(image) -> tuple[float, float] | None:
    """(latitude, longitude) in degrees from an opened PIL image's EXIF GPS block, or None."""
    try:
        gps = image.getexif().get_ifd(0x8825)
        if not gps or 2 not in gps or 4 not in gps:
            return None

        def degrees(value, ref: str, negative: str) -> float:
            d, m, s = (float(part) for part in value)
            sign = -1.0 if str(ref).strip("\x00 ").upper() == negative else 1.0
            return sign * (d + m / 60 + s / 3600)

        lat = degrees(gps[2], gps.get(1, "N"), "S")
        lon = degrees(gps[4], gps.get(3, "E"), "W")
    except Exception:  # broken GPS data must not fail a photo that decodes fine
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat, lon) == (0.0, 0.0) or np.isnan(lat + lon):
        return None
    return round(lat, 6), round(lon, 6)


def facts_of(data: bytes, pixels: np.ndarray | None = None) -> Facts:
    """The facts of a photo file's bytes; ``pixels`` (its :func:`colour_view`, already decoded) spares a decode."""
    from PIL import Image


    facts = Facts()
    with Image.open(io.BytesIO(data)) as header:
        facts.width, facts.height, facts.taken_at, facts.camera = read_facts(header)
        position = gps_position(header)
    if position is not None:
        facts.latitude, facts.longitude = position
    if pixels is None:
        pixels = load_image(data, _COLOUR_VIEW, limits=DEFAULT_LIMITS)
    facts.colours = dominant_colours(pixels)
    return facts


@cache
def _geocoder():
    import reverse_geocode  # loads GeoNames' cities (about 1 s) on first use

    return reverse_geocode


def place_name(latitude: float, longitude: float) -> str | None:
    """The nearest GeoNames place of 1,000 people or more, with its region and country."""
    try:
        found = _geocoder().get((latitude, longitude))
    except Exception:
        return None
    parts = [found.get("city"), found.get("state"), found.get("country")]
    return ", ".join(dict.fromkeys(part for part in parts if part)) or None


def put_facts(cat, content_id: int, facts: Facts) -> None:
    """Record ``facts`` on a content row (inside the caller's transaction)."""
    place = place_name(facts.latitude, facts.longitude) if facts.latitude is not None else None
    cat.db.execute(
        "UPDATE contents SET width = coalesce(?, width), height = coalesce(?, height),"
        " taken_at = coalesce(?, taken_at), camera = coalesce(?, camera),"
        " latitude = ?, longitude = ?, place = ?, facts = ?, colours_version = ?,"
        " daytime = NULL WHERE id = ?",  # time of day: again
        (facts.width, facts.height, facts.taken_at, facts.camera, facts.latitude, facts.longitude, place,
         FACTS_VERSION, COLOURS_VERSION, content_id),
    )
    cat.db.execute("DELETE FROM colours WHERE content_id = ?", (content_id,))
    cat.db.executemany(
        "INSERT INTO colours (content_id, colour, share) VALUES (?, ?, ?)",
        [(content_id, name, share) for name, share in facts.colours],
    )
    terms = [("camera", facts.camera), ("place", place)]
    cat.db.executemany("INSERT OR IGNORE INTO terms (kind, value) VALUES (?, ?)", [t for t in terms if t[1]])
    cat.mark_changed()


def missing_facts(cat) -> list[tuple[int, str]]:
    """(content id, one present path) of every content whose facts are missing or out of date."""
    return cat.db.execute(
        "SELECT c.id, min(f.path) FROM contents c JOIN files f ON f.content_id = c.id AND f.status = 'ok'"
        " WHERE c.facts IS NULL OR c.facts < ? GROUP BY c.id ORDER BY c.id",
        (FACTS_VERSION,),
    ).fetchall()


def fill_missing_facts(
    cat,
    root: str | os.PathLike[str],
    *,
    workers: int | None = None,
    batch_size: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Compute the facts of contents that lack them (a catalog from before they existed); how many."""
    return backfill(cat, root, missing_facts(cat), facts_of, put_facts,
                    workers=workers, batch_size=batch_size, on_progress=on_progress)

