"""imagerec.library on Ray Data: the same catalog as a local run."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from test_library import catalog_dump, make_library
from test_library_query import NEW_YORK, PARIS, exif, framed
from test_library_robustness import distinct_photos

from imagerec.cli._app import run_app
from imagerec.core.errors import ImagerecError, ModelFileError, UsageError
from imagerec.library import index_library, ray_runner, search
from imagerec.library.analysis import analyse
from imagerec.library.ray_runner import (
    analyse_on_ray,
    from_columns,
    to_columns,
    worker_error,
)
from imagerec.library.walker import Entry


def catalog_with_facts(path: Path) -> dict:
    """:func:`catalog_dump` plus each content's facts, colours, title and description (no row ids)."""
    dump = catalog_dump(path)
    db = sqlite3.connect(path)
    dump["facts"] = sorted(db.execute(
        "SELECT sha256, latitude, longitude, place, facts, title, description, daytime FROM contents"
    ).fetchall(), key=str)
    dump["colours"] = sorted(db.execute(
        "SELECT c.sha256, k.colour, k.share FROM colours k JOIN contents c ON c.id = k.content_id"
    ).fetchall())
    dump["terms"] = sorted(db.execute("SELECT kind, value FROM terms").fetchall())
    db.close()
    return dump


def photos_with_facts(photos_dir: Path, root: Path) -> None:
    """Photos carrying EXIF dates, cameras and GPS positions (placed offline), and a coloured frame."""
    framed(photos_dir / "parrot.jpg", (220, 20, 30)).save(
        root / "red_parrot.jpg", exif=exif("2019:06:01 12:00:00", "Apple", "iPhone 8", PARIS))
    framed(photos_dir / "owl.jpg", None).save(
        root / "owl_in_new_york.jpg", exif=exif("2021:03:05 08:00:00", "Canon", "Canon EOS 5D", NEW_YORK))


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
    for chatter in ("Started a local Ray instance", "streaming_executor", "Execution plan", "INFO", "WARNING",
                    "core_worker", ".cc:", "(raylet)"):
        assert chatter not in run.stderr + run.stdout, run.stderr + run.stdout


@pytest.mark.slow
def test_ray_index_writes_the_same_catalog_as_a_local_run(local_ray, tmp_path: Path, photos_dir: Path, recognizer):
    root = make_library(photos_dir, tmp_path / "library")
    distinct_photos(photos_dir, root / "more", 10)
    photos_with_facts(photos_dir, root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    local, remote = tmp_path / "local.db", tmp_path / "ray.db"
    summary = index_library(root, catalog=remote, ray="auto", batch_size=4)
    assert (summary.new, summary.failed, summary.decoded) == (20, 1, 20)
    assert summary.facts_added == 0  # the facts came back from the workers: the driver read no photo again
    assert summary.daytimes_added == 0  # each photo's parts of the day were computed as it was recorded
    index_library(root, catalog=local, models=[recognizer])
    assert catalog_with_facts(remote) == catalog_with_facts(local)
    assert "Paris, Île-de-France, France" in {row[3] for row in catalog_with_facts(remote)["facts"]}
    assert {hit.path for hit in search("dog", catalog=remote, min_score=0.2)} >= {"pets.jpg", "dogs/dog.bmp"}
    # Incremental on Ray too: a move keeps its rows, a deletion is marked gone.
    os.rename(root / "parrot.jpg", root / "dogs" / "not a dog.jpg")
    os.remove(root / "owl.jpg")
    shutil.copy2(root / "hot_dog.jpg", root / "lunch.jpg")
    summary = index_library(root, catalog=remote, ray="auto", batch_size=4)
    assert (summary.moved, summary.removed, summary.new, summary.decoded) == (1, 1, 1, 0)
    index_library(root, catalog=local, models=[recognizer])
    assert catalog_with_facts(remote) == catalog_with_facts(local)


def test_what_a_worker_sends_back_carries_each_photos_facts(tmp_path: Path, photos_dir: Path, recognizer):
    """The columns a Ray worker returns hold everything a local run records: colours, date, camera, place, size."""
    photos_with_facts(photos_dir, tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    entries = [Entry(name, (tmp_path / name).stat().st_size, 1) for name in sorted(os.listdir(tmp_path))]
    local = [item for chunk in analyse(entries, str(tmp_path), [recognizer], workers=1) for item in chunk]
    sent = from_columns(to_columns(local, [recognizer], 5), 1)
    assert [item.facts for item in sent] == [item.facts for item in local]
    assert [item.error for item in sent] == [item.error for item in local]
    parrot = next(item for item in sent if item.entry.path == "red_parrot.jpg")
    assert parrot.facts.camera == "Apple iPhone 8" and parrot.facts.latitude == pytest.approx(48.8567, abs=1e-3)
    assert parrot.facts.colours[0][0] == "red"


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


def test_while_ray_runs_its_terminal_output_goes_to_its_log_and_pythons_stderr_stays(tmp_path: Path):
    """What Ray's C++ core writes to descriptor 2 is kept from the terminal; imagerec's own messages are not."""
    import subprocess

    script = (
        "import os, sys\n"
        "from imagerec.library.ray_runner import ray_output_in_its_logs\n"
        "with ray_output_in_its_logs():\n"
        "    os.write(2, b'[2026-12-04 E 1 1] core_worker.cc:2465: from C++\\n')\n"
        "    print('a message for the user', file=sys.stderr)\n"
        "os.write(2, b'after: the terminal again\\n')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == ["a message for the user", "after: the terminal again"]
