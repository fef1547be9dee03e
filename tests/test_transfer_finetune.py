"""Fine-tuning a Keras backbone (random weights here: no download; the mechanism, not the gain)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.core.errors import UsageError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from imagerec.data import make_shapes

    return make_shapes(tmp_path_factory.mktemp("ftshapes"), per_class=8, size=64, seed=7, classes=["circle", "square"])


@pytest.mark.slow
def test_fine_tune_trains_only_the_last_layers_and_saves_a_loadable_model(shapes, tmp_path):
    from imagerec.formats.keras import load_keras_model
    from imagerec.transfer.finetune import fine_tune
    from imagerec.transfer.backbones.keras import build_application

    result = fine_tune(shapes, weights=None, input_size=64, layers=3, epochs=1, output=tmp_path / "ft.keras", verbose=False,
                       class_weight="none")
    summary = result.to_dict()
    assert 0 <= summary["frozen_val_accuracy"] <= 1 and 0 <= summary["fine_tuned_val_accuracy"] <= 1
    assert summary["val_images"] == 4 and summary["epochs_run"] == 1
    assert summary["class_counts"] == {"circle": 6, "square": 6} and summary["class_weight"] == "none"

    tuned = load_keras_model(result.path)
    fresh = build_application("MobileNetV2", weights=None, input_size=64, seed=0)
    weighted = [layer for layer in fresh.layers if layer.weights]
    changed = []
    for layer in weighted:
        before = [np.asarray(w) for w in layer.get_weights()]
        after = [np.asarray(w) for w in tuned.get_layer(layer.name).get_weights()]
        changed.append(any(not np.array_equal(a, b) for a, b in zip(before, after)))
    # Everything but the last three layers with weights is exactly as built.
    assert not any(changed[:-3]) and any(changed[-3:])

    recognizer = imagerec.load(result.path)
    assert recognizer.labels == ["circle", "square"]
    assert recognizer.predict_proba(sorted(str(p) for p in shapes.rglob("*.png"))[:2]).shape == (2, 2)


def test_fine_tune_refuses_what_it_cannot_do(shapes, tmp_path):
    from imagerec.cli._app import run_app
    from imagerec.transfer.finetune import fine_tune

    with pytest.raises(UsageError, match="needs a Keras backbone"):
        fine_tune(shapes, backbone="mobilenet_v2", output=tmp_path / "x.keras")
    with pytest.raises(UsageError, match=r"\.keras file"):
        fine_tune(shapes, weights=None, output=tmp_path / "x.imagerec")
    assert run_app(["learn", str(shapes), "--fine-tune", "2", "--add", str(shapes), "--to", "x.imagerec"]) == 2
    with pytest.raises(UsageError, match="class weight must be 'balanced' or 'none', got 'equal'"):
        fine_tune(shapes, weights=None, class_weight="equal", output=tmp_path / "x.keras")


@pytest.mark.slow  # over 4 s here
def test_cli_fine_tune_reports_the_gain(shapes, tmp_path, capsys):
    from imagerec.cli._app import run_app

    out = tmp_path / "cli.keras"
    code = run_app(["learn", str(shapes), "--backbone", "keras:MobileNetV2", "--weights", "none", "--input-size", "64",
                    "--fine-tune", "2", "--epochs", "1", "--class-weight", "none", "-o", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(out) and out.is_file()
    assert summary["class_weight"] == "none" and sum(summary["class_counts"].values()) == 12
    assert summary["gain"] == pytest.approx(summary["fine_tuned_val_accuracy"] - summary["frozen_val_accuracy"], abs=1e-3)


@pytest.mark.slow
def test_a_corrupt_held_out_image_is_skipped_and_reported(tmp_path):
    from imagerec.data import DatasetWarning, load_dataset, make_shapes
    from imagerec.transfer.finetune import fine_tune

    root = make_shapes(tmp_path / "s", per_class=4, size=32, seed=7, classes=["circle", "square"])
    for n in range(4):  # as many bad files as good ones: some land in the held-out half
        (root / "circle" / f"zz_bad{n}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.warns(DatasetWarning):
        result = fine_tune(root, weights=None, input_size=32, layers=1, epochs=1, val_fraction=0.5,
                           output=tmp_path / "ft.keras", verbose=False)
    assert sorted(Path(p).name for p, _ in result.skipped) == [f"zz_bad{n}.png" for n in range(4)]
    assert result.to_dict()["skipped"][0]["reason"].startswith("not a recognised image")
    _, held_out = load_dataset(root).split(0.5, seed=0)
    bad_held_out = [p for p in held_out.paths if "zz_bad" in p]
    assert bad_held_out  # the case under test: a corrupt image among the held-out ones
    assert result.val_images == len(held_out) - len(bad_held_out)
    assert result.path.is_file()


def test_a_class_with_no_readable_training_image_is_a_clear_error(tmp_path):
    from imagerec.data import DatasetWarning, make_shapes
    from imagerec.core.errors import DatasetError
    from imagerec.transfer.finetune import fine_tune

    root = make_shapes(tmp_path / "s", per_class=4, size=32, seed=7, classes=["circle", "square"])
    (root / "cross").mkdir()
    for n in range(3):
        (root / "cross" / f"bad{n}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="no readable image of class 'cross'"):
        fine_tune(root, weights=None, input_size=32, layers=1, epochs=1, output=tmp_path / "ft.keras", verbose=False)
