"""imagerec.data: loading labelled datasets, splits, the decode cache, bad input."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from imagerec.data import Dataset, DatasetWarning, datasets_dir, load_dataset, make_shapes
from imagerec.core.errors import DatasetError
from imagerec.core.preprocessing import Preprocessing

PRE = Preprocessing(size=(16, 16))


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    return make_shapes(tmp_path / "shapes", per_class=6, size=24, classes=("circle", "square", "cross"))


def test_folder_layout_gives_sorted_classes_and_targets(shapes: Path) -> None:
    data = load_dataset(shapes)
    assert data.classes == ["circle", "cross", "square"]
    assert len(data) == 18
    assert data.class_counts() == {"circle": 6, "cross": 6, "square": 6}
    for path, target in zip(data.paths, data.targets):
        assert Path(path).parent.name == data.classes[target]


def test_csv_paths_are_relative_to_the_csv(shapes: Path) -> None:
    rows = ["path,label"] + [f"shapes/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(shapes.rglob("*.png"))]
    rows.append("shapes/missing.png,circle")
    csv_file = shapes.parent / "labels.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    with pytest.warns(DatasetWarning, match="missing.png"):
        data = load_dataset(csv_file)
    assert data.class_counts() == {"circle": 6, "cross": 6, "square": 6}
    assert data.skipped and data.skipped[0][1] == "no such file"


def test_dict_source() -> None:
    data = load_dataset({"b": ["x.jpg", "y.jpg"], "a": ["z.jpg", "w.jpg"]})
    assert data.classes == ["a", "b"]
    assert data.targets.tolist() == [0, 0, 1, 1]


def test_tar_gz_is_extracted_once_into_the_cache(shapes: Path, tmp_path: Path) -> None:
    archive = tmp_path / "shapes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(shapes, arcname="wrapper/train")  # wrapper folders are descended into
    first = load_dataset(archive)
    assert first.classes == ["circle", "cross", "square"] and len(first) == 18
    assert str(datasets_dir()) in first.paths[0]
    marker = Path(first.paths[0])
    mtime = marker.stat().st_mtime_ns
    second = load_dataset(archive)
    assert second.paths == first.paths and marker.stat().st_mtime_ns == mtime


def test_hostile_archive_cannot_write_outside(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="../../escaped.txt")
    with pytest.raises(DatasetError, match="cannot extract"):
        load_dataset(archive)
    assert not (datasets_dir().parent / "escaped.txt").exists()


def test_split_is_stratified_deterministic_and_disjoint(shapes: Path) -> None:
    data = load_dataset(shapes)
    train, val = data.split(0.34, seed=3)
    again_train, again_val = data.split(0.34, seed=3)
    assert train.paths == again_train.paths and val.paths == again_val.paths
    assert set(train.paths).isdisjoint(val.paths)
    assert len(train) + len(val) == len(data)
    assert set(val.class_counts().values()) == {2}
    other_train, _ = data.split(0.34, seed=4)
    assert other_train.paths != train.paths


def test_subset_takes_at_most_per_class(shapes: Path) -> None:
    small = load_dataset(shapes).subset(2, seed=1)
    assert small.class_counts() == {"circle": 2, "cross": 2, "square": 2}


def test_arrays_are_cached_on_disk_by_content(shapes: Path) -> None:
    data = load_dataset(shapes)
    pixels = data.arrays(PRE)
    assert pixels.shape == (18, 16, 16, 3) and pixels.dtype == np.uint8
    cache_file = Path(pixels.filename)
    written = cache_file.stat()
    again = load_dataset(shapes).arrays(PRE)
    np.testing.assert_array_equal(again, pixels)
    # Read from the cache file, not decoded and written again.
    assert Path(again.filename) == cache_file
    assert (cache_file.stat().st_ino, cache_file.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    # Changing a file's content (not just touching it) changes the key.
    target = Path(data.paths[0])
    target.write_bytes((Path(data.paths[1])).read_bytes())
    assert Path(load_dataset(shapes).arrays(PRE).filename) != cache_file


def test_corrupt_image_is_skipped_and_reported(shapes: Path) -> None:
    (shapes / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (shapes / "square" / "empty.jpg").write_bytes(b"")
    data = load_dataset(shapes)
    assert len(data) == 20
    with pytest.warns(DatasetWarning, match="skipped 2 unreadable"):
        pixels = data.arrays(PRE)
    assert pixels.shape[0] == len(data) == 18 == len(data.targets)
    assert sorted(Path(p).name for p, _ in data.skipped) == ["broken.png", "empty.jpg"]
    # From the cache, the same files are dropped and reported again.
    fresh = load_dataset(shapes)
    with pytest.warns(DatasetWarning, match="skipped 2"):
        again = fresh.arrays(PRE)
    np.testing.assert_array_equal(again, pixels)
    assert fresh.targets.tolist() == data.targets.tolist()


def test_empty_class_folder_is_a_clear_error(shapes: Path) -> None:
    (shapes / "triangle").mkdir()
    with pytest.raises(DatasetError, match=r"class folder 'triangle' has no images"):
        load_dataset(shapes)


def test_single_class_is_a_clear_error(tmp_path: Path) -> None:
    root = make_shapes(tmp_path / "one", per_class=2, classes=("circle",))
    with pytest.raises(DatasetError, match="at least 2 classes, found only 'circle'"):
        load_dataset(root)


def test_missing_source_and_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder or file"):
        load_dataset(tmp_path / "nope")
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(text)


def test_min_per_class_and_imbalance_warning(tmp_path: Path) -> None:
    root = make_shapes(tmp_path / "s", per_class=2, classes=("circle", "square"))
    make_shapes(tmp_path / "extra", per_class=6, classes=("square",), seed=1)
    for i, file in enumerate(sorted((tmp_path / "extra" / "square").iterdir())):
        file.rename(root / "square" / f"extra{i}.png")
    with pytest.warns(DatasetWarning, match="imbalanced"):
        data = load_dataset(root)
    assert data.imbalance == 4.0
    with pytest.raises(DatasetError, match="at least 3 images; too few in 'circle' \\(2\\)"):
        load_dataset(root, min_per_class=3)


def test_dataset_rejects_out_of_range_targets() -> None:
    with pytest.raises(DatasetError):
        Dataset(["a"], np.array([2]), ["x", "y"])


def test_a_class_left_with_no_readable_image_is_named(shapes: Path) -> None:
    for file in (shapes / "square").iterdir():
        file.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = load_dataset(shapes)
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="no readable image of class 'square'"):
        data.arrays(PRE, require_every_class=True)
    # From the cache too, and without the option the good images are simply returned.
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="class 'square'"):
        load_dataset(shapes).arrays(PRE, require_every_class=True)
    with pytest.warns(DatasetWarning):
        assert load_dataset(shapes).arrays(PRE).shape[0] == 12


def test_no_readable_image_at_all_is_a_clear_error(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.png").write_bytes(b"not an image")
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="none of the 2 images could be read"):
        load_dataset(tmp_path).arrays(PRE, require_every_class=True)


def test_read_class_folders_descends_a_wrapper_and_allows_one_class(tmp_path: Path) -> None:
    from imagerec.data import read_class_folders

    make_shapes(tmp_path / "wrap" / "train", per_class=2, classes=("circle", "square"))
    assert read_class_folders(tmp_path / "wrap").classes == ["circle", "square"]
    make_shapes(tmp_path / "one", per_class=2, classes=("circle",))
    assert read_class_folders(tmp_path / "one").class_counts() == {"circle": 2}
    (tmp_path / "wrap" / "train" / "empty").mkdir()
    with pytest.raises(DatasetError, match="class folder 'empty' has no images"):
        read_class_folders(tmp_path / "wrap")
