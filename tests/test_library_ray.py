"""imagerec.library on Ray Data: the same catalog as a local run."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from imagerec.cli._app import run_app
from imagerec.core.errors import ImagerecError, ModelFileError, UsageError
from imagerec.library import index_library, search
from imagerec.library import ray_runner
from imagerec.library.ray_runner import analyse_on_ray, worker_error
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


@pytest.mark.slow
def test_ray_keeps_its_logs_out_of_the_terminal(tmp_path: Path, photos_dir: Path):
    """`imagerec index --ray local` starts its own Ray (in a new process, as a user's run does):
    Ray's start-up lines and Ray Data's execution plan stay in Ray's log folder."""
    import subprocess

    pytest.importorskip("ray.data")
    root = make_library(photos_dir, tmp_path / "library")
    run = subprocess.run(
        [sys.executable, "-m", "imagerec", "index", str(root), "--ray", "local", "--catalog", str(tmp_path / "c.db")],
        capture_output=True, text=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "IMAGEREC_RAY_VERBOSE"},
    )
    assert run.returncode == 0, run.stderr
    assert "new" in run.stdout
    for chatter in ("Started a local Ray instance", "streaming_executor", "Execution plan", "INFO", "WARNING"):
        assert chatter not in run.stderr, run.stderr


@pytest.mark.slow
def test_ray_index_writes_the_same_catalog_as_a_local_run(local_ray, tmp_path: Path, photos_dir: Path, recognizer):
    root = make_library(photos_dir, tmp_path / "library")
    distinct_photos(photos_dir, root / "more", 10)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    local, remote = tmp_path / "local.db", tmp_path / "ray.db"
    summary = index_library(root, catalog=remote, ray="auto", batch_size=4)
    assert (summary.new, summary.failed, summary.decoded) == (18, 1, 18)
    index_library(root, catalog=local, models=[recognizer])
    assert catalog_dump(remote) == catalog_dump(local)
    assert {hit.path for hit in search("dog", catalog=remote, min_score=0.2)} >= {"pets.jpg", "dogs/dog.bmp"}
    # Incremental on Ray too: a move keeps its rows, a deletion is marked gone.
    os.rename(root / "parrot.jpg", root / "dogs" / "not a dog.jpg")
    os.remove(root / "owl.jpg")
    shutil.copy2(root / "hot_dog.jpg", root / "lunch.jpg")
    summary = index_library(root, catalog=remote, ray="auto", batch_size=4)
    assert (summary.moved, summary.removed, summary.new, summary.decoded) == (1, 1, 1, 0)
    index_library(root, catalog=local, models=[recognizer])
    assert catalog_dump(remote) == catalog_dump(local)


def _raised(error: BaseException) -> tuple[BaseException, str]:
    import traceback

    try:
        raise error
    except BaseException as exc:
        return exc, traceback.format_exc()


def test_worker_failures_become_one_line_naming_the_cause(monkeypatch, tmp_path: Path):
    exceptions = pytest.importorskip("ray.exceptions")
    cause, trace = _raised(ModelFileError("/nowhere/pets.imagerec: no such model file"))
    task = exceptions.RayTaskError("RayAnalyser.__init__", trace, cause, proctitle="ray::RayAnalyser", pid=1, ip="127.0.0.1")
    actor = exceptions.ActorDiedError(task)  # what a pool reports when an actor's constructor raised
    other, other_trace = _raised(PermissionError(13, "Permission denied"))
    plain = exceptions.RayTaskError("RayAnalyser.__call__", other_trace, RuntimeError("lost"), proctitle="p", pid=1, ip="h")
    for error, expected in [
        (task, "/nowhere/pets.imagerec: no such model file"),
        (task.as_instanceof_cause(), "/nowhere/pets.imagerec: no such model file"),
        (actor, "/nowhere/pets.imagerec: no such model file"),
        (plain, "PermissionError: [Errno 13] Permission denied"),
        (exceptions.RayActorError(error_msg="The actor died unexpectedly before finishing this task.\n\tpid: 7"),
         "The actor died unexpectedly before finishing this task."),
    ]:
        message = str(worker_error(error))
        assert message.startswith(f"a Ray worker failed: {expected} (") and "\n" not in message, message

    # analyse_on_ray raises it in place of the Ray error (no cluster needed to check the wiring).
    class FailingDataset:
        def map_batches(self, *args, **kwargs):
            return self

        def iter_batches(self, **kwargs):
            raise actor
            yield

    import ray.data

    monkeypatch.setattr(ray_runner, "connect", lambda address: False)
    monkeypatch.setattr(ray, "put", lambda value: value)
    monkeypatch.setattr(ray.data, "from_items", lambda items, **kwargs: FailingDataset())
    with pytest.raises(ImagerecError, match="a Ray worker failed: /nowhere/pets.imagerec: no such model file") as info:
        list(analyse_on_ray([Entry("a.jpg", 1, 1)], str(tmp_path), [], sources=["/nowhere/pets.imagerec"], actors=1))
    assert info.value.__cause__ is actor


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_model_is_a_one_line_error(local_ray, tmp_path: Path, photos_dir: Path, recognizer):
    root = make_library(photos_dir, tmp_path / "library")
    entries = [Entry("parrot.jpg", 1, 1)]
    # The driver has its recognizer; the workers are told to load a file that is not there.
    with pytest.raises(ImagerecError, match=r"^a Ray worker failed: .*missing\.tflite") as info:
        list(analyse_on_ray(entries, str(root), [recognizer], sources=[str(tmp_path / "missing.tflite")], address="auto", actors=1))
    assert "\n" not in str(info.value)
