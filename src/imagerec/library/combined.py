"""Searches of several terms combined with AND: "red bird", "dog on a beach", "cat 2019", "sunset iphone".

:func:`.query.read_query` reads the terms; here they become one SQL query
on the catalog. One term *drives* — the first thing, else the first colour,
else the date, camera or place — and is read from its index in score order
(label score, colour share, date taken); every other term is a condition on
each candidate, so the query stops after ``limit`` photos pass, as a
one-word search does. Photos are ranked by the driving term: "red bird" puts
the surest birds first, among the red ones.

>>> from imagerec.library import search
>>> hits = search("red bird 2019", catalog="photos/.imagerec/catalog.db")   # doctest: +SKIP
>>> hits[0].why                                                            # doctest: +SKIP
[{'term': 'red', 'read_as': 'colour', 'value': 0.41}, {'term': 'bird', 'read_as': 'thing', ...}, ...]
"""

from __future__ import annotations

from typing import Sequence

from .catalog import Catalog
from .hierarchy import Hierarchy
from .query import Term, read_query

__all__ = ["COLOUR_MIN_SHARE", "read_terms", "combined_search"]

# A photo is "red" when red covers at least this share of it (measured on the
# shared photos: the macaw's red feathers are 5 %, a red car fills 20-60 %).
COLOUR_MIN_SHARE = 0.15
_OK = "EXISTS (SELECT 1 FROM files f WHERE f.content_id = c.id AND f.status = 'ok')"


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
    if term.kind in ("camera", "place"):
        return f"c.{term.kind} IN ({','.join('?' * len(term.value))})", list(term.value)
    raise ValueError(f"no condition for a {term.kind} term")


def combined_search(cat: Catalog, terms: Sequence[Term], *, min_score: float, limit: int) -> list[tuple[int, float, dict]]:
    """(content id, score, what the driving term matched) of photos meeting every term, best first."""
    used = [t for t in terms if t.kind not in ("skipped",)]
    if not used or any(t.kind == "unknown" for t in used):
        return []
    driver = next((t for t in used if t.kind == "thing"), None) or next((t for t in used if t.kind == "colour"), None)
    driver = driver or used[0]
    # SQLite tests the conditions in the order written: the cheap column tests first (date, camera,
    # place), then lookups (colour, other things), the files check last (measured: 8x at 1M rows).
    cost = {"date": 0, "camera": 0, "place": 0, "colour": 1, "thing": 2}
    where, params = [], []
    for number, term in sorted(enumerate(used), key=lambda item: cost[item[1].kind]):
        if term is not driver:
            sql, values = _condition(term, number, min_score)
            where.append(sql)
            params += values
    conditions = " AND ".join([*where, _OK])
    narrow = _narrowest(cat, [t for t in used if t is not driver and t.kind in ("date", "camera", "place")])
    if narrow is not None and driver.kind in ("thing", "colour"):
        return _within(cat, driver, conditions, params, min_score, limit)
    if driver.kind == "thing":
        return _by_labels(cat, driver, conditions, params, min_score, limit)
    if driver.kind == "colour":
        rows = cat.db.execute(
            # CROSS JOIN keeps SQLite reading the colour index in share order (and stopping at LIMIT)
            # rather than starting from a date or camera index and sorting everything it finds.
            f"SELECT c.id, k.share FROM colours k CROSS JOIN contents c ON c.id = k.content_id"
            f" WHERE k.colour = ? AND k.share >= ? AND {conditions} ORDER BY k.share DESC, k.content_id LIMIT ?",
            [driver.value, COLOUR_MIN_SHARE, *params, limit],
        )
        return [(cid, float(share), {"colour": driver.value}) for cid, share in rows]
    sql, values = _condition(driver, len(used), min_score)
    rows = cat.db.execute(
        f"SELECT c.id FROM contents c WHERE {sql} AND {conditions} ORDER BY c.taken_at DESC, c.id DESC LIMIT ?",
        [*values, *params, limit],
    )
    return [(cid, 1.0, {}) for (cid,) in rows]


# Score bands read from the top: a photo in a lower band can never outrank one in a higher band,
# so the search stops after the first band that completes ``limit`` photos. Reading each label
# from its top down to a rising floor (the first design) cost 5-10x more once other terms filter
# out most photos: each label was read deep before the floor rose.
_BANDS = (0.99, 0.98, 0.96, 0.94, 0.92, 0.9, 0.87, 0.84, 0.8, 0.76, 0.72, 0.68, 0.64, 0.6, 0.56, 0.52,
          0.48, 0.44, 0.4, 0.36, 0.32, 0.28, 0.24, 0.2, 0.15, 0.1, 0.05, 0.0)  # narrow: a band is read whole


# Below this many photos, a date, camera or place term is read first and the rest checked on each.
_NARROW = 20_000


def _narrowest(cat: Catalog, terms: list[Term]) -> Term | None:
    """The column term matching fewest photos, if it matches fewer than :data:`_NARROW` (counted up to there)."""
    best = None
    for term in terms:
        sql, values = _condition(term, 0, 0.0)
        count = cat.db.execute(f"SELECT count(*) FROM (SELECT 1 FROM contents c WHERE {sql} LIMIT ?)",
                               [*values, _NARROW]).fetchone()[0]
        if count < _NARROW and (best is None or count < best[0]):
            best = (count, term)
    return None if best is None else best[1]


def _within(cat, driver: Term, conditions: str, params: list, min_score: float, limit: int):
    """Rank the few photos a narrow date, camera or place term allows by the driver's score.

    SQLite starts from that term's index (its conditions come first) and sorts what passes."""
    if driver.kind == "colour":
        score = "(SELECT share FROM colours k WHERE k.content_id = c.id AND k.colour = ?)"
        values = [driver.value]
    else:
        body, values = _thing_predictions(driver, min_score, "q")
        score = f"(SELECT max(q.score) {body})"
    floor = COLOUR_MIN_SHARE if driver.kind == "colour" else min_score
    # Photos without the colour or thing score NULL, which sorts last: dropped here, not in SQL,
    # so the score subquery runs once per photo.
    rows = [row for row in cat.db.execute(
        f"SELECT c.id, {score} AS s FROM contents c WHERE {conditions} ORDER BY s DESC, c.id LIMIT ?",
        [*values, *params, limit],
    ) if row[1] is not None and row[1] >= floor]
    if driver.kind == "colour":
        return [(cid, float(share), {"colour": driver.value}) for cid, share in rows]
    return _with_labels(cat, driver, rows)


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
