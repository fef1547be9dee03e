"""What ``imagerec train`` says while it runs, when its output is a log rather than a terminal,
and where it leaves its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerec.cli import run_app
from imagerec.data import make_shapes


@pytest.mark.slow  # a short training run in-process (imports torch and Keras)
def test_train_says_what_it_does_line_by_line_with_the_runs_progress(tmp_path: Path, capsys) -> None:
    shapes = make_shapes(tmp_path / "shapes", per_class=10, size=24, seed=0)
    output = tmp_path / "out" / "m.keras"
    code = run_app(["train", str(shapes), "-o", str(output), "--arch", "fast_resnet", "--widths", "16,32",
                    "--image-size", "24", "--epochs", "2", "--batch-size", "16", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = err.splitlines()
    first = [next(i for i, line in enumerate(lines) if line.startswith(start))
             for start in ("decoding 40 images of 4 classes", "split: 36 training and 4 validation images",
                           "plan: fast_resnet, 2 epochs of 2 steps", "epoch 1/2:", "epoch 2/2:")]
    assert first == sorted(first), err  # in the order they happen, before the first epoch ends
    assert "run 50%" in lines[first[3]] and "left" in lines[first[3]]
    assert "run 100%" in lines[first[4]]
    # The resume state is in the cache, named in the summary; beside the model only the model and its curves.
    assert "resume state" in err
    assert sorted(p.name for p in output.parent.iterdir()) == ["m.curves.png", "m.keras"]
    assert run_app(["train", str(shapes), "-o", str(output), "--arch", "fast_resnet", "--widths", "16,32",
                    "--image-size", "24", "--epochs", "3", "--batch-size", "16", "--threads", "1", "--resume"]) == 0
    assert "resuming at epoch 3" in capsys.readouterr().err


@pytest.mark.slow
def test_a_state_left_beside_the_model_by_an_earlier_version_still_resumes(tmp_path: Path) -> None:
    import imagerec

    shapes = make_shapes(tmp_path / "shapes", per_class=10, size=24, seed=0)
    output = tmp_path / "m.keras"
    settings = dict(arch="fast_resnet", widths=(16, 32), image_size=24, batch_size=16, threads=1, verbose=False)
    first = imagerec.train(shapes, output=output, epochs=1, **settings)
    legacy = output.with_name("m.keras.state.pt")  # where earlier versions kept it
    first.state_path.rename(legacy)
    resumed = imagerec.train(shapes, output=output, epochs=2, resume=True, **settings)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert not legacy.exists() and resumed.state_path.is_file()
