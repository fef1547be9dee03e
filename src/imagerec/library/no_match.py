"""Why a search found nothing, said in words: how each term was read, and what the catalog holds for it.

A search that finds nothing says so in one line that names the reason,
never a guess at another word when the word was understood:

- a term read as something the catalog has no photo of: "sunset" read as a
  time of day, and no photo records when it was taken (or none was taken
  then); a colour no photo has; a year no dated photo is from;
- a thing no photo scores ``min_score`` for: its best score, and how many
  photos a lower ``--min-score`` would show;
- each term matching photos on its own, but none all of them together;
- a word that was not understood at all: only then "did you mean", with
  other words than the one typed.

:func:`account` gives each term's reading (the ``term``, ``read_as`` and
``reading`` of ``--json``'s ``why``) with ``photos``, how many photos the
term alone matches, and, when none, ``why_none``; :func:`headline` makes the
line from them.

>>> headline("sunset", [{"term": "sunset", "read_as": "daytime", "reading": "taken at sunset", "photos": 0,
...                      "why_none": "no photo in this catalog records when it was taken"}])
"no photos match 'sunset': 'sunset' was read as a time of day — taken at sunset — but no photo in this catalog records when it was taken"
>>> headline("red bird", [{"term": "red", "read_as": "colour", "reading": "mostly red", "photos": 3},
...                       {"term": "bird", "read_as": "thing", "reading": "59 labels", "photos": 2}])
"no photos match 'red bird': each term matches photos on its own (red: 3 photos, bird: 2 photos), but no photo matches all of them"
>>> headline("zzyzx", [{"term": "zzyzx", "read_as": "unknown", "reading": "not known here"}], ["zyzzyva"])
"no photos match 'zzyzx': 'zzyzx' is not a thing, colour, date, camera or place known here (did you mean: zyzzyva?)"
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .catalog import Catalog
from .combined import (
    COLOUR_MIN_SHARE,
    best_score,
    colours_present,
    dated_photos,
    term_photos,
)
from .query import Term

__all__ = ["KIND_NAMES", "account", "headline", "term_line"]

KIND_NAMES = {
    "thing": "a thing", "colour": "a colour", "date": "a date", "month": "a month", "daytime": "a time of day",
    "camera": "a camera", "place": "a place", "skipped": "a common word", "unknown": "nothing known here",
}
_CAP = 1000  # photos counted per term: enough to say "many"


def _photos(count: int) -> str:
    shown = f"{count:,}" + ("+" if count >= _CAP else "")
    return f"{shown} photo{'' if count == 1 else 's'}"


def _day(exif: str) -> str:
    return exif[:10].replace(":", "-")


def account(cat: Catalog, terms: Sequence[Term], *, min_score: float) -> list[dict]:
    """Each term's reading, with how many photos it alone matches (``photos``) and, if none, why (``why_none``)."""
    dated: tuple[int, str | None, str | None, int] | None = None
    out = []
    for term in terms:
        entry = term.to_dict()
        if term.kind not in ("skipped", "unknown"):
            entry["photos"] = term_photos(cat, term, min_score=min_score, cap=_CAP)
            if entry["photos"] == 0:
                if term.kind in ("date", "month", "daytime") and dated is None:
                    dated = dated_photos(cat)
                entry.update(_why_none(cat, term, min_score, dated))
        out.append(entry)
    return out


def _why_none(cat: Catalog, term: Term, min_score: float, dated) -> dict:
    """``why_none`` (and, for a thing, ``best_score``) of a term that matches no photo."""
    if term.kind == "thing":
        best = best_score(cat, term)
        if best is None:
            return {"why_none": "no photo has one of its labels among the labels indexing kept", "best_score": None}
        lower = math.floor(best * 100) / 100 or math.floor(best * 10_000) / 10_000  # at or under the best score
        return {"best_score": round(best, 6), "why_none": (
            f"no photo scores {min_score:g} or more for it; the best score is {best:.3f}:"
            f" --min-score {lower:g} would let it match {_photos(term_photos(cat, term, min_score=lower, cap=_CAP))}")}
    if term.kind in ("date", "month", "daytime"):
        count, first, last, undated = dated
        if count == 0:
            return {"why_none": "no photo in this catalog records when it was taken (no EXIF date)"}
        when = {"date": term.reading.removeprefix("taken "), "month": f"in {term.text.removeprefix('in ').title()}",
                "daytime": f"at {term.value}" if term.value in ("sunrise", "sunset", "night") else f"in the {term.value}"}
        span = f"from {_day(first)} to {_day(last)}" if _day(first) != _day(last) else f"on {_day(first)}"
        others = f"; the other {_photos(undated)} do not record it" if undated else ""
        return {"why_none": f"none of the {_photos(count)} that record when they were taken ({span}) was taken"
                            f" {when[term.kind]}{others}"}
    if term.kind == "colour":
        present = colours_present(cat)
        here = f" (the colours here: {', '.join(present)})" if present else ""
        return {"why_none": f"no photo is {term.value} on at least {round(COLOUR_MIN_SHARE * 100)} % of it{here}"}
    return {"why_none": f"no photo still in the library was {'taken with' if term.kind == 'camera' else 'taken in'}"
                        f" {' or '.join(term.value)}"}


def headline(query: str, entries: Sequence[dict], hints: Sequence[str] = ()) -> str:
    """The one line that says why ``query`` matched nothing, from :func:`account`'s entries.

    ``hints`` are the "did you mean" words for the terms that were not understood (shown only for those).
    """
    start = f"no photos match {query!r}"
    used = [e for e in entries if e["read_as"] != "skipped"]
    unknown = [e for e in used if e["read_as"] == "unknown"]
    if unknown:
        words = ", ".join(repr(e["term"]) for e in unknown)
        more = f" (did you mean: {', '.join(hints)}?)" if hints else ""
        verb = "is" if len(unknown) == 1 else "are"
        return f"{start}: {words} {verb} not a thing, colour, date, camera or place known here{more}"
    if not used:
        return f"{start}: it has only common words, which are skipped (say what is in the photos)"
    empty = [e for e in used if e.get("photos") == 0]
    if empty:
        reasons = "; ".join(
            f"{e['term']!r} was read as {KIND_NAMES[e['read_as']]} — {e['reading']} — but {e['why_none']}" for e in empty)
        return f"{start}: {reasons}"
    counts = ", ".join(f"{e['term']}: {_photos(e['photos'])}" for e in used)
    return f"{start}: each term matches photos on its own ({counts}), but no photo matches all of them"


def term_line(entry: dict) -> str:
    """One term of :func:`account` in a few words: "cat: thing — 13 labels (…) — 3 photos alone".

    >>> term_line({"term": "blue", "read_as": "colour", "reading": "mostly blue (a colour)", "photos": 1000})
    'blue: colour — mostly blue (a colour) — 1,000+ photos alone'
    """
    count = f" — {_photos(entry['photos'])} alone" if "photos" in entry else ""
    return f"{entry['term']}: {entry['read_as']} — {entry['reading']}{count}"
