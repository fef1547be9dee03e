"""imagerec.library on Ray Data: the same catalog as a local run."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from imagerec.cli._app import run_app
from imagerec.errors import UsageError
from imagerec.library import index_library, search
from imagerec.library.ray_runner import analyse_on_ray
from imagerec.library.walker import Entry

from test_library import catalog_dump, make_library
from test_library_robustness import distinct_photos


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_missing_ray_is_a_usage_error_that_says_what_to_install(monkeypatch, tmp_path: Path, photos_dir: Path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when Ray is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(UsageError, match=r"imagerec\[ray\]"):
        list(analyse_on_ray([Entry("a.jpg", 1, 1)], str(tmp_path), [], sources=[], address="auto"))
    root = make_library(photos_dir, tmp_path / "library")
    assert run_app(["index", str(root), "--ray", "auto", "--catalog", str(tmp_path / "c.db")]) == 2
    err = capsys.readouterr().err
    assert "imagerec[ray]" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ray_index_writes_the_same_catalog_as_a_local_run(local_ray, tmp_path: Path, photos_dir: Path, recognizer):
    root = make_library(photos_dir, tmp_path / "library")
    distinct_photos(photos_dir, root / "more", 10)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    local, remote = tmp_path / "local.db", tmp_path / "ray.db"
    summary = index_library(root, catalog=remote, ray="auto", batch_size=4)
    assert (summary.new, summary.failed, summary.decoded) == (18, 1, 18)
    index_library(root, catalog=local, models=[recognizer])
    assert catalog_dump(remote) == catalog_dump(local)
    assert {hit.path for hit in search("dog", catalog=remote)} >= {"pets.jpg", "dogs/dog.bmp"}
    # Incremental on Ray too: a move keeps its rows, a deletion is marked gone.
    os.rename(root / "parrot.jpg", root / "dogs" / "not a dog.jpg")
    os.remove(root / "owl.jpg")
    shutil.copy2(root / "hot_dog.jpg", root / "lunch.jpg")
    summary = index_library(root, catalog=remote, ray="auto", batch_size=4)
    assert (summary.moved, summary.removed, summary.new, summary.decoded) == (1, 1, 1, 0)
    index_library(root, catalog=local, models=[recognizer])
    assert catalog_dump(remote) == catalog_dump(local)
