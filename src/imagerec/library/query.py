"""Read a search query the way people write it: "red bird", "dog on a beach", "cat 2019", "sunset iphone".

The query is cut into terms, longest first (up to three words: "hot dog",
"golden retriever", "new york"), and each term is read, in this order, as:

1. a **date**: a year (``2019``), a month (``2019-06``, ``june 2019``), a day
   (``2019-06-01``) or a range (``2018..2020``, ``2019-06..2019-08``); a
   month name alone (``june``, ``in june``) is that month of any year
   (kind ``month``);
2. a **time of day**: ``sunrise``, ``sunset``, ``night``, ``morning``,
   ``afternoon``, ``evening`` (``dawn``, ``dusk``; plurals too), matched
   against the EXIF time and GPS position (:mod:`.daytime`);
3. a **colour**: one of the eleven basic colour names (:mod:`.colours`);
4. a **camera**: words of a camera make/model seen in this catalog ("iphone",
   "canon eos");
5. a **place**: words of a place name seen in this catalog ("paris", "france");
6. a **thing**: a word the labels mean, through WordNet (:mod:`.hierarchy`);
6. otherwise an English stop word ("on", "a", "the": scikit-learn's list) is
   skipped, and anything else is a term nothing can match — which, as terms
   are combined with AND, makes the query match nothing (and says why).

>>> [(t.text, t.kind) for t in read_query("red bird 2019", things=lambda words: words == "bird")]
[('red', 'colour'), ('bird', 'thing'), ('2019', 'date')]
>>> read_query("june 2019")[0].value
('2019:06', '2019:07')
>>> read_query("2018..2020")[0].reading
'taken from 2018 to 2020'
>>> [(t.kind, t.value) for t in read_query("sunset in june")]
[('daytime', 'sunset'), ('skipped', None), ('month', 6)]
"""

from __future__ import annotations

import ast
import calendar
import importlib.util
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, Sequence

from .colours import colour_name
from .daytime import read_daytime
from .daytime import reading as daytime_reading

__all__ = ["Term", "read_query", "date_range"]

_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
# A month alone is only its full name ("june", not "jun" or "mar"), so short words stay words.
_MONTH_NAMES = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?$")


@dataclass
class Term:
    """One term of a query and how it was read.

    ``kind`` is ``date``, ``month``, ``daytime``, ``colour``, ``camera``,
    ``place``, ``thing``, ``skipped`` or ``unknown``; ``value`` what the
    search uses (a date range of EXIF-style strings, a month number, a time
    of day, a colour name, camera or place names, label indices per model);
    ``reading`` says it in words.
    """

    text: str
    kind: str
    reading: str
    value: Any = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {"term": self.text, "read_as": self.kind, "reading": self.reading}
        data.update(self.details)
        return data


def _exif(year: int, month: int | None = None, day: int | None = None) -> str:
    """The prefix of an EXIF date ("2019:06:01 12:00:00") for a year, month or day."""
    text = f"{year:04d}"
    if month is not None:
        text += f":{month:02d}"
        if day is not None:
            text += f":{day:02d}"
    return text


def _after(year: int, month: int | None, day: int | None) -> str:
    """The first EXIF prefix after the given year, month or day."""
    import datetime as dt

    if month is None:
        return _exif(year + 1)
    if day is None:
        return _exif(year + (month == 12), 1 if month == 12 else month + 1)
    following = dt.date(year, month, day) + dt.timedelta(days=1)
    return _exif(following.year, following.month, following.day)


def _one_date(text: str) -> tuple[int, int | None, int | None] | None:
    words = text.split()
    if len(words) == 2:  # "june 2019" or "2019 june"
        month = _MONTHS.get(words[0]) or _MONTHS.get(words[1])
        year = words[1] if words[0] in _MONTHS else words[0]
        if month and year.isdigit() and len(year) == 4:
            return int(year), month, None
        return None
    match = _DATE.match(text)
    if not match:
        return None
    year, month, day = (int(part) if part else None for part in match.groups())
    if not 1800 <= year <= 2200 or month is not None and not 1 <= month <= 12:
        return None
    if day is not None:
        try:
            calendar.monthrange(year, month)  # type: ignore[arg-type]
            if not 1 <= day <= calendar.monthrange(year, month)[1]:  # type: ignore[arg-type]
                return None
        except (ValueError, TypeError):
            return None
    return year, month, day


def date_range(text: str) -> tuple[str, str] | None:
    """``[start, end)`` as EXIF date prefixes for a date, month, year or ``A..B`` range; None if not a date.

    >>> date_range("2019-06-30"), date_range("2019..2020"), date_range("dog")
    (('2019:06:30', '2019:07:01'), ('2019', '2021'), None)
    """
    text = text.strip().lower()
    first, dots, last = text.partition("..")
    if dots:
        start, end = _one_date(first.strip()), _one_date(last.strip())
        if start is None or end is None:
            return None
        low, high = _exif(*start), _after(*end)
        return (low, high) if low < high else None
    one = _one_date(text)
    return None if one is None else (_exif(*one), _after(*one))


def _describe_range(text: str, value: tuple[str, str]) -> str:
    first, dots, last = text.partition("..")
    return f"taken from {first.strip()} to {last.strip()}" if dots else f"taken in {text}"


def _names_with_words(names: Sequence[str], words: str) -> list[str]:
    """The names that contain every word of ``words`` as a whole word (case-insensitive)."""
    wanted = words.lower().split()
    found = []
    for name in names:
        present = set(re.findall(r"[\w']+", name.lower()))
        if all(word in present for word in wanted):
            found.append(name)
    return found


@cache
def _stop_words() -> frozenset[str]:
    """scikit-learn's English stop words, read from its source file: importing scikit-learn for them
    (it imports SciPy) cost a search 1.7 s in every new process."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without running it
    source = Path(spec.origin).parent / "feature_extraction" / "_stop_words.py" if spec and spec.origin else None
    try:
        for node in ast.parse(source.read_text(encoding="utf-8")).body:  # type: ignore[union-attr]
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ENGLISH_STOP_WORDS" for t in node.targets):
                return frozenset(ast.literal_eval(node.value.args[0]))  # frozenset([...])
    except (AttributeError, IndexError, OSError, SyntaxError, ValueError):
        pass  # another layout of a later release: import it, slowly but surely
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def read_query(
    query: str,
    *,
    cameras: Sequence[str] = (),
    places: Sequence[str] = (),
    things: Callable[[str], Any] = lambda words: None,
    max_words: int = 3,
) -> list[Term]:
    """The terms of ``query``, each read (see the module docstring).

    ``things(words)`` returns what a thing term means (truthy) or a falsy
    value; ``cameras`` and ``places`` are the names this catalog has seen.
    """
    words = query.lower().replace(",", " ").split()
    terms: list[Term] = []
    stop = None
    position = 0
    while position < len(words):
        for size in range(min(max_words, len(words) - position), 0, -1):
            text = " ".join(words[position : position + size])
            term = _read_span(text, cameras, places, things)
            if term is not None:
                break
        else:
            text, size = words[position], 1
            stop = stop if stop is not None else _stop_words()
            term = (
                Term(text, "skipped", "a common word, skipped")
                if text in stop
                else Term(text, "unknown", "not a thing, colour, date, camera or place known here")
            )
        terms.append(term)
        position += size
    return terms


def _read_span(text: str, cameras, places, things) -> Term | None:
    dates = date_range(text)
    if dates is not None:
        return Term(text, "date", _describe_range(text, dates), dates)
    if " " not in text:
        if text in _MONTH_NAMES:
            name = calendar.month_name[_MONTH_NAMES[text]]
            return Term(text, "month", f"taken in {name} of any year (the EXIF date)", _MONTH_NAMES[text])
        part = read_daytime(text)
        if part is not None:
            return Term(text, "daytime", daytime_reading(part), part)
        colour = colour_name(text)
        if colour is not None:
            return Term(text, "colour", f"mostly {colour} (a colour)", colour)
    found = _names_with_words(cameras, text)
    if found:
        return Term(text, "camera", "taken with " + " or ".join(found), found)
    found = _names_with_words(places, text)
    if found:
        shown = " or ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else "")
        return Term(text, "place", "taken in " + shown, found)
    meaning = things(text)
    if meaning:
        return Term(text, "thing", "", meaning)
    return None
