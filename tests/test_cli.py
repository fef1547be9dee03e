"""The imagerec command: predict and models, output formats and exit status."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagerec.cli import app, run_app

runner = CliRunner()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, photos_dir: Path) -> Path:
    """Good shared photos and the four kinds of bad file the issue names."""
    folder = tmp_path_factory.mktemp("mixed")
    for name in ("parrot.jpg", "hot_dog.jpg"):
        shutil.copy(photos_dir / name, folder / name)
    data = (photos_dir / "cat_720p.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, I am text\n")
    from test_images import _png_bomb

    _png_bomb(folder / "bomb.png")
    return folder


def test_predict_folder_reports_bad_files_prints_good_ones_and_exits_1(mixed_folder: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imagerec", "predict", str(mixed_folder), "--top-k", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "macaw" in result.stdout and "hotdog" in result.stdout
    for bad in ("truncated.jpg", "zero.jpg", "text.jpg", "bomb.png"):
        assert bad in result.stderr
    assert "Traceback" not in result.stderr
    assert "2 photos recognised, 4 failed" in result.stderr
    assert "INFO:" not in result.stderr  # the runtime's delegate chatter is hidden


def test_predict_json_lines(mixed_folder: Path) -> None:
    result = runner.invoke(app, ["predict", str(mixed_folder / "parrot.jpg"), str(mixed_folder / "zero.jpg"), "--json", "-k", "3"])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["path"].endswith("parrot.jpg")
    assert [p["label"] for p in lines[0]["predictions"]][0] == "macaw"
    assert set(lines[0]["predictions"][0]) == {"label", "score", "index"}
    assert len(lines[0]["predictions"]) == 3
    assert lines[1]["path"].endswith("zero.jpg") and "empty file" in lines[1]["error"]


def test_predict_all_good_exits_0(photos_dir: Path) -> None:
    result = runner.invoke(app, ["predict", str(photos_dir / "parrot.jpg"), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["predictions"][0]["label"] == "macaw"


def test_recursive_walks_sub_folders(tmp_path: Path, photos_dir: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(photos_dir / "parrot.jpg", tmp_path / "a" / "b" / "p.jpg")
    flat = runner.invoke(app, ["predict", str(tmp_path), "--json"])
    assert flat.exit_code == 2 and "no image files" in flat.stderr
    deep = runner.invoke(app, ["predict", str(tmp_path), "--json", "--recursive"])
    assert deep.exit_code == 0 and "macaw" in deep.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict"], "Missing argument"),
        (["predict", "x.jpg", "--top-k", "0"], "top-k"),
        (["predict", "x.jpg", "--refine-margin", "2"], "refine-margin"),
        (["predict", "x.jpg", "--model", "nope"], "no model named 'nope'"),
        (["models", "info", "nope"], "no model named 'nope'"),
        (["predict", "x.jpg", "--model", "mobilenet_v1_embedder"], "is an embedding model"),
        (["serve", "--log-level", "chatty"], "--log-level must be one of"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], message: str, capsys) -> None:
    assert run_app(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_missing_model_file_is_an_error_not_a_crash(tmp_path: Path, capsys) -> None:
    assert run_app(["predict", "x.jpg", "--model", str(tmp_path / "gone.tflite")]) == 1
    assert "no such model file" in capsys.readouterr().err


def test_file_system_errors_are_one_line(tmp_path: Path, photos_dir: Path, capsys, monkeypatch) -> None:
    import imagerec.recognizer

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked.tflite"))

    monkeypatch.setattr(imagerec.recognizer.Recognizer, "predict_files", refuse)
    assert run_app(["predict", str(photos_dir / "parrot.jpg")]) == 1
    err = capsys.readouterr().err
    assert "locked.tflite: Permission denied" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_models_list_and_info() -> None:
    listing = runner.invoke(app, ["models", "list", "--json"])
    assert listing.exit_code == 0
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert {"mobilenet_v2", "mobilenet_v2_tf2", "mobilenet_v1_embedder", "inat_birds"} <= {r["name"] for r in rows}
    table = runner.invoke(app, ["models", "list"])
    assert "mobilenet_v2" in table.stdout
    info = runner.invoke(app, ["models", "info", "inat_birds"])
    assert json.loads(info.stdout)["sha256"].startswith("350fcd8c")


def test_table_names_photos_relative_to_their_shared_folder(photos_dir: Path, capsys) -> None:
    assert run_app(["predict", str(photos_dir / "parrot.jpg"), str(photos_dir / "hot_dog.jpg"), "-k", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "macaw" in line or "hotdog" in line]
    assert len(rows) == 2 and "parrot.jpg" in rows[0] and str(photos_dir) not in "".join(rows)
    assert f"in {photos_dir}" in out
