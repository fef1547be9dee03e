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
import heapq
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import UsageError
from .catalog import Catalog, ModelRow, find_catalog
from .hierarchy import Hierarchy, normalize
from .vectors import EXACT_LIMIT, ApproximateIndex, build_index

__all__ = ["Hit", "DuplicateGroup", "search", "similar", "duplicates", "suggest", "open_catalog"]

_HIERARCHY: Hierarchy | None = None


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

    @property
    def file(self) -> Path:
        """The absolute path of the photo."""
        return Path(self.root) / self.path

    def to_dict(self) -> dict:
        data = {"path": self.path, "file": str(self.file), "score": round(float(self.score), 6), "model": self.model}
        if self.label is not None:
            data["label"] = self.label
            data["matched"] = self.matched
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
    min_score: float = 0.2,
    limit: int = 50,
) -> list[Hit]:
    """Photos whose predictions match ``query``, best first.

    A photo matches when one of its top labels (by any model in the catalog,
    or by ``model``) is named ``query``, has it as a synonym, or descends
    from it in WordNet, with a score of at least ``min_score``.
    """
    if not query.strip():
        raise UsageError("empty search query (expected a word such as 'dog')")
    if limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    with _Opened(catalog) as cat:
        models = [cat.model(model)] if model else cat.models()
        best: dict[int, tuple[float, str, str, str]] = {}
        floor = min_score  # rises to the limit-th best score found so far: later labels read less
        for row in models:
            matched = _hierarchy().match(query, row.labels, row.synonyms)
            for label, via in matched.items():
                rows = cat.db.execute(
                    "SELECT p.content_id, p.score FROM predictions p"
                    " WHERE p.model_id = ? AND p.label = ? AND p.score >= ?"
                    " AND EXISTS (SELECT 1 FROM files f WHERE f.content_id = p.content_id AND f.status = 'ok')"
                    " ORDER BY p.score DESC LIMIT ?",
                    (row.id, label, floor, limit),
                )
                for content_id, score in rows:
                    if content_id not in best or score > best[content_id][0]:
                        best[content_id] = (score, row.labels[label], row.name, via)
                if len(best) >= limit:
                    floor = max(floor, heapq.nlargest(limit, (entry[0] for entry in best.values()))[-1])
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        paths = cat.paths_of([content_id for content_id, _ in ranked])
        root = str(cat.root)
        hits = [
            Hit(path, score, root, label, name, via)
            for content_id, (score, label, name, via) in ranked
            for path in paths.get(content_id, [])
        ]
    return hits[:limit]


def suggest(query: str, catalog: str | os.PathLike[str] | Catalog | None = None, n: int = 5) -> list[str]:
    """Label names close to ``query``, for "did you mean" when nothing matched."""
    with _Opened(catalog) as cat:
        names = {normalize(name) for row in cat.models() for names in row.synonyms for name in names}
    names |= _hierarchy().all_lemmas()
    return difflib.get_close_matches(normalize(query), sorted(names), n=n, cutoff=0.6)


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
        hits = []
        for content_id, sim in zip(ids.tolist(), sims.tolist()):
            if sim < min_score:
                continue
            for path in paths.get(content_id, []):
                if path != own:
                    hits.append(Hit(path, float(sim), root, model=row.name))
    return hits[:limit]


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
