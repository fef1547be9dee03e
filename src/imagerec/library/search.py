"""Ask the catalog: photos with a dog, photos like this one, near-identical photos.

- :func:`search` matches a word against label names, their synonyms and
  their WordNet ancestors (:mod:`.hierarchy`) and ranks photos by the best
  score of a matching label. Each matching label is read from an index in
  score order, so a query costs milliseconds at a million photos.
- :func:`similar` ranks photos by cosine similarity of their embeddings to a
  photo's (:mod:`.vectors`: exact for small libraries, approximate beyond).
- :func:`duplicates` groups photos with the same bytes, and photos whose
  embeddings are nearly identical (resized, recompressed, lightly edited).

>>> from imagerec.library import search
>>> [hit.path for hit in search("parrot", catalog="photos/.imagerec/catalog.db")]  # doctest: +SKIP
['parrot.jpg']
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import UsageError
from .catalog import Catalog, ModelRow, find_catalog
from . import daytime
from .combined import combined_search, read_terms
from .hierarchy import Hierarchy, normalize
from .no_match import account, headline
from .vectors import EXACT_LIMIT, ApproximateIndex, build_index

__all__ = ["DEFAULT_MIN_SCORE", "Hit", "DuplicateGroup", "search", "explain", "why_no_match", "why_text", "similar",
           "duplicates", "suggest", "open_catalog"]

_HIERARCHY: Hierarchy | None = None
# Chosen from bench/search_quality.py (docs/library.md): on 1,000 CIFAR-10 photos + the shared photos,
# 0.3 gives the best precision@10 (0.93; mean precision 0.88 against 0.83 at 0.2) for 77 % of 0.2's recall.
DEFAULT_MIN_SCORE = 0.3


def _hierarchy() -> Hierarchy:
    global _HIERARCHY
    if _HIERARCHY is None:
        _HIERARCHY = Hierarchy()
    return _HIERARCHY


@dataclass
class Hit:
    """One photo in a result: its path (relative to the library root) and score."""

    path: str
    score: float
    root: str = ""
    label: str | None = None
    model: str = ""
    matched: str | None = None  # the query word or ancestor that made the label match
    why: list[dict] = field(default_factory=list)  # each query term and what it matched in this photo
    description: str | None = None  # the photo's generated description, when the catalog has one

    @property
    def file(self) -> Path:
        """The absolute path of the photo."""
        return Path(self.root) / self.path

    def to_dict(self) -> dict:
        data = {"path": self.path, "file": str(self.file), "score": round(float(self.score), 6), "model": self.model}
        if self.label is not None:
            data["label"] = self.label
            data["matched"] = self.matched
        if self.why:
            data["why"] = self.why
        if self.description:
            data["description"] = self.description
        return data


@dataclass
class DuplicateGroup:
    """Photos that are the same picture: ``identical`` bytes or ``similar`` embeddings."""

    paths: list[str]
    kind: str
    similarity: float
    root: str = ""
    files: list[Path] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "similarity": round(float(self.similarity), 6), "paths": self.paths}


def why_text(why: Sequence[dict]) -> str:
    """The ``why`` of a hit in a few words: "red 41 %, macaw 0.916, taken 2019-06-01, Apple iPhone 8".

    >>> why_text([{"term": "red", "read_as": "colour", "share": 0.41}, {"term": "2019", "read_as": "date", "taken_at": "2019:06:01 12:00:00"}])
    'red 41 %, taken 2019-06-01'
    """
    parts = []
    for entry in why:
        kind = entry.get("read_as")
        if kind == "thing" and entry.get("label"):
            parts.append(f"{entry['label']} {entry['score']:.3f}")
        elif kind == "colour" and entry.get("share") is not None:
            parts.append(f"{entry.get('colour', entry['term'])} {entry['share']:.0%}".replace("%", " %"))
        elif kind in ("date", "month") and entry.get("taken_at"):
            parts.append("taken " + entry["taken_at"].split(" ")[0].replace(":", "-"))  # EXIF writes 2019:06:01
        elif kind == "daytime" and entry.get("taken_at"):
            parts.append(f"{entry['term']} ({entry['taken_at'][11:16]}, by the {entry.get('by') or 'clock'})")
        elif kind in ("camera", "place") and entry.get(kind):
            parts.append(entry[kind])
    return ", ".join(parts)


def open_catalog(catalog: str | os.PathLike[str] | Catalog | None) -> Catalog:
    """A read-only catalog for a path, the default one, or an already open one."""
    if isinstance(catalog, Catalog):
        return catalog
    return Catalog(catalog if catalog is not None else find_catalog(), readonly=True)


class _Opened:
    """Open a catalog for the length of a call unless the caller passed one open."""

    def __init__(self, catalog) -> None:
        self.given = isinstance(catalog, Catalog)
        self.catalog = open_catalog(catalog)

    def __enter__(self) -> Catalog:
        return self.catalog

    def __exit__(self, *exc_info) -> None:
        if not self.given:
            self.catalog.close()


# -- label search -------------------------------------------------------------


def search(
    query: str,
    *,
    catalog: str | os.PathLike[str] | Catalog | None = None,
    model: str | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    limit: int = 50,
) -> list[Hit]:
    """Photos matching every term of ``query``, best first.

    A thing matches when one of a photo's top labels (by any model in the
    catalog, or by ``model``) is named by it, has it as a synonym, or
    descends from it in WordNet, with a score of at least ``min_score``;
    colours, dates, cameras and places match what indexing recorded
    (:mod:`.query` says how a query is read, :mod:`.combined` how terms combine).
    Each hit's ``why`` says what each term matched in it.
    """
    if not query.strip():
        raise UsageError("empty search query (expected a word such as 'dog')")
    if limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    with _Opened(catalog) as cat:
        terms = [t for t in read_terms(query, cat, _hierarchy(), model) if t.kind != "skipped"]
        return _combined(cat, terms, min_score, limit)


def _combined(cat: Catalog, terms: list, min_score: float, limit: int) -> list[Hit]:
    """A search of several terms (or of one colour, date, camera or place)."""
    found = combined_search(cat, terms, min_score=min_score, limit=limit)
    ids = [content_id for content_id, _, _ in found]
    facts = _facts(cat, ids)
    paths = cat.paths_of(ids)
    models = {row.id: row for row in cat.models()}
    # The driving thing's label and score come with each hit: look up only the other terms.
    leader = next((t for t in terms if t.kind == "thing"), None) if found and "label" in found[0][2] else None
    looked_up = [{} if term is leader else _look_up(cat, term, ids) for term in terms]
    hits, owners = [], []
    root = str(cat.root)  # once: each call reads the catalog's meta table
    for content_id, score, matched in found:
        label = model = None
        via = driver = None
        if "label" in matched:
            row = models[matched["model_id"]]
            label, model = row.labels[matched["label"]], row.name
            # The word that made the label match: the query word, or the WordNet ancestor it reached.
            driver = next(t for t in terms if t.kind == "thing")
            via = driver.value[matched["model_id"]][matched["label"]]
        why = []
        for number, term in enumerate(terms):
            if label is not None and term is driver:  # already known: no query
                why.append({"term": term.text, "read_as": "thing", "label": label, "score": round(float(score), 6)})
            else:
                why.append(_why(term, looked_up[number].get(content_id), facts.get(content_id, {}), models))
        for path in paths.get(content_id, []):
            hits.append(Hit(path, score, root, label, model or "", via, why))
            owners.append(content_id)
    _add_descriptions(cat, hits, owners)
    return hits[:limit]


def _facts(cat: Catalog, ids: list[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for cid, taken, camera, place, latitude, longitude in cat.db.execute(
            f"SELECT id, taken_at, camera, place, latitude, longitude FROM contents WHERE id IN ({marks})", chunk
        ):
            found[cid] = {"taken_at": taken, "camera": camera, "place": place, "latitude": latitude, "longitude": longitude}
    return found


def _look_up(cat: Catalog, term, ids: list[int]) -> dict[int, tuple]:
    """What a thing or colour term matched in each photo of ``ids``, in one query for the page:
    ``{content id: (model id, label, score)}`` or ``{content id: (share,)}``."""
    found: dict[int, tuple] = {}
    if not ids or term.kind not in ("thing", "colour"):
        return found
    marks = ",".join("?" * len(ids))
    if term.kind == "colour":
        for content_id, share in cat.db.execute(
            f"SELECT content_id, share FROM colours WHERE colour = ? AND content_id IN ({marks})", [term.value, *ids]
        ):
            found[content_id] = (share,)
        return found
    for model_id, labels in term.value.items():
        wanted = set(labels)
        for content_id, label, score in cat.db.execute(
            f"SELECT content_id, label, score FROM predictions WHERE model_id = ? AND content_id IN ({marks})", [model_id, *ids]
        ):
            if label in wanted and (content_id not in found or score > found[content_id][2]):
                found[content_id] = (model_id, label, score)
    return found


def _why(term, looked_up: tuple | None, facts: dict, models: dict[int, ModelRow]) -> dict:
    """What ``term`` matched in one photo (``looked_up``: from :func:`_look_up`): the label and score,
    colour share, date, time of day, camera or place."""
    why = {"term": term.text, "read_as": term.kind}
    if term.kind == "thing":
        if looked_up:
            model_id, label, score = looked_up
            why.update(label=models[model_id].labels[label], score=round(float(score), 6))
    elif term.kind == "colour":
        why.update(colour=term.value, share=round(float(looked_up[0]), 3) if looked_up else None)
    elif term.kind in ("date", "month"):
        why["taken_at"] = facts.get("taken_at")
    elif term.kind == "daytime":
        moment = daytime.moment(term.value, facts.get("taken_at"), facts.get("latitude"), facts.get("longitude"))
        why.update(taken_at=facts.get("taken_at"), by=moment["by"], how=moment["how"])
    elif term.kind in ("camera", "place"):
        why[term.kind] = facts.get(term.kind)
    return why


def _add_descriptions(cat: Catalog, hits: list[Hit], owners: list[int]) -> None:
    """Fill each hit's description from the catalog (``owners[i]`` is hit i's content id)."""
    ids = list(dict.fromkeys(owners))
    if not ids:
        return
    try:
        marks = ",".join("?" * len(ids))
        rows = dict(cat.db.execute(f"SELECT id, description FROM contents WHERE id IN ({marks})", ids).fetchall())
    except Exception:  # an old read-only catalog without the column
        return
    for hit, owner in zip(hits, owners):
        hit.description = rows.get(owner)


def explain(
    query: str,
    catalog: str | os.PathLike[str] | Catalog | None = None,
    model: str | None = None,
    *,
    min_score: float | None = None,
) -> list[dict]:
    """How each term of ``query`` is read: ``[{"term", "read_as", "reading", ...}]``.

    ``read_as`` is ``thing``, ``colour``, ``date``, ``month``, ``daytime``, ``camera``, ``place``,
    ``skipped`` (a common word) or ``unknown`` (matches nothing). Given ``min_score``, each term also
    says how many photos it alone matches (``photos``) and, when none, why (``why_none``, and a thing's
    ``best_score``): :mod:`.no_match`.
    """
    with _Opened(catalog) as cat:
        terms = read_terms(query, cat, _hierarchy(), model)
        if min_score is None:
            return [term.to_dict() for term in terms]
        return account(cat, terms, min_score=min_score)


def why_no_match(
    query: str,
    catalog: str | os.PathLike[str] | Catalog | None = None,
    model: str | None = None,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
) -> tuple[str, list[dict]]:
    """Why ``query`` found no photo: one line, and each term's reading with what it matches (:func:`explain`).

    "Did you mean" is offered only for words that were not understood, and never the word typed.
    """
    with _Opened(catalog) as cat:
        entries = explain(query, cat, model, min_score=min_score)
        unknown = [e["term"] for e in entries if e["read_as"] == "unknown"]
        hints = list(dict.fromkeys(h for word in unknown for h in suggest(word, catalog=cat)))[:5]
    return headline(query, entries, hints), entries


def suggest(query: str, catalog: str | os.PathLike[str] | Catalog | None = None, n: int = 5) -> list[str]:
    """Label names close to ``query`` (never ``query`` itself), for "did you mean" when a word is not understood."""
    with _Opened(catalog) as cat:
        names = {normalize(name) for row in cat.models() for names in row.synonyms for name in names}
    names |= _hierarchy().all_lemmas()
    typed = normalize(query)
    names.discard(typed)
    return difflib.get_close_matches(typed, sorted(names), n=n, cutoff=0.6)


# -- similar photos -----------------------------------------------------------

_INDEX_CACHE: dict[tuple[str, int], tuple[str, object]] = {}
_INDEX_LOCK = threading.Lock()


def vector_index(cat: Catalog, row: ModelRow, *, exact_limit: int = EXACT_LIMIT, save: bool = True):
    """The nearest-neighbour index of ``row``'s embeddings, kept up to date cheaply.

    In this process it is cached until the catalog changes. An approximate
    index is also saved next to the catalog (``catalog.db.<model id>.faiss*``):
    the next process maps it from disk, photos indexed since are added to it,
    and only removals (contents dropped from the catalog) make it rebuild.
    """
    stamp = cat.embedding_stamp(row.id) + f":{exact_limit}"
    key = (str(cat.path.resolve()), row.id)
    with _INDEX_LOCK:
        cached = _INDEX_CACHE.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
        index = _approximate_index(cat, row, exact_limit, save)
        if index is None:
            ids, vectors = cat.embeddings(row.id)
            index = build_index(ids, vectors, exact_limit=exact_limit)
            if save and isinstance(index, ApproximateIndex):
                with contextlib.suppress(OSError):  # a read-only library still answers, just rebuilds next time
                    index.save(_index_base(cat, row), _vector_state(cat, row, exact_limit))
        _INDEX_CACHE[key] = (stamp, index)
        return index


def _index_base(cat: Catalog, row: ModelRow) -> Path:
    return cat.path.with_name(f"{cat.path.name}.{row.id}.faiss")


def _vector_state(cat: Catalog, row: ModelRow, exact_limit: int) -> dict:
    top = cat.db.execute("SELECT coalesce(max(content_id), 0) FROM embeddings WHERE model_id = ?", (row.id,)).fetchone()[0]
    return {
        "catalog": cat.meta("catalog_id"),
        "model": row.id,
        "removed": cat.meta("contents_removed") or "0",
        "top": int(top),
        "exact_limit": exact_limit,
    }


def _approximate_index(cat: Catalog, row: ModelRow, exact_limit: int, save: bool) -> ApproximateIndex | None:
    """The saved approximate index, brought up to date by adding new photos; None to rebuild."""
    base = _index_base(cat, row)
    state = _vector_state(cat, row, exact_limit)
    loaded = ApproximateIndex.load(base)
    if loaded is None:
        return None
    index, saved = loaded
    same = ("catalog", "model", "removed", "exact_limit")
    if any(saved.get(name) != state[name] for name in same) or int(saved.get("top", -1)) > state["top"]:
        return None
    if int(saved["top"]) == state["top"]:
        return index
    writable = ApproximateIndex.load(base, writable=True)
    if writable is None:
        return None
    index = writable[0]
    rows = cat.db.execute(
        "SELECT content_id, vector FROM embeddings WHERE model_id = ? AND content_id > ? ORDER BY content_id",
        (row.id, int(saved["top"])),
    ).fetchall()
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), np.float16).reshape(len(rows), -1)
    index.add(ids, vectors)
    if save:
        with contextlib.suppress(OSError):
            index.save(base, state)
    return index


def similar(
    photo: str | os.PathLike[str],
    *,
    catalog: str | os.PathLike[str] | Catalog | None = None,
    model: str | None = None,
    limit: int = 20,
    min_score: float = 0.0,
    exact_limit: int = EXACT_LIMIT,
) -> list[Hit]:
    """Photos most like ``photo`` (a file, in the library or not), best first.

    A photo already in the catalog uses its stored embedding; any other is
    recognised with the catalog's model. The photo itself is not listed.
    """
    if limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    with _Opened(catalog) as cat:
        row = cat.model(model, embedding=True)
        query, own = _query_vector(cat, row, Path(photo))
        index = vector_index(cat, row, exact_limit=exact_limit)
        ids, sims = index.search(query, 2 * limit + 16)  # room for photos gone since
        paths = cat.paths_of(ids.tolist())
        root = str(cat.root)
        hits, owners = [], []
        for content_id, sim in zip(ids.tolist(), sims.tolist()):
            if sim < min_score:
                continue
            for path in paths.get(content_id, []):
                if path != own:
                    hits.append(Hit(path, float(sim), root, model=row.name))
                    owners.append(content_id)
        hits, owners = hits[:limit], owners[:limit]
        _add_descriptions(cat, hits, owners)
    return hits


def _query_vector(cat: Catalog, row: ModelRow, photo: Path) -> tuple[np.ndarray, str | None]:
    if not photo.is_file():
        raise UsageError(f"{photo}: no such photo (expected an image file)")
    own = None
    with __import__("contextlib").suppress(ValueError):
        own = photo.resolve().relative_to(cat.root).as_posix()
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    content_id = cat.content_of(digest)
    if content_id is not None:
        vector = cat.embedding(content_id, row.id)
        if vector is not None:
            return vector, own
    from ..loading import load

    recognizer = load(row.source)
    if (recognizer.name, recognizer.sha256 or "") != (row.name, row.sha256):
        raise UsageError(
            f"the catalog's model {row.name!r} ({row.source}) is not the one that loads from there now; "
            "re-index the library or pass a photo from it"
        )
    return recognizer.embed(str(photo))[0], own


# -- duplicates -----------------------------------------------------------------


def duplicates(
    *,
    catalog: str | os.PathLike[str] | Catalog | None = None,
    model: str | None = None,
    threshold: float = 0.95,
    exact_limit: int = EXACT_LIMIT,
    neighbours: int = 10,
) -> list[DuplicateGroup]:
    """Groups of near-identical photos: same bytes, or embeddings at least ``threshold`` alike.

    Near-identical pairs are found exactly below ``exact_limit`` photos and
    among each photo's ``neighbours`` approximate nearest neighbours above it.
    """
    if not 0.0 < threshold <= 1.0:
        raise UsageError(f"threshold must be in (0, 1], got {threshold}")
    with _Opened(catalog) as cat:
        root = str(cat.root)
        groups: list[DuplicateGroup] = []
        rows = cat.db.execute(
            "SELECT content_id, group_concat(path, char(0)) FROM files WHERE status = 'ok' AND content_id IS NOT NULL"
            " GROUP BY content_id HAVING count(*) > 1"
        ).fetchall()
        for _content_id, joined in rows:
            groups.append(DuplicateGroup(sorted(joined.split("\x00")), "identical", 1.0, root))
        embedding_models = [row for row in cat.models() if row.embedding_dim]
        if embedding_models:
            row = cat.model(model, embedding=True)
            groups.extend(_similar_groups(cat, row, threshold, exact_limit, neighbours, root))
    for group in groups:
        group.files = [Path(root) / path for path in group.paths]
    groups.sort(key=lambda g: (g.kind != "identical", -g.similarity, g.paths))
    return groups


def _similar_groups(cat, row, threshold, exact_limit, neighbours, root) -> list[DuplicateGroup]:
    index = vector_index(cat, row, exact_limit=exact_limit)
    ids, vectors = cat.embeddings(row.id)
    if len(ids) < 2:
        return []
    parent = {int(i): int(i) for i in ids}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    weakest: dict[int, float] = {}
    found_ids, found_sims = index.search_many(np.asarray(vectors, np.float32), neighbours + 1)
    for source, row_ids, row_sims in zip(ids.tolist(), found_ids, found_sims):
        for other, sim in zip(row_ids.tolist(), row_sims.tolist()):
            if other < 0 or other == source or sim < threshold:
                continue
            a, b = find(source), find(other)
            if a != b:
                parent[b] = a
                weakest[a] = min(weakest.get(a, 1.0), weakest.pop(b, 1.0), sim)
    members: dict[int, list[int]] = {}
    for content_id in parent:
        members.setdefault(find(content_id), []).append(content_id)
    groups = []
    for head, contents in members.items():
        if len(contents) < 2:
            continue
        paths = cat.paths_of(contents)
        listed = sorted(path for c in contents for path in paths.get(c, []))
        if len({c for c in contents if paths.get(c)}) >= 2:
            groups.append(DuplicateGroup(listed, "similar", min(weakest.get(head, 1.0), 1.0), root))
    return groups
