"""imagerec.core.pipeline: ordered parallel decoding and folder walking."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagerec.core import pipeline
from imagerec.core.preprocessing import Preprocessing
from imagerec.core.pipeline import batches, decode_ordered, expand_paths

P = Preprocessing(size=(8, 8))


def test_order_is_kept_and_errors_stay_in_place() -> None:
    sources = [np.full((10, 10, 3), i, np.uint8) for i in range(40)]
    sources[7] = b"broken"
    items = list(decode_ordered(sources, P, workers=4))
    assert [item.position for item in items] == list(range(40))
    assert items[7].error is not None and items[7].array is None
    assert all(int(item.array[0, 0, 0]) == item.position for item in items if item.position != 7)


def test_at_most_window_items_are_in_flight(monkeypatch) -> None:
    started: list[int] = []
    lock = threading.Lock()
    real = pipeline.decode_one

    def counting(position, source, preprocessing, limits, *levels):
        with lock:
            started.append(position)
        return real(position, source, preprocessing, limits, *levels)

    monkeypatch.setattr(pipeline, "decode_one", counting)
    generator = decode_ordered((np.zeros((4, 4, 3), np.uint8) for _ in range(1000)), P, workers=2, window=6)
    next(generator)
    time.sleep(0.2)
    assert len(started) <= 7  # the window, plus the one submitted after the first result
    generator.close()


def test_batches() -> None:
    assert [len(b) for b in batches(range(7), 3)] == [3, 3, 1]
    assert list(batches([], 3)) == []


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def test_expand_paths_walks_folders(tmp_path: Path) -> None:
    _touch_image(tmp_path / "b.jpg")
    _touch_image(tmp_path / "a.PNG")
    (tmp_path / "notes.txt").write_text("x")
    _touch_image(tmp_path / ".hidden.jpg")
    _touch_image(tmp_path / "sub" / "c.jpg")
    _touch_image(tmp_path / "sub" / "deeper" / "d.webp")
    _touch_image(tmp_path / "näme with space" / "e\nnewline.jpg")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # a loop must not be followed

    flat = expand_paths([tmp_path])
    assert [Path(p).name for p in flat] == ["a.PNG", "b.jpg"]
    deep = expand_paths([tmp_path], recursive=True)
    names = [Path(p).name for p in deep]
    assert names == ["a.PNG", "b.jpg", "e\nnewline.jpg", "c.jpg", "d.webp"]  # files, then sub-folders by name
    explicit = tmp_path / "notes.txt"
    assert expand_paths([explicit, "missing.jpg"]) == [str(explicit), "missing.jpg"]


@pytest.mark.parametrize("workers", [1, 3])
def test_single_and_multi_worker_results_match(workers: int) -> None:
    sources = [np.random.default_rng(i).integers(0, 255, (20, 30, 3), dtype=np.uint8) for i in range(9)]
    arrays = [item.array for item in decode_ordered(sources, P, workers=workers)]
    reference = [item.array for item in decode_ordered(sources, P, workers=1)]
    assert all(np.array_equal(a, b) for a, b in zip(arrays, reference))
