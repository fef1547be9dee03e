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
'A dog (Italian greyhound), mostly brown with white, taken on 1 June 2019 in Paris, Île-de-France, France with an Apple iPhone 8.'
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from functools import cache
from typing import Callable, Iterator, Sequence

from ..core.errors import ImageDecodeError, ImagerecError, ImageTooLargeError, UsageError
from ..core.images import DEFAULT_LIMITS
from .colours import COLOUR_MIN_SHARE
from .hierarchy import Hierarchy, _table

__all__ = ["DESCRIBE_MIN_SCORE", "DESCRIPTIONS_VERSION", "Description", "answer_labels", "camera_said", "colour_phrase",
           "describe_contents", "describe_image", "describe_missing", "describe_photos", "general_word",
           "iter_descriptions", "reword_descriptions"]

DESCRIBE_MIN_SCORE = 0.3  # search's measured default (docs/library.md): a label below it is not said
SOME_SHARE = 0.10  # a colour on 10-15 % of a photo is said as "with some"; under 10 % it is not said
# How descriptions are worded: 1 = "mostly" and the two largest colours; 2 = colour_phrase; 3 = the general
# words of the 41 ImageNet labels whose sense the WordNet table used to get wrong ("a slab (abacus)" is now
# "a device (abacus)"). A catalog whose descriptions an older wording wrote has them written again, from the
# catalog alone, by the next index run.
DESCRIPTIONS_VERSION = 3
MOSTLY_SHARE = 0.5  # "mostly red" only when red has half the photo (or is the only colour said)
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


# The general words of ImageNet labels (of all 232) that are not counted: "food (hotdog)", never "a food".
_UNCOUNTED = frozenset({"armor", "attire", "brass", "durables", "equipment", "food", "furniture", "hosiery", "jewelry",
                        "makeup", "tights"})
_AN_BEFORE_CONSONANT = ("hour", "honest", "honor", "honour", "heir")
_A_BEFORE_VOWEL = ("uni", "use", "usu", "ura", "uro", "uti", "eu", "ewe", "one", "once")
_AN_LETTERS = "AEFHILMNORSX"  # letters whose names start with a vowel sound: an HTC, an LG, an SUV


def _article(word: str) -> str:
    """The word after "a" or "an" as it is said: a uniform, an hourglass, a European, an HTC phone.

    >>> [_article(w) for w in ("uniform", "umbrella", "hourglass", "European fire salamander", "HTC One", "SONY")]
    ['a uniform', 'an umbrella', 'an hourglass', 'a European fire salamander', 'an HTC One', 'a SONY']
    """
    first = word.split(" ")[0]
    low = word.lower()
    if first.isupper() and len(first) <= 3:  # said letter by letter
        vowel_sound = first[:1] in _AN_LETTERS
    elif low.startswith(_AN_BEFORE_CONSONANT):
        vowel_sound = True
    else:
        vowel_sound = low[:1] in "aeiou" and not low.startswith(_A_BEFORE_VOWEL)
    return ("an " if vowel_sound else "a ") + word


# Company words a camera's EXIF make carries ("NIKON CORPORATION", "OLYMPUS IMAGING CORP."): not said.
_COMPANY_WORDS = frozenset({"corporation", "corp", "co", "ltd", "limited", "inc", "company", "imaging"})


def camera_said(camera: str) -> str:
    """A camera as people say it: the make without its company words, said once.

    >>> camera_said("NIKON CORPORATION NIKON D750"), camera_said("OLYMPUS IMAGING CORP. E-M1")
    ('NIKON D750', 'OLYMPUS E-M1')
    >>> camera_said("Apple iPhone 8")
    'Apple iPhone 8'
    """
    words: list[str] = []
    for word in camera.split():
        if word.lower().strip(",.") in _COMPANY_WORDS or (words and word.lower() == words[-1].lower()):
            continue
        words.append(word)
    return " ".join(words) or camera


def _listed(words: Sequence[str]) -> str:
    """ "red", "red and blue", "red, green and blue"."""
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def colour_phrase(colours: Sequence[tuple[str, float]]) -> tuple[str | None, str | None]:
    """How a description says a photo's colours (best first, with their shares), and the title's shorter form.

    The colours a search finds (a share of at least :data:`.colours.COLOUR_MIN_SHARE`) are named
    first; the photo is "mostly" one colour only when it has half the photo or is the only one so
    named; colours with :data:`SOME_SHARE` or more are "some". Smaller shares are not said.

    >>> colour_phrase([("brown", 0.31), ("red", 0.18), ("green", 0.14), ("blue", 0.13)])
    ('in brown and red with some green and blue', 'Brown and red')
    >>> colour_phrase([("green", 0.65), ("brown", 0.15), ("grey", 0.11)])
    ('mostly green with brown and some grey', 'Mostly green')
    >>> colour_phrase([("brown", 0.83), ("red", 0.10)])
    ('mostly brown with some red', 'Mostly brown')
    >>> colour_phrase([("brown", 0.42), ("black", 0.30), ("white", 0.23)])
    ('in brown, black and white', 'Brown, black and white')
    >>> colour_phrase([("blue", 0.51), ("grey", 0.18), ("brown", 0.17), ("white", 0.11)])
    ('mostly blue with grey, brown and some white', 'Mostly blue')
    >>> colour_phrase([("green", 0.8), ("black", 0.08)])
    ('mostly green', 'Mostly green')
    >>> colour_phrase([])
    (None, None)
    """
    colours = sorted(colours, key=lambda colour: -colour[1])
    main = [name for name, share in colours if share >= COLOUR_MIN_SHARE]
    minor = [name for name, share in colours if SOME_SHARE <= share < COLOUR_MIN_SHARE]
    some = [f"some {_listed(minor)}"] if minor else []
    if not main:
        return (f"with {some[0]}", None) if some else (None, None)
    if len(main) == 1 or colours[0][1] >= MOSTLY_SHARE:
        title = f"mostly {main[0]}"
        rest = main[1:] + some
        said = title + (f" with {_listed(rest)}" if rest else "")
    else:
        title = _listed(main)
        said = f"in {title}" + (f" with {some[0]}" if some else "")
    return said, title[:1].upper() + title[1:]


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
            subject = f"{word if word in _UNCOUNTED else _article(word)} ({label})" if word else _article(label)
            title_subject = f"{word} ({label})" if word else label
        day, month = _when(taken_at)
        said, title_colours = colour_phrase(colours)
        parts = [subject or "nothing recognised with confidence"]
        if said:
            parts.append(said)
        sentence = ", ".join(parts)
        if day:
            sentence += f", taken on {day}"
        if place:
            sentence += f" in {place}"
        if camera:
            sentence += f" with {_article(camera_said(camera))}"
        title_parts = [title_subject or title_colours or "photo"]
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


def reword_descriptions(cat) -> int:
    """Clear the descriptions an older wording wrote (``meta.descriptions_version`` differs from
    :data:`DESCRIPTIONS_VERSION`), so that :func:`describe_missing` writes them again from the catalog —
    no photo is read; how many. Clearing and recording the version is one transaction: a run killed
    while describing again leaves the rest cleared, and the next run describes them."""
    if cat.meta("descriptions_version") == str(DESCRIPTIONS_VERSION):
        return 0
    with cat.transaction():
        cleared = cat.db.execute(
            "UPDATE contents SET description = NULL WHERE description IS NOT NULL AND description != ''").rowcount
        cat.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('descriptions_version', ?)",
                       (str(DESCRIPTIONS_VERSION),))
        cat.mark_changed()
    return cleared


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
    photos: Sequence[str],
    *,
    catalog=None,
    model: str = "mobilenet_v2",
    on_error: Callable[[str, ImagerecError], None] | None = None,
) -> list[tuple[str, Description]]:
    """(photo, description) for each photo file: from the catalog when it holds the photo's content,
    else by recognising it with ``model`` and reading its EXIF (nothing is written anywhere).

    A photo that cannot be described (missing, a folder, not an image) raises its one-line
    :class:`~imagerec.core.errors.ImagerecError`; with ``on_error`` it is passed there instead
    and the other photos are still described.

    >>> problems = []
    >>> describe_photos(["no/such.jpg"], catalog=None, on_error=lambda photo, error: problems.append(str(error)))
    []
    >>> problems
    ['no/such.jpg: no such file']
    """
    return list(iter_descriptions(photos, catalog=catalog, model=model, on_error=on_error))


def iter_descriptions(
    photos: Sequence[str],
    *,
    catalog=None,
    model: str = "mobilenet_v2",
    on_error: Callable[[str, ImagerecError], None] | None = None,
) -> Iterator[tuple[str, Description]]:
    """:func:`describe_photos` one photo at a time, as each is described (``imagerec describe`` prints
    each at once: a long list shows its first photos while the rest are recognised)."""
    import hashlib

    from .catalog import Catalog, CatalogError, find_catalog

    cat = None
    try:
        cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog or find_catalog(), readonly=True)
    except (CatalogError, UsageError):
        if catalog is not None:
            raise
    recognizer = None
    try:
        for photo in photos:
            try:
                data = _read_photo(photo)
                content_id = cat.content_of(hashlib.sha256(data).hexdigest()) if cat is not None else None
                if content_id is not None:
                    found = describe_contents(cat, [content_id]).get(content_id)
                    if found is not None and found.description:
                        yield photo, found
                        continue
                if recognizer is None:
                    from ..loading import load

                    recognizer = load(model)
                labels = answer_labels(recognizer.predict(photo, top_k=3)[0])  # as imagerec predict answers
                try:
                    described = describe_image(data, labels)
                except (OSError, ValueError) as exc:  # recognised, yet its header or EXIF cannot be read
                    raise ImageDecodeError(f"cannot read its EXIF or colours ({exc})", path=photo) from exc
            except ImagerecError as exc:
                if on_error is None:
                    raise
                on_error(photo, exc)
                continue
            yield photo, described
    finally:
        if cat is not None and not isinstance(catalog, Catalog):
            cat.close()


def _read_photo(photo: str) -> bytes:
    """The bytes of a photo file, or a one-line error: missing, a folder, unreadable, too large."""
    import os

    if os.path.isdir(photo):
        raise UsageError(f"{photo}: a folder, not a photo (describe its photos: imagerec describe {photo}/*.jpg)")
    if not os.path.exists(photo):
        raise UsageError(f"{photo}: no such file")
    try:
        with open(photo, "rb") as handle:
            data = handle.read(DEFAULT_LIMITS.max_bytes + 1)
    except OSError as exc:
        raise UsageError(f"{photo}: cannot be read ({exc.strerror or exc})") from exc
    if len(data) > DEFAULT_LIMITS.max_bytes:
        raise ImageTooLargeError(f"file over the limit of {DEFAULT_LIMITS.max_bytes:,} bytes", path=photo)
    return data
