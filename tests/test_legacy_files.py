"""Model files written by earlier imagerec versions keep loading and keep giving the same answers.

The files in tests/fixtures/legacy were written by imagerec 7d02c50 (before
the core was redesigned); tests/fixtures/legacy/make_fixtures.py says how.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imagerec

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
REFERENCE = json.loads((LEGACY / "reference.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE["models"]))
def test_a_legacy_file_gives_the_answers_it_gave_when_written(name: str, photos_dir: Path, tmp_path: Path) -> None:
    expected = REFERENCE["models"][name]
    # A copy (opening a .keras file once cached its ONNX export beside it); every photo decoded in full.
    recognizer = imagerec.load(shutil.copy(LEGACY / name, tmp_path / name), refine_margin=1)  # as reference.json: in full
    paths = [photos_dir / photo for photo in REFERENCE["photos"]]
    assert recognizer.labels == expected["labels"]
    np.testing.assert_allclose(recognizer.predict_proba(paths), expected["probabilities"], atol=1e-5)
    answers = [as_written(answer, 3) for answer in recognizer.predict(paths, top_k=3)]
    assert [[label for label, _ in row] for row in answers] == [[p["label"] for p in row] for row in expected["top3"]]
    np.testing.assert_allclose(
        [[score for _, score in row] for row in answers], [[p["score"] for p in row] for row in expected["top3"]],
        atol=1e-5,
    )


def as_written(answer, top_k: int) -> list[tuple[str, float]]:
    """An answer in the form the reference was written in: an "unknown" answer was then a first row
    scored 1 − the closest class's probability, followed by the best ``top_k - 1`` classes."""
    rows = [(p.label, p.score) for p in answer]
    if answer.unknown:
        return [("unknown", 1.0 - answer.closest.score)] + rows[: top_k - 1]
    return rows


def test_a_legacy_learned_recognizer_saves_again_without_change(tmp_path: Path, photos_dir: Path) -> None:
    recognizer = imagerec.load(LEGACY / "pets.imagerec")
    again = imagerec.load(recognizer.save(tmp_path / "again.imagerec"))
    photo = photos_dir / "hot_dog.jpg"
    np.testing.assert_array_equal(again.predict_proba(photo), recognizer.predict_proba(photo))
    assert again.threshold == recognizer.threshold and again.preprocessing == recognizer.preprocessing
    assert (tmp_path / "again.imagerec").stat().st_mode & 0o777 == 0o644
