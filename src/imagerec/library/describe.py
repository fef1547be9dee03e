"""A title and a description for each photo, made only of what was recognised and read.

Like PhotoPrism's generated titles: what is in the photo (the general word
and the specific one — "a dog (Italian greyhound)"), its colours, when and
where, and with what camera. Nothing is invented: a part with no data is
left out, and a photo where no label reaches :data:`DESCRIBE_MIN_SCORE` says
so instead of guessing.

The general word is the label's WordNet ancestor that people say: the
shortest one-word name among its ancestors that cover at most 130 ImageNet
classes ("dog" over "hunting dog" and "canine", "bird" over "parrot", "cat"
over "feline"); labels of other models are used as they are.

>>> text = Description.build(
...     [("Italian greyhound", 0.83)], colours=[("brown", 0.5), ("white", 0.3)],
...     taken_at="2019:06:01 12:00:00", place="Paris, Île-de-France, France", camera="Apple iPhone 8")
>>> text.title
'Dog (Italian greyhound), Paris, June 2019'
>>> text.description
'A dog (Italian greyhound), mostly brown and white, taken on 1 June 2019 in Paris, Île-de-France, France with an Apple iPhone 8.'
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from functools import cache
from typing import Sequence

from .hierarchy import Hierarchy, _table

__all__ = ["DESCRIBE_MIN_SCORE", "Description", "describe_contents", "describe_image", "answer_labels", "describe_missing",
           "describe_photos", "general_word"]

DESCRIBE_MIN_SCORE = 0.3  # search's measured default (docs/library.md): a label below it is not said
_MAX_GENERAL = 130  # classes under a general word: "dog" (118) yes, "carnivore" (158) no


@cache
def _hierarchy() -> Hierarchy:
    """Built once per process: building it takes about 0.1 s, and indexing asks once per label."""
    return Hierarchy()


@cache
def _coverage() -> dict[int, int]:
    table, hierarchy = _table(), _hierarchy()
    counts: dict[int, int] = {}
    for offset in table.classes:
        for up in hierarchy.ancestors(offset) | {offset}:
            counts[up] = counts.get(up, 0) + 1
    return counts


def general_word(label: str, labels: Sequence[str] | None = None) -> str | None:
    """The everyday word for a label ("golden retriever" -> "dog"), or None when there is none.

    >>> general_word("golden retriever"), general_word("Egyptian cat"), general_word("macaw")
    ('dog', 'cat', 'bird')
    """
    hierarchy, table = _hierarchy(), _table()
    if labels is not None:
        synsets = hierarchy.class_synsets(labels)[list(labels).index(label)]
    elif label in table.labels:
        synsets = {table.classes[table.labels.index(label)]}
    else:
        synsets = hierarchy.synsets_named(label)
    coverage = _coverage()
    candidates = []
    for offset in synsets:
        for up in hierarchy.ancestors(offset):
            name = hierarchy.lemmas(up)[0]
            if " " not in name and "-" not in name and coverage.get(up, 0) <= _MAX_GENERAL:
                candidates.append((len(name), -coverage.get(up, 0), name))
    if not candidates:
        return None
    word = min(candidates)[2]
    return None if word.lower() == label.lower() else word


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _when(taken_at: str | None) -> tuple[str | None, str | None]:
    """("1 June 2019", "June 2019") from an EXIF date, or Nones."""
    try:
        year, month, day = (int(part) for part in (taken_at or "")[:10].split(":"))
        name = calendar.month_name[month]
    except (ValueError, IndexError):
        return None, None
    return f"{day} {name} {year}", f"{name} {year}"


@dataclass
class Description:
    """A photo's generated ``title`` and ``description``."""

    title: str
    description: str

    def to_dict(self) -> dict:
        """The JSON form (``imagerec describe --json``, ``POST /v1/describe``)."""
        return {"title": self.title, "description": self.description}

    @classmethod
    def build(
        cls,
        labels: Sequence[tuple[str, float]],
        *,
        colours: Sequence[tuple[str, float]] = (),
        taken_at: str | None = None,
        place: str | None = None,
        camera: str | None = None,
        general: dict[str, str | None] | None = None,
    ) -> "Description":
        """From the labels (best first, with scores), colours and EXIF facts of one photo."""
        sure = [(label, score) for label, score in labels if score >= DESCRIBE_MIN_SCORE]
        subject = title_subject = None
        if sure:
            label = sure[0][0]
            word = general[label] if general is not None and label in general else general_word(label)
            subject = f"{_article(word)} ({label})" if word else _article(label)
            title_subject = f"{word} ({label})" if word else label
        day, month = _when(taken_at)
        names = [name for name, _share in colours][:2]
        parts = [subject or "nothing recognised with confidence"]
        if names:
            parts.append("mostly " + " and ".join(names))
        sentence = ", ".join(parts)
        if day:
            sentence += f", taken on {day}"
        if place:
            sentence += f" in {place}"
        if camera:
            sentence += f" with {_article(camera)}"
        title_parts = [title_subject or (f"mostly {names[0]}" if names else "photo")]
        if place:
            title_parts.append(place.split(", ")[0])
        if month:
            title_parts.append(month)
        title = ", ".join(title_parts)
        return cls(title[:1].upper() + title[1:], sentence[:1].upper() + sentence[1:] + ".")


def describe_contents(cat, content_ids: Sequence[int]) -> dict[int, Description]:
    """The description of each content from what the catalog holds about it."""
    models = {row.id: row for row in cat.models()}
    imagenet_general: dict[tuple[int, int], str | None] = {}
    found: dict[int, Description] = {}
    for content_id in content_ids:
        row = cat.db.execute("SELECT taken_at, camera, place FROM contents WHERE id = ?", (content_id,)).fetchone()
        if row is None:
            continue
        predictions = cat.db.execute(
            "SELECT model_id, label, score FROM predictions WHERE content_id = ? ORDER BY score DESC", (content_id,)
        ).fetchall()
        labels, general = [], {}
        for model_id, label, score in predictions:
            name = models[model_id].labels[label]
            if (model_id, label) not in imagenet_general:
                try:
                    imagenet_general[(model_id, label)] = general_word(name, models[model_id].labels)
                except (ValueError, IndexError):
                    imagenet_general[(model_id, label)] = None
            general.setdefault(name, imagenet_general[(model_id, label)])
            labels.append((name, score))
        colours = cat.db.execute(
            "SELECT colour, share FROM colours WHERE content_id = ? ORDER BY share DESC", (content_id,)
        ).fetchall()
        found[content_id] = Description.build(labels, colours=colours, taken_at=row[0], place=row[2], camera=row[1],
                                              general=general)
    return found


def describe_missing(cat, batch: int = 500) -> int:
    """Write a title and description for every content that has facts but no description yet; how many."""
    done = 0
    while True:
        ids = [r[0] for r in cat.db.execute(
            "SELECT id FROM contents WHERE description IS NULL AND facts IS NOT NULL ORDER BY id LIMIT ?", (batch,))]
        if not ids:
            return done
        with cat.transaction():
            for content_id, text in describe_contents(cat, ids).items():
                cat.db.execute("UPDATE contents SET title = ?, description = ? WHERE id = ?",
                               (text.title, text.description, content_id))
            cat.db.execute(  # contents without predictions cannot be described: mark them, do not loop
                f"UPDATE contents SET description = '' WHERE description IS NULL AND id IN ({','.join('?' * len(ids))})",
                ids,
            )
            cat.mark_changed()
        done += len(ids)


def answer_labels(answer) -> list[tuple[str, float]]:
    """The (label, score) pairs a description may name: none when the answer was "unknown".

    A learned recognizer's closest class is not what the photo shows (a
    parrot is not "a food (hot dog)" because hot dog came closest).

    >>> from imagerec.answers import Answer, Prediction
    >>> answer_labels(Answer([Prediction("hot dog", 0.9, 0)], match=0.2, threshold=0.5))
    []
    >>> answer_labels(Answer([Prediction("macaw", 0.9, 88)]))
    [('macaw', 0.9)]
    """
    if getattr(answer, "unknown", False):
        return []
    return [(prediction.label, prediction.score) for prediction in answer]


def describe_image(data: bytes, labels: Sequence[tuple[str, float]]) -> Description:
    """One photo's description from its file bytes (EXIF date, camera and GPS place; colours) and the
    labels a model gave it, best first with their scores. Nothing is written anywhere.

    >>> from pathlib import Path
    >>> data = Path("../shared/photos/pets.jpg").read_bytes()
    >>> describe_image(data, [("Italian greyhound", 0.83)]).title    # doctest: +SKIP
    'Dog (Italian greyhound), July 2010'
    """
    from .facts import facts_of, place_name

    facts = facts_of(data)
    place = place_name(facts.latitude, facts.longitude) if facts.latitude is not None else None
    return Description.build(labels, colours=facts.colours, taken_at=facts.taken_at, place=place, camera=facts.camera)


def describe_photos(
    photos: Sequence[str], *, catalog=None, model: str = "mobilenet_v2"
) -> list[tuple[str, Description]]:
    """(photo, description) for each photo file: from the catalog when it holds the photo's content,
    else by recognising it with ``model`` and reading its EXIF (nothing is written anywhere)."""
    import hashlib
    import os

    from ..core.errors import UsageError
    from .catalog import Catalog, CatalogError, find_catalog

    cat = None
    try:
        cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog or find_catalog(), readonly=True)
    except (CatalogError, UsageError):
        if catalog is not None:
            raise
    recognizer = None
    out = []
    try:
        for photo in photos:
            if not os.path.isfile(photo):
                raise UsageError(f"{photo}: no such photo (expected an image file)")
            data = open(photo, "rb").read()
            content_id = cat.content_of(hashlib.sha256(data).hexdigest()) if cat is not None else None
            if content_id is not None:
                found = describe_contents(cat, [content_id]).get(content_id)
                if found is not None and found.description:
                    out.append((photo, found))
                    continue
            if recognizer is None:
                from ..loading import load

                recognizer = load(model)
            labels = answer_labels(recognizer.predict(photo, top_k=3)[0])
            out.append((photo, describe_image(data, labels)))
    finally:
        if cat is not None and not isinstance(catalog, Catalog):
            cat.close()
    return out
