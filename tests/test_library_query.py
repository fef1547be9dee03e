"""imagerec.library: queries of several terms (thing, colour, date, camera, place) on a library with known facts."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import insert_generated_photos
from PIL import Image
from typer.testing import CliRunner

from imagerec.cli import app
from imagerec.library import Hierarchy, index_library, search
from imagerec.library.query import read_query

PARIS = ("N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 8.0))
NEW_YORK = ("N", (40.0, 42.0, 46.0), "W", (74.0, 0.0, 22.0))
SYDNEY = ("S", (33.0, 52.0, 4.0), "E", (151.0, 12.0, 26.0))
LEGACY = Path(__file__).parent / "fixtures" / "legacy" / "library_v2"


def exif(taken: str | None, make: str | None, model: str | None, gps: tuple | None) -> Image.Exif:
    """EXIF written with Pillow: date taken, camera make and model, GPS position."""
    data = Image.Exif()
    if make:
        data[0x010F], data[0x0110] = make, model
    if taken:
        data.get_ifd(0x8769)[36867] = taken
    if gps:
        block = data.get_ifd(0x8825)
        block[1], block[2], block[3], block[4] = gps
    return data


def framed(photo: Path, colour: tuple[int, int, int] | None) -> Image.Image:
    """The photo, small, inside a thick frame of ``colour`` (about half the picture)."""
    image = Image.open(photo).convert("RGB")
    image.thumbnail((240, 240))
    if colour is None:
        return image
    out = Image.new("RGB", (image.width + 120, image.height + 120), colour)
    out.paste(image, (60, 60))
    return out


@pytest.fixture(scope="module")
def library(tmp_path_factory, photos_dir: Path, recognizer):
    root = tmp_path_factory.mktemp("query") / "photos"
    root.mkdir()
    red, blue = (220, 20, 30), (20, 60, 220)
    framed(photos_dir / "parrot.jpg", red).save(
        root / "red_parrot.jpg", exif=exif("2019:06:01 12:00:00", "Apple", "iPhone 8", PARIS))
    framed(photos_dir / "owl.jpg", None).save(
        root / "owl.jpg", exif=exif("2021:03:05 08:00:00", "Canon", "Canon EOS 5D", NEW_YORK))
    framed(photos_dir / "cat_720p.jpg", None).save(
        root / "cat.jpg", exif=exif("2019:12:24 18:30:00", "Apple", "iPhone 8", None))
    framed(photos_dir / "few-shot" / "dog_train_0.bmp", None).save(
        root / "dog.jpg", exif=exif("2018:08:15 10:00:00", "Canon", "Canon EOS 5D", SYDNEY))
    Image.new("RGB", (80, 60), blue).save(root / "blue.png")
    summary = index_library(root, models=[recognizer])
    assert summary.failed == 0
    return root, root / ".imagerec" / "catalog.db"


def paths(query: str, catalog: Path, **options) -> list[str]:
    return sorted(hit.path for hit in search(query, catalog=catalog, **options))


def test_indexing_records_colours_date_camera_place_and_size(library):
    _, catalog = library
    db = sqlite3.connect(catalog)
    rows = {path: row for path, *row in db.execute(
        "SELECT f.path, c.width, c.height, c.taken_at, c.camera, c.place, round(c.latitude, 3)"
        " FROM files f JOIN contents c ON c.id = f.content_id")}
    colours = dict(db.execute(
        "SELECT f.path, group_concat(k.colour) FROM files f JOIN colours k ON k.content_id = f.content_id GROUP BY f.path"))
    assert rows["red_parrot.jpg"][2:] == ["2019:06:01 12:00:00", "Apple iPhone 8", "Paris, Île-de-France, France", 48.857]
    assert rows["owl.jpg"][4].endswith("New York, United States") and rows["dog.jpg"][4].startswith("Sydney")
    assert rows["cat.jpg"][4] is None and rows["blue.png"][:2] == [80, 60]
    assert "red" in colours["red_parrot.jpg"] and colours["blue.png"] == "blue"


def test_each_query_form_combines_its_terms_with_and(library):
    _, catalog = library
    assert paths("bird", catalog) == ["owl.jpg", "red_parrot.jpg"]
    assert paths("red bird", catalog) == ["red_parrot.jpg"]
    # The dog runs through blue water (few-shot/dog_train_0.bmp): half of that photo is blue.
    assert paths("blue", catalog) == ["blue.png", "dog.jpg"] and paths("red", catalog) == ["red_parrot.jpg"]
    assert paths("cat 2019", catalog) == ["cat.jpg"] and paths("cat 2018", catalog) == []
    assert paths("june 2019", catalog) == paths("2019-06", catalog) == ["red_parrot.jpg"]
    assert paths("2019..2021", catalog) == ["cat.jpg", "owl.jpg", "red_parrot.jpg"]
    assert paths("iphone", catalog) == ["cat.jpg", "red_parrot.jpg"] and paths("bird iphone", catalog) == ["red_parrot.jpg"]
    assert paths("canon eos 5d", catalog) == ["dog.jpg", "owl.jpg"]
    assert paths("paris", catalog) == paths("france", catalog) == ["red_parrot.jpg"]
    assert paths("bird in new york", catalog) == ["owl.jpg"] and paths("dog sydney 2018", catalog) == ["dog.jpg"]
    assert paths("puppies", catalog) == ["dog.jpg"]  # through WordNet: a puppy is a kind of dog
    assert paths("june", catalog) == paths("in june", catalog) == ["red_parrot.jpg"]  # a month of any year
    assert paths("december cat", catalog) == ["cat.jpg"] and paths("march", catalog) == ["owl.jpg"]
    assert paths("morning", catalog) == ["dog.jpg", "owl.jpg"]  # 10:00 and 08:00 by the EXIF clock
    assert paths("sunset", catalog) == ["cat.jpg"]  # 18:30, no GPS: the clock's 17:00-21:00
    assert paths("xylophone bird", catalog) == []  # a term nothing can match: AND matches nothing


def test_each_hit_says_how_every_term_was_read_and_what_it_matched(library):
    _, catalog = library
    hit = search("red bird in 2019", catalog=catalog)[0]
    why = {entry["term"]: entry for entry in hit.why}
    assert why["red"]["read_as"] == "colour" and why["red"]["share"] >= 0.15
    assert why["bird"]["read_as"] == "thing" and why["bird"]["label"] == "macaw"
    assert why["2019"] == {"term": "2019", "read_as": "date", "taken_at": "2019:06:01 12:00:00"}
    result = CliRunner().invoke(app, ["search", "bird iphone", "--catalog", str(catalog), "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.splitlines()[0])
    assert line["path"] == "red_parrot.jpg"
    assert [(w["term"], w["read_as"]) for w in line["why"]] == [("bird", "thing"), ("iphone", "camera")]
    assert line["why"][1]["camera"] == "Apple iPhone 8"


def test_the_query_reader_explains_unknown_and_skipped_words():
    terms = read_query("dog on a beach", things=lambda words: words in ("dog", "beach"))
    assert [(t.text, t.kind) for t in terms] == [("dog", "thing"), ("on", "skipped"), ("a", "skipped"), ("beach", "thing")]
    assert read_query("zzyzx")[0].kind == "unknown"
    assert read_query("2019-02-30")[0].kind == "unknown"  # not a date


def test_a_catalog_of_the_released_version_migrates_in_place_without_recognising_again(tmp_path: Path, recognizer):
    root = tmp_path / "library_v2"
    shutil.copytree(LEGACY, root)
    catalog = root / ".imagerec" / "catalog.db"
    assert sqlite3.connect(catalog).execute("PRAGMA user_version").fetchone()[0] == 2
    first = index_library(root, models=[recognizer])
    # Only the missing facts were computed: nothing was recognised again.
    assert (first.decoded, first.unchanged, first.facts_added, first.daytimes_added) == (0, 2, 2, 2)
    assert paths("red bird", catalog) == ["red_parrot.jpg"] and paths("paris 2019", catalog) == ["red_parrot.jpg"]
    assert paths("blue", catalog) == ["blue.png"] and paths("afternoon", catalog) == ["red_parrot.jpg"]  # 12:00
    again = index_library(root, models=[recognizer])
    assert (again.decoded, again.facts_added, again.daytimes_added, again.unchanged) == (0, 0, 0, 2)


def _photo_reads(monkeypatch, root: Path) -> list[str]:
    """The photo files under ``root`` opened from now on (the catalog's own files not counted), as a list that fills."""
    import builtins

    opened: list[str] = []
    real_open = builtins.open

    def watching(file, *args, **kwargs):
        if str(file).startswith(str(root)) and not str(file).startswith(str(root / ".imagerec")):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching)
    return opened


def test_a_catalog_of_schema_3_gets_its_times_of_day_without_reading_a_photo_for_them(library, tmp_path: Path, monkeypatch):
    from imagerec.library import daytime

    root = tmp_path / "photos"
    shutil.copytree(library[0], root)  # photos and catalog, times kept: the files are unchanged
    catalog = root / ".imagerec" / "catalog.db"
    queries = ["morning", "sunset", "evening cat", "afternoon", "night", "sunrise bird"]
    answers = {query: paths(query, library[1]) for query in queries}
    with sqlite3.connect(catalog) as db:  # back to schema 3, as the previous release wrote it
        db.executescript("DROP INDEX contents_by_daytime; ALTER TABLE contents DROP COLUMN daytime;"
                         " ALTER TABLE contents DROP COLUMN colours_version; PRAGMA user_version = 3;")
    opened = _photo_reads(monkeypatch, root)

    first = index_library(root, models=["mobilenet_v2"])
    assert (first.decoded, first.facts_added, first.daytimes_added, first.unchanged) == (0, 0, 5, 5)
    # Schema 3's colours were named the old way: each photo is read once, for its colours only (below).
    assert first.colours_added == 5 and sorted(opened) == sorted({*opened}) and len(opened) == 5
    opened.clear()

    def tested(*args):
        raise AssertionError("a photo was tested in Python: the index was not used")

    monkeypatch.setattr(daytime, "matches", tested)
    assert {query: paths(query, catalog) for query in queries} == answers
    assert answers["morning"] == ["dog.jpg", "owl.jpg"] and answers["sunset"] == ["cat.jpg"]
    again = index_library(root, models=["mobilenet_v2"])
    assert (again.decoded, again.daytimes_added, again.unchanged) == (0, 0, 5) and opened == []


def test_an_up_to_date_catalog_reads_no_photo_again(library, monkeypatch):
    root, catalog = library
    opened = _photo_reads(monkeypatch, root)

    summary = index_library(root, models=["mobilenet_v2"])
    assert (summary.decoded, summary.facts_added, summary.daytimes_added, summary.unchanged) == (0, 0, 0, 5) and opened == []
    assert summary.colours_added == 0


def test_a_catalog_of_schema_4_has_only_its_colours_named_again(library, tmp_path: Path, monkeypatch):
    """Schema 4's colours were the nearest of 33 centroids by area ("grey" for muted pixels): the next index
    names them again from one small decode per photo, re-describes the photos, and reads nothing else."""
    from imagerec.library import facts

    root = tmp_path / "photos"
    shutil.copytree(library[0], root)  # photos and catalog, times kept: the files are unchanged
    catalog = root / ".imagerec" / "catalog.db"
    colours_sql = "SELECT f.path, k.colour, k.share FROM files f JOIN colours k ON k.content_id = f.content_id ORDER BY 1, 2"
    fresh = sqlite3.connect(library[1]).execute(colours_sql).fetchall()
    with sqlite3.connect(catalog) as db:  # as schema 4 wrote it: no colours_version, colours named the old way
        db.executescript("ALTER TABLE contents DROP COLUMN colours_version; PRAGMA user_version = 4;"
                         "DELETE FROM colours; INSERT INTO colours SELECT id, 'grey', 0.9 FROM contents;"
                         "UPDATE contents SET description = 'A photo, mostly grey.'")
    opened = _photo_reads(monkeypatch, root)

    def not_again(*args, **kwargs):
        raise AssertionError("EXIF, GPS or place read again: only the colours were out of date")

    monkeypatch.setattr(facts, "facts_of", not_again)
    monkeypatch.setattr(facts, "place_name", not_again)
    first = index_library(root, models=["mobilenet_v2"])
    assert (first.decoded, first.facts_added, first.daytimes_added, first.colours_added, first.unchanged) == (0, 0, 0, 5, 5)
    assert len(opened) == len(set(opened)) == 5  # each photo read once, for its colours
    db = sqlite3.connect(catalog)
    assert db.execute(colours_sql).fetchall() == fresh  # the same colours as a catalog indexed now
    assert paths("red bird", catalog) == ["red_parrot.jpg"]
    description = dict(db.execute("SELECT f.path, c.description FROM files f JOIN contents c ON c.id = f.content_id"))
    assert description["red_parrot.jpg"].startswith("A bird (macaw), mostly red, taken on 1 June 2019")
    opened.clear()
    again = index_library(root, models=["mobilenet_v2"])
    assert (again.decoded, again.colours_added, again.facts_added) == (0, 0, 0) and opened == []


def test_each_photo_gets_a_title_and_description_from_what_was_recognised_and_read(library, photos_dir: Path):
    root, catalog = library
    rows = dict(sqlite3.connect(catalog).execute(
        "SELECT f.path, c.title || ' | ' || c.description FROM files f JOIN contents c ON c.id = f.content_id"))
    assert rows["red_parrot.jpg"] == (
        "Bird (macaw), Paris, June 2019 | A bird (macaw), mostly red, taken on 1 June 2019"
        " in Paris, Île-de-France, France with an Apple iPhone 8.")
    # Nothing recognised with confidence is said as such, never guessed.
    assert rows["blue.png"] == "Mostly blue | Nothing recognised with confidence, mostly blue."
    result = CliRunner().invoke(app, ["describe", str(root / "cat.jpg"), "--catalog", str(catalog), "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["title"] == "Cat (Egyptian cat), December 2019"
    assert described["description"].startswith("A cat (Egyptian cat), mostly ")


def test_describe_recognises_a_photo_no_catalog_holds(photos_dir: Path, tmp_path: Path, monkeypatch):
    from imagerec.library.describe import describe_photos

    monkeypatch.delenv("IMAGEREC_CATALOG", raising=False)
    monkeypatch.chdir(tmp_path)  # no catalog here or above
    [(photo, text)] = describe_photos([str(photos_dir / "pets.jpg")], catalog=None)
    assert text.title == "Dog (Italian greyhound), July 2010"
    assert text.description.endswith("taken on 31 July 2010 with a Panasonic DMC-G1.")


def test_contact_sheet_shows_why_each_photo_matched_and_its_description(library, tmp_path: Path):
    _, catalog = library
    sheet = tmp_path / "sheet.html"
    result = CliRunner().invoke(app, ["search", "red bird", "--catalog", str(catalog), "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    page = sheet.read_text(encoding="utf-8")
    assert "red_parrot.jpg" in page and "owl.jpg" not in page
    assert "macaw 0.9" in page and "red " in page and "A bird (macaw), mostly red, taken" in page
    assert "score 0.9" in page


def test_similar_contact_sheet_shows_each_photos_similarity_and_description(library, tmp_path: Path):
    root, catalog = library
    sheet = tmp_path / "like.html"
    result = CliRunner().invoke(app, ["similar", str(root / "owl.jpg"), "--catalog", str(catalog), "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    page = sheet.read_text(encoding="utf-8")
    assert page.count("<figure>") == 4 and "similarity 0." in page  # the four other photos, each with its similarity
    assert "A bird (macaw), mostly red, taken on 1 June 2019" in page  # red_parrot.jpg's description
    assert "Nothing recognised with confidence, mostly blue." in page  # blue.png's


def test_combined_queries_rank_exactly_like_a_brute_force_reading(tmp_path: Path, recognizer):
    """On 3,000 generated photos, every query form returns the best photos meeting all terms, in order."""
    import numpy as np

    from imagerec.library import Catalog

    from imagerec.library.daytime import moment

    rng = np.random.default_rng(7)
    n, colours = 3000, ["red", "blue", "green"]
    labels = rng.integers(0, 1000, (n, 5))
    scores = -np.sort(-rng.dirichlet(np.full(5, 0.5), n), axis=1)
    years = rng.integers(2015, 2021, n)
    months, hours, minutes = rng.integers(1, 13, n), rng.integers(0, 24, n), rng.integers(0, 60, n)
    taken = [f"{years[i]}:{months[i]:02d}:01 {hours[i]:02d}:{minutes[i]:02d}:00" for i in range(n)]
    places = [(48.8566, 2.3522), (-33.87, 151.21), (60.17, 24.94), None]  # Paris, Sydney, Helsinki, no GPS
    where = [places[k] for k in rng.integers(0, len(places), n)]
    cameras = rng.choice(["Apple iPhone 8", "Canon EOS 5D"], n)
    colour_of, share_of = rng.choice(colours, n), rng.uniform(0.05, 0.9, n).round(3)
    catalog = tmp_path / "c.db"
    with Catalog(catalog, root=tmp_path) as cat:
        model_id = cat.register_model(recognizer, top_k=5, source="mobilenet_v2")
        names = cat.model().labels
        with cat.transaction():
            insert_generated_photos(cat, model_id, taken, cameras, where, labels, scores)  # deleted photos: never listed
            cat.db.executemany("INSERT INTO colours VALUES (?, ?, ?)",
                               [(i + 1, colour_of[i], float(share_of[i])) for i in range(n)])
            cat.db.executemany("INSERT OR IGNORE INTO terms VALUES ('camera', ?)", [(c,) for c in set(cameras)])
    dogs = set(Hierarchy().match("dog", names))

    birds = set(Hierarchy().match("bird", names))

    def best(i: int, wanted: set) -> float:
        found = [float(s) for label, s in zip(dict.fromkeys(labels[i].tolist()), scores[i]) if label in wanted and s >= 0.3]
        return max(found, default=0.0)

    def best_dog(i: int) -> float:
        return best(i, dogs)

    def at(part: str, i: int) -> bool:
        return moment(part, taken[i], *(where[i] or (None, None)))["matches"]

    def expected(keep, key) -> list[str]:
        chosen = [i for i in range(n) if keep(i) and i % 10 != 3]
        chosen.sort(key=lambda i: (-key(i), i))
        return [f"p{i + 1:05d}.jpg" for i in chosen[:20]]

    def got(query: str) -> list[str]:
        return [hit.path for hit in search(query, catalog=catalog, limit=20)]

    red = lambda i: colour_of[i] == "red" and share_of[i] >= 0.15  # noqa: E731
    assert got("red dog") == expected(lambda i: best_dog(i) > 0 and red(i), best_dog)
    assert got("dog 2019") == expected(lambda i: best_dog(i) > 0 and years[i] == 2019, best_dog)
    assert got("dog iphone 2016..2018") == expected(
        lambda i: best_dog(i) > 0 and cameras[i] == "Apple iPhone 8" and 2016 <= years[i] <= 2018, best_dog)
    assert got("red 2017") == expected(lambda i: red(i) and years[i] == 2017, lambda i: share_of[i])
    assert got("red canon") == expected(lambda i: red(i) and cameras[i] == "Canon EOS 5D", lambda i: share_of[i])
    # Two things: the rarer one (birds) is read first, ranked by the first (dogs).
    assert got("dog bird") == expected(lambda i: best_dog(i) > 0 and best(i, birds) > 0, best_dog)
    assert got("dog iphone") == expected(lambda i: best_dog(i) > 0 and cameras[i] == "Apple iPhone 8", best_dog)
    assert got("dog in june") == expected(lambda i: best_dog(i) > 0 and months[i] == 6, best_dog)
    newest = lambda i: (years[i], months[i], hours[i], minutes[i], i)  # noqa: E731  (ties: the larger id first)
    assert got("sunset") == [f"p{i + 1:05d}.jpg" for i in sorted(
        (i for i in range(n) if at("sunset", i) and i % 10 != 3), key=newest, reverse=True)[:20]]
    assert got("dog at night") == expected(lambda i: best_dog(i) > 0 and at("night", i), best_dog)
    assert got("red sunrise 2016") == expected(lambda i: red(i) and at("sunrise", i) and years[i] == 2016, lambda i: share_of[i])
    assert got("evening canon") != [] and all(17 <= int(taken[int(p[1:6]) - 1][11:13]) < 22 for p in got("evening canon"))


def test_sunset_follows_the_sun_at_the_photos_gps_position_and_the_clock_without_one(tmp_path: Path, recognizer):
    from imagerec.library import Catalog

    rows = {  # path: (EXIF time, position)
        "paris_june_2130.jpg": ("2019:06:01 21:30:00", (48.8566, 2.3522)),  # sunset 21:45: yes (the clock says no)
        "paris_december_1830.jpg": ("2019:12:01 18:30:00", (48.8566, 2.3522)),  # sunset 16:56, dusk 17:35: no
        "no_gps_1830.jpg": ("2019:12:01 18:30:00", None),  # no position: the clock's 17:00-21:00
    }
    catalog = tmp_path / "c.db"
    with Catalog(catalog, root=tmp_path) as cat:
        cat.register_model(recognizer, top_k=5, source="mobilenet_v2")
        with cat.transaction():
            for cid, (path, (taken, position)) in enumerate(rows.items(), 1):
                cat.db.execute("INSERT INTO contents (id, sha256, taken_at, latitude, longitude, facts) VALUES (?, ?, ?, ?, ?, 1)",
                               (cid, f"{cid:064x}", taken, *(position or (None, None))))
                cat.db.execute("INSERT INTO files (path, size, mtime_ns, content_id, status, indexed_at)"
                               " VALUES (?, 1, 0, ?, 'ok', 'x')", (path, cid))
    assert paths("sunset", catalog) == ["no_gps_1830.jpg", "paris_june_2130.jpg"]
    assert paths("night", catalog) == ["paris_december_1830.jpg"]  # after dusk in Paris in December
    result = CliRunner().invoke(app, ["search", "sunsets", "--catalog", str(catalog), "--json"])
    assert result.exit_code == 0, result.output
    why = {line["path"]: line["why"][0] for line in map(json.loads, result.stdout.splitlines())}
    assert why["paris_june_2130.jpg"]["read_as"] == "daytime" and why["paris_june_2130.jpg"]["by"] == "sun"
    assert "Europe/Paris" in why["paris_june_2130.jpg"]["how"] and "sunset 21:45" in why["paris_june_2130.jpg"]["how"]
    assert why["no_gps_1830.jpg"]["by"] == "clock" and "no GPS" in why["no_gps_1830.jpg"]["how"]


def test_reading_a_query_with_common_words_does_not_import_scikit_learn():
    # Its stop-word list was imported with scikit-learn (and SciPy): 1.7 s for every new `imagerec search`.
    code = ("import sys; from imagerec.library.query import read_query; "
            "kinds = [t.kind for t in read_query('dog on a beach')]; "
            "print(kinds, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("False") and out.stdout.count("skipped") == 2, out.stdout
