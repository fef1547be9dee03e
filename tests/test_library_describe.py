"""imagerec describe and the catalog's descriptions: the words a user reads, and what happens on bad input."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imagerec.cli import app
from imagerec.library import index_library, write_contact_sheet
from imagerec.library.describe import Description
from imagerec.library.search import Hit

# parrot.jpg's stored colours (a red, blue and green macaw on a brown stump): none has half the photo.
PARROT = [("brown", 0.31), ("red", 0.18), ("green", 0.14), ("blue", 0.13)]


def test_a_photo_of_several_colours_names_them_all_and_is_not_mostly_one():
    text = Description.build([("macaw", 0.92)], colours=PARROT)
    assert text.description == "A bird (macaw), in brown and red with some green and blue."
    assert "mostly" not in text.description


def test_mostly_is_said_only_of_a_colour_with_half_the_photo_and_small_shares_are_not_said():
    lawn = Description.build([("Italian greyhound", 0.83)], colours=[("green", 0.80), ("black", 0.08)])
    assert lawn.description == "A dog (Italian greyhound), mostly green."
    sunflower = Description.build([("daisy", 0.6)], colours=[("yellow", 0.63), ("green", 0.18), ("brown", 0.16)])
    assert sunflower.description.endswith(", mostly yellow with green and brown.")
    tabby = Description.build([("tabby", 0.6)], colours=[("brown", 0.83), ("red", 0.10)])
    assert tabby.description.endswith(", mostly brown with some red.")


def test_a_photo_with_nothing_recognised_is_titled_by_its_colours():
    text = Description.build([("macaw", 0.1)], colours=PARROT)
    assert (text.title, text.description) == (
        "Brown and red", "Nothing recognised with confidence, in brown and red with some green and blue.")


def test_articles_and_cameras_are_said_as_people_say_them():
    uniform = Description.build([("military uniform", 0.9)], camera="NIKON CORPORATION NIKON D750")
    assert uniform.description == "A uniform (military uniform) with a NIKON D750."
    olympus = Description.build([("umbrella", 0.9)], camera="OLYMPUS IMAGING CORP. E-M1")
    assert olympus.description == "A canopy (umbrella) with an OLYMPUS E-M1."
    assert Description.build([("hotdog", 0.9)]).description == "Food (hotdog)."  # not "a food"
    taught = Description.build([("hour glass", 0.9)], general={"hour glass": None})  # a taught class's own name
    assert taught.description == "An hour glass."


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, photos_dir: Path, recognizer):
    root = tmp_path_factory.mktemp("described") / "photos"
    root.mkdir()
    for name in ("parrot.jpg", "owl.jpg", "pets.jpg"):
        shutil.copy2(photos_dir / name, root / name)
    index_library(root, models=[recognizer])
    return root


def test_descriptions_worded_by_an_older_imagerec_are_written_again_and_the_index_says_so(indexed, tmp_path: Path):
    root = tmp_path / "photos"
    shutil.copytree(indexed, root)  # times kept: nothing changed on disk
    catalog = root / ".imagerec" / "catalog.db"
    fresh = dict(sqlite3.connect(catalog).execute("SELECT sha256, description FROM contents"))
    with sqlite3.connect(catalog) as db:  # as the wording before wrote them, with no wording recorded
        db.execute("DELETE FROM meta WHERE key = 'descriptions_version'")
        db.execute("UPDATE contents SET description = 'A bird (macaw), mostly brown and red.'")
    result = CliRunner().invoke(app, ["index", str(root)])
    assert result.exit_code == 0, result.output
    assert "0 recognised" in result.stdout
    assert f"3 photos in {root}: 0 new, 0 changed, 0 moved, 0 removed, 0 failed, 3 unchanged" in result.stdout.splitlines()
    assert "descriptions written again for 3 photos" in result.stdout
    assert dict(sqlite3.connect(catalog).execute("SELECT sha256, description FROM contents")) == fresh
    again = CliRunner().invoke(app, ["index", str(root)])
    assert "written again" not in again.stdout and "brought up to date" not in again.stdout


def test_the_index_summary_says_what_it_did_for_photos_indexed_earlier(indexed, tmp_path: Path):
    root = tmp_path / "photos"
    shutil.copytree(indexed, root)
    with sqlite3.connect(root / ".imagerec" / "catalog.db") as db:  # colours named by an older naming
        db.execute("UPDATE contents SET colours_version = NULL")
    result = CliRunner().invoke(app, ["index", str(root)])
    assert result.exit_code == 0, result.output
    assert ("photos indexed earlier, brought up to date (no photo recognised again): "
            "colours named again for 3 photos") in result.stdout


def test_describe_reports_each_bad_photo_in_one_line_and_still_describes_the_others(
        indexed, photos_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("IMAGEREC_CATALOG", raising=False)
    monkeypatch.chdir(tmp_path)  # no catalog here: every photo is recognised
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a JPEG")
    png = tmp_path / "sunflower.png"
    Image.open(photos_dir / "sunflower.bmp").save(png)
    photos = [str(png), str(tmp_path / "missing.jpg"), str(broken), str(tmp_path), str(photos_dir / "pets.jpg")]
    result = CliRunner().invoke(app, ["describe", *photos])
    assert result.exit_code == 1
    # Each photo is told as it comes: the PNG's description before the missing file's error.
    assert result.output.index(f"{png}: ") < result.output.index("missing.jpg: no such file")
    assert f"{png}: " in result.stdout and f"{photos_dir / 'pets.jpg'}: Dog (Italian greyhound)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {tmp_path / 'missing.jpg'}: no such file",
        errors[1],
        f"error: {tmp_path}: a folder, not a photo (describe its photos: imagerec describe {tmp_path}/*.jpg)",
    ]
    assert errors[1].startswith(f"error: {broken}: ") and "Traceback" not in result.output
    assert "2 photos described, 3 failed" in result.stderr
    # Each description is one line, however narrow the terminal (or a pipe's 80 columns).
    assert "  A dog (Italian greyhound), mostly green, taken on 31 July 2010 with a Panasonic DMC-G1." in (
        result.stdout.splitlines())


def test_contact_sheet_escapes_odd_file_names_and_keeps_words_whole(tmp_path: Path, photos_dir: Path):
    odd = tmp_path / '<b>bold & "quoted" été.jpg'
    shutil.copy2(photos_dir / "parrot.jpg", odd)
    hit = Hit(odd.name, 0.92, str(tmp_path), label="macaw", description="A bird (macaw), brown and red.")
    page = write_contact_sheet([hit], tmp_path / "sheet.html", title="<i>query</i>").read_text(encoding="utf-8")
    assert "<b>bold" not in page and "<i>query" not in page
    assert "&lt;b&gt;bold &amp; &quot;quoted&quot; été.jpg" in page
    assert "data:image/jpeg;base64," in page  # its thumbnail
    # Only the path may break anywhere; the description wraps between words.
    assert "figcaption { font-size: 0.75rem; word-break: break-all" not in page
    assert '<span class="path">&lt;b&gt;bold' in page


def test_the_similar_sheet_shows_the_photo_asked_about_first(indexed, tmp_path: Path):
    sheet = tmp_path / "like.html"
    photo = str(indexed / "parrot.jpg")
    result = CliRunner().invoke(app, ["similar", photo, "--catalog", str(indexed / ".imagerec" / "catalog.db"),
                                      "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    page = sheet.read_text(encoding="utf-8")
    asked = page.index("the photo asked about")
    assert page.count("data:image/jpeg;base64,") == 3 and asked < page.index("similarity 0.")
    assert f'<span class="path">{photo}</span>' in page[asked:page.index("</figure>", asked)]
    assert "<p>2 photos</p>" in page  # the photos found; the one asked about is not counted
    assert "similarity" in result.stdout.splitlines()[1]  # the table's column says what the number is


def test_a_search_with_nothing_to_label_shows_no_empty_label_column(indexed):
    catalog = str(indexed / ".imagerec" / "catalog.db")
    dated = CliRunner().invoke(app, ["search", "2009", "--catalog", catalog])
    assert dated.exit_code == 0, dated.output
    header = dated.stdout.splitlines()[1]
    assert "why" in header and "label" not in header and "parrot.jpg" in dated.stdout
    assert "score" not in header and "1.000" not in dated.stdout  # a date matches or not: no score to show
    labelled = CliRunner().invoke(app, ["search", "bird 2009", "--catalog", catalog])
    assert "label" in labelled.stdout.splitlines()[1] and "score" in labelled.stdout.splitlines()[1]
