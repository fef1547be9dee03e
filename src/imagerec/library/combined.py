"""Searches of several terms combined with AND: "red bird", "dog on a beach", "cat 2019", "sunset iphone".

:func:`.query.read_query` reads the terms; here they become SQL queries
on the catalog. One term *drives* the ranking — the first thing, else the
first colour, else the date — and photos are ranked by it: "red bird" puts
the surest birds first, among the red ones. Two plans answer a query, and
the cheaper is chosen per query from counts read off the indexes:

- **scan**: read the driving term from its index in score order (label
  score, colour share, date taken) and test every other term on each
  candidate, stopping after ``limit`` photos pass. Cheap when the other
  terms let many photos through ("red bird", "dog 2019").
- **narrowest first**: when another term matches few photos (fewer than
  about ``sqrt(limit × photos)``, counted up to there: then scanning would
  read more candidates than that term has), read that term's photos, test
  the rest, score each by the driving term and sort ("blue june 2019":
  3,300 photos of a million; "dog on a beach": the few beach photos).
  Whether each photo still has a file is checked on the page only. A
  query with no thing or colour, ranked newest first, is planned the same
  way ("night" in a library of few night photos: those few, sorted).

A time of day ("sunset", "night") is read off the catalog's index of each
photo's parts of the day (:mod:`.daytime_index`); the time-of-day terms of a
query are read together ("afternoon night": the photos taken at both), so a
time of day no photo was taken at costs one look at the index. A catalog
whose parts of the day are not all computed yet tests each photo instead.

>>> from imagerec.library import search
>>> hits = search("red bird 2019", catalog="photos/.imagerec/catalog.db")   # doctest: +SKIP
>>> hits[0].why                                                            # doctest: +SKIP
[{'term': 'red', 'read_as': 'colour', 'value': 0.41}, {'term': 'bird', 'read_as': 'thing', ...}, ...]
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from . import daytime, daytime_index
from .catalog import Catalog
from .colours import COLOUR_MIN_SHARE
from .hierarchy import Hierarchy
from .query import Term, read_query

__all__ = ["COLOUR_MIN_SHARE", "best_score", "combined_search", "colours_present", "dated_photos", "read_terms",
           "term_photos"]

_OK = "EXISTS (SELECT 1 FROM files f WHERE f.content_id = c.id AND f.status = 'ok')"
_DAYTIME = "imagerec_daytime"  # the SQL function of daytime.matches, registered on the connection when needed
# SQLite tests the conditions in the order written: the cheap column tests first (the indexed parts of
# the day are one), then lookups, the time of day tested in Python (a catalog whose parts of the day are
# not all computed yet, a few microseconds) next, the files check last (measured: 8x at 1M rows).
_COST = {"date": 0, "month": 0, "camera": 0, "place": 0, "parts": 0, "colour": 1, "thing": 2, "daytime": 3}
_INDEXED = ("thing", "colour", "date", "camera", "place", "parts")  # kinds whose photos an index lists


def _known_terms(cat: Catalog, kind: str) -> list[str]:
    try:
        return [row[0] for row in cat.db.execute("SELECT value FROM terms WHERE kind = ? ORDER BY value", (kind,))]
    except Exception:  # a catalog not yet migrated (read-only) has no terms table
        return []


def read_terms(query: str, cat: Catalog, hierarchy: Hierarchy, model: str | None = None) -> list[Term]:
    """The terms of ``query`` read against this catalog's models, cameras and places."""
    models = [cat.model(model)] if model else cat.models()

    def things(words: str):
        found = {}
        for row in models:
            matched = hierarchy.match(words, row.labels, row.synonyms)
            if matched:
                found[row.id] = matched
        return found

    terms = read_query(query, cameras=_known_terms(cat, "camera"), places=_known_terms(cat, "place"), things=things)
    names = {row.id: row for row in models}
    for term in terms:
        if term.kind == "thing":
            count = sum(len(labels) for labels in term.value.values())
            meanings = hierarchy.meanings(term.text)
            how = [f"{m.relation} {m.name}" for m in meanings if m.relation != "is"]
            examples = sorted({names[m].labels[i] for m, labels in term.value.items() for i in labels})[:3]
            term.reading = (
                f"{', '.join(dict.fromkeys(how)) + ': ' if how else ''}{count} label{'s' if count != 1 else ''}"
                f" ({', '.join(examples)}{', …' if count > len(examples) else ''})"
            )
            term.details = {"labels": count, "via": list(dict.fromkeys(how))}
    return terms


def _thing_condition(term: Term, min_score: float, alias: str) -> tuple[str, list]:
    """``EXISTS (...)``: the photo has a matching label scoring at least ``min_score``."""
    body, params = _thing_predictions(term, min_score, alias)
    return f"EXISTS (SELECT 1 {body})", params


def _thing_predictions(term: Term, min_score: float, alias: str) -> tuple[str, list]:
    """``FROM predictions ... WHERE ...``: the photo's matching labels scoring at least ``min_score``."""
    parts, params = [], []
    for model_id, labels in term.value.items():
        marks = ",".join("?" * len(labels))
        # "+" keeps SQLite on the photo's own few predictions (content_id is the key's first column)
        # instead of one key lookup per label: "dog" has 118 of them.
        parts.append(f"({alias}.model_id = ? AND +{alias}.label IN ({marks}))")
        params += [model_id, *labels]
    body = f"FROM predictions {alias} WHERE {alias}.content_id = c.id AND {alias}.score >= ? AND ({' OR '.join(parts)})"
    return body, [min_score, *params]


def _condition(term: Term, number: int, min_score: float) -> tuple[str, list]:
    """SQL (on ``contents c``) that a photo meets ``term``."""
    if term.kind == "thing":
        return _thing_condition(term, min_score, f"p{number}")
    if term.kind == "colour":
        return (
            f"EXISTS (SELECT 1 FROM colours k{number} WHERE k{number}.content_id = c.id"
            f" AND k{number}.colour = ? AND k{number}.share >= ?)",
            [term.value, COLOUR_MIN_SHARE],
        )
    if term.kind == "date":
        return "(c.taken_at >= ? AND c.taken_at < ?)", list(term.value)
    if term.kind == "month":  # IS NOT NULL bounds an index scan in date order to dated photos
        return "(c.taken_at IS NOT NULL AND substr(c.taken_at, 6, 2) = ?)", [f"{term.value:02d}"]
    if term.kind == "daytime":
        start, end = daytime.clock_window(term.value)
        clock = "substr(c.taken_at, 12, 2) {} ? {} substr(c.taken_at, 12, 2) < ?".format(">=", "AND" if start < end else "OR")
        hours = [f"{start:02d}", f"{end:02d}"]
        if term.value not in daytime.BY_SUN:
            return f"(c.taken_at IS NOT NULL AND ({clock}))", hours
        # The sun only for photos with a GPS position (Python, cached per place and day); the clock in SQL otherwise.
        return (f"(c.taken_at IS NOT NULL AND CASE WHEN c.latitude IS NULL OR c.longitude IS NULL THEN ({clock})"
                f" ELSE {_DAYTIME}(?, c.taken_at, c.latitude, c.longitude) END)", [*hours, term.value])
    if term.kind in ("camera", "place"):
        return f"c.{term.kind} IN ({','.join('?' * len(term.value))})", list(term.value)
    if term.kind == "parts":  # the parts of the day, indexed: every mask holding all the query's parts
        return f"c.daytime IN ({','.join('?' * len(term.value))})", list(term.value)
    raise ValueError(f"no condition for a {term.kind} term")


def combined_search(cat: Catalog, terms: Sequence[Term], *, min_score: float, limit: int) -> list[tuple[int, float, dict]]:
    """(content id, score, what the driving term matched) of photos meeting every term, best first."""
    used = [t for t in terms if t.kind not in ("skipped",)]
    if not used or any(t.kind == "unknown" for t in used):
        return []
    if any(t.kind == "daytime" for t in used):
        if daytime_index.ready(cat):
            used = _with_parts(used)
        else:  # some photos' parts of the day are not computed yet: test each photo, as before the index
            cat.db.create_function(_DAYTIME, 4, daytime.matches, deterministic=True)
    driver = next((t for t in used if t.kind == "thing"), None) or next((t for t in used if t.kind == "colour"), None)
    if driver is None:
        return _by_date(cat, used, min_score, limit)
    others = [t for t in used if t is not driver]
    source = _narrowest(cat, others, min_score, limit)
    if source is not None:
        return _within(cat, driver, source, [t for t in others if t is not source], min_score, limit)
    conditions, params = _conditions(others, min_score)
    if driver.kind == "thing":
        return _by_labels(cat, driver, conditions, params, min_score, limit)
    rows = cat.db.execute(
        # CROSS JOIN keeps SQLite reading the colour index in share order (and stopping at LIMIT)
        # rather than starting from a date or camera index and sorting everything it finds.
        f"SELECT c.id, k.share FROM colours k CROSS JOIN contents c ON c.id = k.content_id"
        f" WHERE k.colour = ? AND k.share >= ? AND {conditions} ORDER BY k.share DESC, k.content_id LIMIT ?",
        [driver.value, COLOUR_MIN_SHARE, *params, limit],
    )
    return [(cid, float(share), {"colour": driver.value}) for cid, share in rows]


def _with_parts(terms: Sequence[Term]) -> list[Term]:
    """The time-of-day terms as one term read off the index (kind ``parts``: the masks holding all of them),
    where the first of them was."""
    parts = [t.value for t in terms if t.kind == "daytime"]
    merged = replace(next(t for t in terms if t.kind == "daytime"), kind="parts", value=daytime_index.masks_with(parts))
    out: list[Term] = []
    for term in terms:
        if term.kind != "daytime":
            out.append(term)
        elif not any(t is merged for t in out):
            out.append(merged)
    return out


def _conditions(terms: Sequence[Term], min_score: float, *, files: bool = True) -> tuple[str, list]:
    """The terms as one SQL condition on ``contents c``, cheapest first (then the files check)."""
    where, params = [], []
    for number, term in sorted(enumerate(terms), key=lambda item: _COST[item[1].kind]):
        sql, values = _condition(term, number, min_score)
        where.append(sql)
        params += values
    if files:
        where.append(_OK)
    return " AND ".join(where) or "1", params


def _by_date(cat: Catalog, terms: Sequence[Term], min_score: float, limit: int) -> list[tuple[int, float, dict]]:
    """Photos meeting date, month, time-of-day, camera and place terms, newest first.

    Read newest first, testing each photo, unless a term's photos are fewer than that would read
    (:func:`_narrowest`): then those photos, tested and sorted."""
    source = _narrowest(cat, terms, min_score, limit)
    if source is None:
        conditions, params = _conditions(terms, min_score)
        # No term is narrow (counted above): walk the dates newest first and stop at the page. Left to
        # itself SQLite may start from a broad term's index when it has no statistics for it (a catalog
        # analysed before the parts of the day were indexed) and sort all it finds: "sunset" read
        # 133,000 photos that way (205 ms at 1M rows instead of 6: bench/search_quality.py).
        rows = cat.db.execute(
            f"SELECT c.id FROM contents c INDEXED BY contents_by_taken WHERE {conditions}"
            " ORDER BY c.taken_at DESC, c.id DESC LIMIT ?", [*params, limit]
        )
        return [(cid, 1.0, {}) for (cid,) in rows]
    listing, listed = _listing(source, min_score)
    rest = [t for t in terms if t is not source]

    def run(files: bool) -> list:
        conditions, params = _conditions(rest, min_score, files=files)
        return cat.db.execute(
            f"SELECT c.id, 1.0 FROM ({listing}) s CROSS JOIN contents c ON c.id = s.id WHERE {conditions}"
            " ORDER BY c.taken_at DESC, c.id DESC LIMIT ?", [*listed, *params, limit]).fetchall()

    return [(cid, 1.0, {}) for cid, _ in _page_with_files(cat, run, limit)]


def _page_with_files(cat: Catalog, run, limit: int) -> list:
    """``run(files)``'s rows, whether each photo still has a file asked of the page only (a third of the cost
    when asked of every candidate), unless some of a full page had none: then of every candidate."""
    rows = run(False)
    kept = _with_files(cat, [row[0] for row in rows])
    if len(kept) < len(rows) and len(rows) == limit:
        return run(True)  # some of the page has no file any more: let SQL skip them all
    return [row for row in rows if row[0] in kept]


# Score bands read from the top: a photo in a lower band can never outrank one in a higher band,
# so the search stops after the first band that completes ``limit`` photos. Reading each label
# from its top down to a rising floor (the first design) cost 5-10x more once other terms filter
# out most photos: each label was read deep before the floor rose.
_BANDS = (0.99, 0.98, 0.96, 0.94, 0.92, 0.9, 0.87, 0.84, 0.8, 0.76, 0.72, 0.68, 0.64, 0.6, 0.56, 0.52,
          0.48, 0.44, 0.4, 0.36, 0.32, 0.28, 0.24, 0.2, 0.15, 0.1, 0.05, 0.0)  # narrow: a band is read whole


def _count(cat: Catalog, term: Term, min_score: float, cap: int) -> int:
    """How many photos ``term`` matches, counted on its index up to ``cap``."""
    sql, values = _listing(term, min_score)
    return int(cat.db.execute(f"SELECT count(*) FROM (SELECT 1 FROM ({sql}) LIMIT ?)", [*values, cap]).fetchone()[0])


def _listing(term: Term, min_score: float) -> tuple[str, list]:
    """SQL listing the ids (column ``id``) of the photos ``term`` matches, read from its index."""
    if term.kind == "thing":
        parts, params = [], []
        for model_id, labels in term.value.items():
            parts.append(f"SELECT content_id AS id FROM predictions WHERE model_id = ? AND label IN ({','.join('?' * len(labels))})"
                         " AND score >= ?")
            params += [model_id, *labels, min_score]
        return " UNION ALL ".join(parts), params
    if term.kind == "colour":
        return "SELECT content_id AS id FROM colours WHERE colour = ? AND share >= ?", [term.value, COLOUR_MIN_SHARE]
    sql, values = _condition(term, 0, min_score)
    return f"SELECT c.id AS id FROM contents c WHERE {sql}", values


def _narrowest(cat: Catalog, terms: Sequence[Term], min_score: float, limit: int) -> Term | None:
    """The term whose photos are cheaper to read whole than scanning the driver's, if any.

    Scanning reads about ``limit / share`` candidates when the other terms let ``share`` of the
    photos through; reading a term whose ``count`` photos are listed on an index costs ``count``.
    With ``share = count / photos`` the narrow term wins when ``count < sqrt(limit × photos)``,
    so each term is counted up to there and no further (a few milliseconds at most).
    """
    indexed = [t for t in terms if t.kind in _INDEXED]
    if not indexed:
        return None
    photos = cat.db.execute("SELECT coalesce(max(id), 0) FROM contents").fetchone()[0]  # the rowid: instant
    cap = max(1000, math.isqrt(limit * max(photos, 1)) + 1)
    counted = sorted((_count(cat, term, min_score, cap), number) for number, term in enumerate(indexed))
    count, number = counted[0]
    return indexed[number] if count < cap else None


def _within(cat: Catalog, driver: Term, source: Term, rest: Sequence[Term], min_score: float, limit: int):
    """Rank the photos of a narrow ``source`` term that meet the ``rest`` by the driver's score.

    Whether each photo still has a file is asked of the page only (a third of the cost when asked of
    every candidate), unless some of the page had none: then of every candidate."""
    if driver.kind == "colour":
        score = "(SELECT k.share FROM colours k WHERE k.content_id = c.id AND k.colour = ? AND k.share >= ?)"
        values = [driver.value, COLOUR_MIN_SHARE]
    else:
        body, values = _thing_predictions(driver, min_score, "q")
        score = f"(SELECT max(q.score) {body})"
    listing, listed = _listing(source, min_score)
    columns = any(t.kind not in ("thing", "colour") for t in rest)
    # The listing drives (CROSS JOIN); a contents row is read only when a term needs its columns.
    if source.kind == "thing":  # a photo may have several of the labels
        listing = f"SELECT DISTINCT id FROM ({listing})"
    origin = f"({listing}) s CROSS JOIN contents c ON c.id = s.id" if columns else f"({listing}) c"

    def run(files: bool) -> list:
        conditions, params = _conditions(rest, min_score, files=files)
        # Photos without the driving colour or thing score NULL, which sorts last: dropped here, not
        # in SQL, so the score subquery runs once per photo.
        return [row for row in cat.db.execute(
            f"SELECT c.id, {score} AS s FROM {origin} WHERE {conditions} ORDER BY s DESC, c.id LIMIT ?",
            [*values, *listed, *params, limit],
        ) if row[1] is not None]

    rows = _page_with_files(cat, run, limit)
    if driver.kind == "colour":
        return [(cid, float(share), {"colour": driver.value}) for cid, share in rows]
    return _with_labels(cat, driver, rows)


def _with_files(cat: Catalog, ids: list[int]) -> set[int]:
    """The contents among ``ids`` that have a file in the library (status ``ok``)."""
    if not ids:
        return set()
    marks = ",".join("?" * len(ids))
    return {cid for (cid,) in cat.db.execute(
        f"SELECT DISTINCT content_id FROM files WHERE status = 'ok' AND content_id IN ({marks})", ids)}


def _with_labels(cat, driver: Term, rows: list) -> list[tuple[int, float, dict]]:
    """Which matching label gave each photo its score (one query for all of them)."""
    ids = [cid for cid, _ in rows]
    wanted = {(model_id, label) for model_id, labels in driver.value.items() for label in labels}
    best: dict[int, tuple[float, int, int]] = {}
    if ids:
        marks = ",".join("?" * len(ids))
        for cid, model_id, label, score in cat.db.execute(
            f"SELECT content_id, model_id, label, score FROM predictions WHERE content_id IN ({marks})", ids
        ):
            if (model_id, label) in wanted and (cid not in best or score > best[cid][0]):
                best[cid] = (score, model_id, label)
    return [(cid, float(score), {"model_id": best[cid][1], "label": best[cid][2]}) for cid, score in rows]


def _by_labels(cat, driver: Term, conditions: str, params: list, min_score: float, limit: int):
    """The best ``limit`` photos by their best matching label, read band by band from the top."""
    best: dict[int, tuple[float, int, int]] = {}
    high = 1.01
    for low in [band for band in _BANDS if band > min_score] + [min_score]:
        for model_id, labels in driver.value.items():
            # One query per band for all the labels: SQLite walks the label index once per label
            # within the band and sorts what passes the other terms (a few rows per band).
            marks = ",".join("?" * len(labels))
            rows = cat.db.execute(
                "SELECT c.id, p.score, p.label FROM predictions p CROSS JOIN contents c ON c.id = p.content_id"
                f" WHERE p.model_id = ? AND p.label IN ({marks}) AND p.score >= ? AND p.score < ? AND {conditions}"
                " ORDER BY p.score DESC LIMIT ?",
                [model_id, *labels, low, high, *params, limit],
            )
            for content_id, score, label in rows:
                if content_id not in best or score > best[content_id][0]:
                    best[content_id] = (score, model_id, label)
        if len(best) >= limit:
            break
        high = low
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
    return [(cid, score, {"model_id": model_id, "label": label}) for cid, (score, model_id, label) in ranked]


# -- what the catalog holds for one term (to say why a search found nothing) ---------------------------


def term_photos(cat: Catalog, term: Term, *, min_score: float, cap: int = 1000) -> int:
    """How many photos still in the library ``term`` alone matches, counted up to ``cap``."""
    return len(combined_search(cat, [term], min_score=min_score, limit=cap))


def best_score(cat: Catalog, term: Term) -> float | None:
    """The best score a photo still in the library has for one of a thing term's labels; None if none has one."""
    best = None
    for model_id, labels in term.value.items():
        (score,) = cat.db.execute(
            f"SELECT max(p.score) FROM predictions p WHERE p.model_id = ? AND p.label IN ({','.join('?' * len(labels))})"
            " AND EXISTS (SELECT 1 FROM files f WHERE f.content_id = p.content_id AND f.status = 'ok')",
            [model_id, *labels],
        ).fetchone()
        if score is not None and (best is None or score > best):
            best = float(score)
    return best


def dated_photos(cat: Catalog, cap: int = 1000) -> tuple[int, str | None, str | None, int]:
    """(how many photos still in the library record when they were taken, the first and last EXIF date,
    how many do not), each count up to ``cap``.

    The dates come from the ``taken_at`` index, first and last that a present file has, and the counts
    stop at ``cap``: a million-photo catalog answers in milliseconds (counting every row took 4 s).
    """
    def count(condition: str) -> int:
        return cat.db.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM contents c WHERE {condition} AND {_OK} LIMIT ?)", (cap,)
        ).fetchone()[0]

    def end(order: str) -> str | None:
        row = cat.db.execute(
            f"SELECT c.taken_at FROM contents c WHERE c.taken_at IS NOT NULL AND {_OK} ORDER BY c.taken_at {order} LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    return count("c.taken_at IS NOT NULL"), end("ASC"), end("DESC"), count("c.taken_at IS NULL")


def colours_present(cat: Catalog) -> list[str]:
    """The colours that some photo still in the library has (at :data:`COLOUR_MIN_SHARE`), the commonest first."""
    return [colour for colour, _ in cat.db.execute(
        f"SELECT k.colour, count(*) AS n FROM colours k JOIN contents c ON c.id = k.content_id WHERE k.share >= ? AND {_OK}"
        " GROUP BY k.colour ORDER BY n DESC, k.colour", [COLOUR_MIN_SHARE])]
