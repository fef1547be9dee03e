"""imagerec search: when nothing matches, one line says how each term was read and why nothing matched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imagerec.cli import app
from imagerec.library import index_library
from imagerec.library.search import explain, suggest, why_no_match


@pytest.fixture(scope="module")
def undated(tmp_path_factory, photos_dir: Path, recognizer) -> Path:
    """A library whose photos record no date, camera or place: a macaw, a cat and a blue square."""
    root = tmp_path_factory.mktemp("no_match") / "photos"
    root.mkdir()
    for name in ("parrot.jpg", "cat_720p.jpg"):
        image = Image.open(photos_dir / name).convert("RGB")
        image.thumbnail((320, 320))
        image.save(root / name)  # no EXIF
    Image.new("RGB", (80, 60), (20, 60, 220)).save(root / "blue.png")
    assert index_library(root, models=[recognizer]).failed == 0
    return root / ".imagerec" / "catalog.db"


def no_match(query: str, catalog: Path, *options: str) -> str:
    result = CliRunner().invoke(app, ["search", query, "--catalog", str(catalog), *options])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # no photo listed (nor a JSON line)
    return result.stderr


def test_a_time_of_day_says_no_photo_records_when_it_was_taken(undated):
    out = no_match("sunset", undated)
    assert out.splitlines()[0].startswith("no photos match 'sunset': 'sunset' was read as a time of day")
    assert "no photo in this catalog records when it was taken" in out and "did you mean" not in out
    assert len(out.strip().splitlines()) == 1  # one line
    for query in ("2019", "june", "night"):
        assert "no photo in this catalog records when it was taken" in no_match(query, undated)


def test_a_colour_no_photo_has_says_so_and_names_the_colours_there_are(undated):
    out = no_match("purple", undated)
    assert "'purple' was read as a colour" in out and "no photo is purple" in out and "blue" in out
    assert "did you mean" not in out


def test_an_understood_thing_below_the_minimum_score_never_suggests_the_same_word(undated):
    out = no_match("bird", undated, "--min-score", "0.999")
    assert "'bird' was read as a thing" in out and "did you mean" not in out
    assert "no photo scores 0.999 or more for it; the best score is 0." in out and "would let it match 1 photo" in out
    [entry] = explain("bird", undated, min_score=0.999)
    lower = float(out.split("--min-score ")[1].split()[0])
    assert entry["photos"] == 0 and entry["best_score"] >= lower
    assert [hit["path"] for hit in map(json.loads, CliRunner().invoke(
        app, ["search", "bird", "--catalog", str(undated), "--min-score", str(lower), "--json"]).stdout.splitlines())] == ["parrot.jpg"]


def test_a_thing_no_photo_shows_says_so(undated):
    out = no_match("vehicle", undated)
    assert "'vehicle' was read as a thing" in out and "vehicle," not in out and "did you mean" not in out


def test_terms_that_match_alone_but_not_together_say_so(undated):
    out = no_match("cat blue", undated)  # ("blue cat" is a fish in WordNet)
    assert "each term matches photos on its own (cat: 1 photo, blue: 1 photo), but no photo matches all of them" in out
    assert "did you mean" not in out


def test_did_you_mean_only_for_words_not_understood_and_never_the_word_typed(undated):
    out = no_match("parrrot", undated)
    assert "'parrrot' is not a thing, colour, date, camera or place known here (did you mean: parrot" in out
    line, entries = why_no_match("xylophonez cat", undated)
    assert [e["read_as"] for e in entries] == ["unknown", "thing"] and "'xylophonez' is not" in line
    for word in ("vehicle", "person", "parrot"):
        assert word not in suggest(word, undated)


def test_json_mode_keeps_stdout_for_hits_and_explains_on_stderr(undated):
    out = no_match("sunset", undated, "--json")
    assert "no photo in this catalog records when it was taken" in out
    [entry] = explain("sunset", undated, min_score=0.3)
    assert entry["read_as"] == "daytime" and entry["photos"] == 0 and "records when it was taken" in entry["why_none"]
