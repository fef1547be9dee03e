"""imagerec.library.daytime_index: times of day read off the catalog's index answer as testing each photo did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import insert_generated_photos

from imagerec.library import Catalog, Hierarchy, daytime, search
from imagerec.library.daytime import moment
from imagerec.library.daytime_index import fill_daytimes, ready

# Paris, Sydney, Helsinki, Reykjavik (white nights, and winter afternoons after dusk), no GPS.
PLACES = [(48.8566, 2.3522), (-33.87, 151.21), (60.17, 24.94), (64.1466, -21.9426), None]
QUERIES = ["sunset", "night", "dawn", "morning", "evening canon", "dog at night", "red sunrise 2016", "sunset iphone",
           "afternoon night", "evening sunrise", "night 2017", "dusk dog", "sunrise sunset"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory, recognizer):
    """4,000 photos with known labels, colours, cameras, EXIF times and positions; their parts of the day not computed."""
    rng = np.random.default_rng(11)
    n = 4000
    labels = rng.integers(0, 1000, (n, 5))
    scores = -np.sort(-rng.dirichlet(np.full(5, 0.5), n), axis=1)
    years, months, days = rng.integers(2015, 2021, n), rng.integers(1, 13, n), rng.integers(1, 29, n)
    hours, minutes = rng.integers(0, 24, n), rng.integers(0, 60, n)
    taken = [f"{years[i]}:{months[i]:02d}:{days[i]:02d} {hours[i]:02d}:{minutes[i]:02d}:00" for i in range(n)]
    taken[5] = None  # no EXIF time: never any time of day
    where = [PLACES[k] for k in rng.integers(0, len(PLACES), n)]
    cameras = rng.choice(["Apple iPhone 8", "Canon EOS 5D"], n)
    red = rng.random(n) < 0.3
    folder = tmp_path_factory.mktemp("daytimes")
    catalog = folder / "c.db"
    with Catalog(catalog, root=folder) as cat:
        model_id = cat.register_model(recognizer, top_k=5, source="mobilenet_v2")
        with cat.transaction():
            insert_generated_photos(cat, model_id, taken, cameras, where, labels, scores)  # deleted photos: never listed
            cat.db.executemany("INSERT INTO colours VALUES (?, 'red', 0.5)", [(i + 1,) for i in range(n) if red[i]])
            cat.db.executemany("INSERT OR IGNORE INTO terms VALUES ('camera', ?)", [(c,) for c in set(cameras)])
        dogs = set(Hierarchy().match("dog", cat.model().labels))
    facts = {"n": n, "labels": labels, "scores": scores, "taken": taken, "where": where, "cameras": cameras,
             "red": red, "years": years, "dogs": dogs}
    return catalog, facts


def _hits(query: str, catalog: Path) -> list[dict]:
    return [hit.to_dict() for hit in search(query, catalog=catalog, limit=20)]


def _brute_force(query: str, f: dict) -> list[str]:
    """The expected page of ``query``, by testing every photo with :func:`daytime.moment`."""
    words = query.split()
    parts = [daytime.read_daytime(w) for w in words if daytime.read_daytime(w)]

    def at(i: int) -> bool:
        return all(moment(part, f["taken"][i], *(f["where"][i] or (None, None)))["matches"] for part in parts)

    def dog(i: int) -> float:
        found = [float(s) for label, s in zip(dict.fromkeys(f["labels"][i].tolist()), f["scores"][i])
                 if label in f["dogs"] and s >= 0.3]
        return max(found, default=0.0)

    keep = [i for i in range(f["n"]) if i % 10 != 3 and at(i)]
    for word in words:
        if word in ("canon", "iphone"):
            keep = [i for i in keep if word in f["cameras"][i].lower()]
        elif word.isdigit():
            keep = [i for i in keep if f["years"][i] == int(word)]
        elif word == "red":
            keep = [i for i in keep if f["red"][i]]
        elif word == "dog":
            keep = [i for i in keep if dog(i) > 0]
    if "dog" in words:
        keep.sort(key=lambda i: (-dog(i), i))
    elif "red" not in words:  # newest first, the larger id first among equal times
        keep.sort(key=lambda i: (f["taken"][i], i), reverse=True)
    return [f"p{i + 1:05d}.jpg" for i in keep[:20]]


def test_times_of_day_read_off_the_index_answer_exactly_as_testing_each_photo(generated, monkeypatch):
    catalog, facts = generated
    with Catalog(catalog) as cat:
        assert not ready(cat)  # inserted without their parts of the day: searched photo by photo
    before = {query: _hits(query, catalog) for query in QUERIES}
    with Catalog(catalog) as cat:
        assert fill_daytimes(cat, batch=700) == facts["n"] and ready(cat)
        assert fill_daytimes(cat) == 0  # computed once
        assert cat.db.execute("SELECT daytime FROM contents WHERE id = 6").fetchone() == (0,)  # no EXIF time

    def tested(*args):
        raise AssertionError("a photo was tested in Python: the index was not used")

    monkeypatch.setattr(daytime, "matches", tested)
    for query in QUERIES:
        after = _hits(query, catalog)
        assert after == before[query], query  # the same photos, order, scores and explanations
        if "red" not in query:  # red is one share for all: its order among equals is by id
            assert [hit["path"] for hit in after] == _brute_force(query, facts), query
    assert before["evening sunrise"] == [] and before["sunset"] and before["afternoon night"]
    why = _hits("night", catalog)[0]["why"][0]
    assert why["read_as"] == "daytime" and why["by"] in ("sun", "clock") and why["how"]


def test_red_queries_with_a_time_of_day_keep_every_term(generated):
    catalog, facts = generated
    with Catalog(catalog) as cat:
        fill_daytimes(cat)
    for hit in _hits("red sunrise 2016", catalog):
        i = int(hit["path"][1:6]) - 1
        assert facts["red"][i] and facts["years"][i] == 2016
        assert moment("sunrise", facts["taken"][i], *(facts["where"][i] or (None, None)))["matches"]
