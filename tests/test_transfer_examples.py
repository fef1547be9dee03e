"""Changing what a learned recognizer was taught, and its examples kept in the .imagerec file (issue 22)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import hostile
import imagerec
from imagerec.core.errors import ModelFileError, UsageError
from imagerec.transfer import learn
from imagerec.transfer.examples import (Example, read_examples, relabel, save_with_examples, without_class,
                                        without_examples)


@pytest.fixture(scope="module")
def pictures(photos_dir):
    shots = photos_dir / "few-shot"
    return {"cat": [shots / "cat_train_0.bmp", photos_dir / "cat_720p.jpg"],
            "dog": [shots / "dog_train_0.bmp", photos_dir / "owl.jpg"],
            "hot dog": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp"]}


@pytest.fixture(scope="module")
def embedded(pictures, recognizer):
    """Each picture's embedding as the learned recognizer sees it, by class."""
    model = learn(pictures, head="imprint", cache=False, threshold=0.3)
    from imagerec.transfer.backbones import backbone_from_recognizer
    from imagerec.transfer.features import extract

    rows = {label: extract(paths, backbone_from_recognizer(model), cache=False).embeddings[:, 0]
            for label, paths in pictures.items()}
    return model, rows


def test_forgetting_an_example_is_teaching_without_it(embedded, pictures, photos_dir):
    model, rows = embedded
    smaller = without_examples(model, rows["dog"][1:], ["dog"])
    direct = learn({**pictures, "dog": pictures["dog"][:1]}, head="imprint", cache=False, threshold=0.3)
    np.testing.assert_allclose(smaller.head.sums_, direct.head.sums_, atol=1e-5)
    assert smaller.metadata["training"]["examples"] == {"cat": 2, "dog": 1, "hot dog": 2}
    photo = photos_dir / "hot_dog.jpg"
    np.testing.assert_allclose(smaller.predict_proba(photo), direct.predict_proba(photo), atol=1e-5)
    assert smaller.threshold == model.threshold == 0.3
    assert model.metadata["training"]["examples"]["dog"] == 2  # the given recognizer is unchanged


def test_forgetting_every_example_of_a_class_forgets_the_class(embedded):
    model, rows = embedded
    assert without_examples(model, rows["dog"], ["dog", "dog"]).labels == ["cat", "hot dog"]
    with pytest.raises(UsageError):
        without_examples(model, np.concatenate([rows["cat"], rows["cat"][:1]]), ["cat"] * 3)  # more than taught
    with pytest.raises(UsageError):
        without_examples(model, rows["dog"], ["dog"])  # one name for two embeddings


def test_renaming_keeps_what_was_learned(embedded, photos_dir):
    model, _ = embedded
    renamed = relabel(model, "hot dog", "sausage")
    assert renamed.labels == ["cat", "dog", "sausage"]
    assert renamed.predict(photos_dir / "hot_dog.jpg", top_k=1)[0].label == "sausage"
    np.testing.assert_array_equal(renamed.head.sums_, model.head.sums_)
    for bad, message in [("dog", "already a class"), ("  ", "1 to 100"), ("unknown", "reserved")]:
        with pytest.raises(UsageError, match=message):
            relabel(model, "hot dog", bad)
    with pytest.raises(UsageError, match="no class named 'owl'"):
        relabel(model, "owl", "bird")


def test_deleting_a_class(embedded, pictures):
    model, _ = embedded
    fewer = without_class(model, "dog")
    direct = learn({k: v for k, v in pictures.items() if k != "dog"}, head="imprint", cache=False, threshold=0.3)
    assert fewer.labels == ["cat", "hot dog"]
    np.testing.assert_allclose(fewer.head.sums_, direct.head.sums_, atol=1e-5)
    with pytest.raises(UsageError, match="only class"):
        without_class(without_class(fewer, "cat"), "hot dog")


def test_a_head_that_keeps_its_examples_is_refitted(pictures):
    model = learn(pictures, head="logistic", cache=False, threshold=0.3, head_options={"C": 1.0})
    assert without_class(model, "dog").labels == ["cat", "hot dog"]
    assert relabel(model, "dog", "puppy").labels == ["cat", "puppy", "hot dog"]
    X = model.head.X_[:1].astype(np.float32)  # the first stored example (a cat)
    smaller = without_examples(model, X, ["cat"])
    assert len(smaller.head.X_) == len(model.head.X_) - 1


def test_examples_are_kept_inside_the_file_which_still_loads_anywhere(embedded, tmp_path):
    model, rows = embedded
    examples = [Example(f"id{i}", "cat", row, b"\xff\xd8jpeg") for i, row in enumerate(rows["cat"])]
    path = save_with_examples(model, examples, tmp_path / "kept.imagerec")
    assert imagerec.load(path).labels == model.labels
    back = read_examples(path, model)
    assert [(e.id, e.label, e.thumbnail) for e in back] == [("id0", "cat", b"\xff\xd8jpeg"), ("id1", "cat", b"\xff\xd8jpeg")]
    np.testing.assert_array_equal(np.stack([e.embedding for e in back]), rows["cat"])
    # Examples of a class the recognizer no longer has are dropped.
    assert read_examples(path, without_class(model, "cat")) == []
    assert read_examples(hostile.LEGACY / "pets.imagerec", model) == []  # a file with no examples


@pytest.mark.parametrize("case", sorted(hostile.EXAMPLES_CASES))
def test_damaged_kept_examples_are_one_line_refusals(case, tmp_path, models_dir):
    path = hostile.with_members(hostile.LEGACY / "pets.imagerec", tmp_path / f"{case}.imagerec",
                                hostile.EXAMPLES_CASES[case])
    model = imagerec.load(path)  # the model itself is intact
    with pytest.raises(ModelFileError) as caught:
        read_examples(path, model)
    assert "\n" not in str(caught.value) and "kept examples" in str(caught.value)


def test_an_oversized_examples_member_is_refused_before_it_is_read(tmp_path, models_dir):
    big = {"taught/examples.json": b" " * (1 << 20), "taught/embeddings.npy": b"\x00" * (60 * 1024 * 1024)}
    path = hostile.with_members(hostile.LEGACY / "pets.imagerec", tmp_path / "big.imagerec", big)
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("taught/embeddings.npy").file_size > 50_000_000
    with pytest.raises(ModelFileError, match="too large"):
        read_examples(path, imagerec.load(path))
