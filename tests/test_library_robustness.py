"""imagerec.library under stress: SIGKILL mid-index, two indexers, hostile file names."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from imagerec.library import Catalog, CatalogBusyError, index_library, search

from test_library import catalog_dump

SOURCES = ["cat_720p.jpg", "parrot.jpg", "pets.jpg", "hot_dog.jpg", "owl.jpg", "face.jpg"]

INDEXER = """
import sys
from imagerec.library import index_library
def progress(done, total):
    print(done, total, flush=True)
index_library(sys.argv[1], catalog=sys.argv[2], batch_size=4, workers=1, on_progress=progress)
print("finished", flush=True)
"""


def distinct_photos(photos_dir: Path, root: Path, count: int) -> Path:
    """``count`` JPEGs with distinct bytes (a tag after the end-of-image marker)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        data = (photos_dir / SOURCES[i % len(SOURCES)]).read_bytes()
        folder = root / f"roll {i // 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"img_{i:03d}.jpg").write_bytes(data + f"imagerec-test-{i}".encode())
    return root


def run_until_killed(root: Path, catalog: Path, after: int) -> int:
    """Start an indexer, SIGKILL it once ``after`` photos are committed; the count committed."""
    process = subprocess.Popen(
        [sys.executable, "-c", INDEXER, str(root), str(catalog)], stdout=subprocess.PIPE, text=True
    )
    done = 0
    try:
        for line in process.stdout:
            if line.startswith("finished"):
                break
            done = int(line.split()[0])
            if done >= after:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.wait(timeout=60)
        process.stdout.close()
    return done


def check_consistent(catalog: Path) -> int:
    """The invariants every reader relies on; returns the number of indexed files."""
    db = sqlite3.connect(catalog)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("SELECT count(*) - count(DISTINCT path) FROM files").fetchone() == (0,)
    # Every photo marked ok has its content, an analysis by every model, predictions and an embedding.
    assert db.execute(
        "SELECT count(*) FROM files f WHERE f.status = 'ok' AND ("
        " f.content_id IS NULL"
        " OR (SELECT count(*) FROM analyses a WHERE a.content_id = f.content_id) != (SELECT count(*) FROM models)"
        " OR NOT EXISTS (SELECT 1 FROM predictions p WHERE p.content_id = f.content_id)"
        " OR NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.content_id = f.content_id))"
    ).fetchone() == (0,)
    count = db.execute("SELECT count(*) FROM files WHERE status = 'ok'").fetchone()[0]
    db.close()
    return count


def test_sigkill_mid_index_then_rerun_gives_the_complete_catalog(tmp_path: Path, photos_dir: Path, recognizer):
    root = distinct_photos(photos_dir, tmp_path / "library", 48)
    reference = tmp_path / "reference.db"
    index_library(root, catalog=reference, models=[recognizer])
    catalog = tmp_path / "killed.db"
    committed = run_until_killed(root, catalog, after=8)
    indexed = check_consistent(catalog)
    assert 8 <= committed <= indexed < 48, "the indexer was to be killed mid-way"
    # Killed again on the way, then finished.
    run_until_killed(root, catalog, after=8)
    assert check_consistent(catalog) > indexed
    summary = index_library(root, catalog=catalog, models=[recognizer])
    assert summary.unchanged + summary.new == 48 and summary.failed == 0
    assert check_consistent(catalog) == 48
    assert catalog_dump(catalog) == catalog_dump(reference)
    assert index_library(root, catalog=catalog, models=[recognizer]).unchanged == 48


def test_second_indexer_refuses_clearly_or_waits(tmp_path: Path, photos_dir: Path, recognizer):
    root = distinct_photos(photos_dir, tmp_path / "library", 4)
    catalog_path = root / ".imagerec" / "catalog.db"
    holder = Catalog(catalog_path, root=root)
    holder.acquire_lock()
    with pytest.raises(CatalogBusyError, match=rf"another indexer \(pid {os.getpid()} .*\) is writing"):
        index_library(root, models=[recognizer])
    from imagerec.cli._app import run_app

    assert run_app(["index", str(root)]) == 1
    told = []
    threading.Timer(0.5, holder.close).start()
    summary = index_library(root, models=[recognizer], wait=30, on_wait=told.append)
    assert summary.new == 4 and told and str(os.getpid()) in told[0]


def test_two_indexer_processes_at_once_leave_one_consistent_catalog(tmp_path: Path, photos_dir: Path):
    root = distinct_photos(photos_dir, tmp_path / "library", 12)
    command = [sys.executable, "-c", "from imagerec.cli import main; main()", "index", str(root), "--wait", "-1", "--json"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    summaries = sorted((json.loads(out) for out, _ in outputs), key=lambda s: s["new"])
    # One indexed everything; the other waited and then found nothing to do.
    assert (summaries[0]["new"], summaries[0]["unchanged"]) == (0, 12)
    assert (summaries[1]["new"], summaries[1]["unchanged"]) == (12, 0)
    assert check_consistent(root / ".imagerec" / "catalog.db") == 12


def test_unicode_space_and_newline_paths(tmp_path: Path, photos_dir: Path, recognizer):
    root = tmp_path / "library"
    names = {"café ☕/猫 photo.jpg": "cat_720p.jpg", "with\nnewline.jpg": "parrot.jpg", "  spaced  out .jpg": "pets.jpg"}
    for name, source in names.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((photos_dir / source).read_bytes())
    (root / "garbage.jpg").write_bytes(b"\x89PNG not really")
    (root / "empty.png").write_bytes(b"")
    os.mkdir(os.fsencode(root) + b"/bad\xffname")
    (Path(os.fsdecode(os.fsencode(root) + b"/bad\xffname")) / "x.jpg").write_bytes(b"x")
    (root / os.fsdecode(b"latin1-\xe9t\xe9.jpg")).write_bytes((photos_dir / "owl.jpg").read_bytes())
    summary = index_library(root, models=[recognizer])
    assert summary.new == 3 and summary.failed == 2
    assert {path for path, _ in summary.failures} == {"garbage.jpg", "empty.png"}
    assert all(reason for _, reason in summary.failures)
    assert len(summary.walk_errors) == 2 and all("UTF-8" in error for _, error in summary.walk_errors)
    catalog = root / ".imagerec" / "catalog.db"
    assert [h.path for h in search("cat", catalog=catalog)] == ["café ☕/猫 photo.jpg"]
    assert [h.path for h in search("parrot", catalog=catalog)] == ["with\nnewline.jpg"]
    assert [h.path for h in search("dog", catalog=catalog)] == ["  spaced  out .jpg"]
    from typer.testing import CliRunner

    from imagerec.cli import app

    runner = CliRunner()
    table = runner.invoke(app, ["search", "parrot", "--catalog", str(catalog)])
    assert table.exit_code == 0 and "with\\nnewline.jpg" in table.stdout
    lines = runner.invoke(app, ["search", "parrot", "--catalog", str(catalog), "--json"]).stdout.splitlines()
    assert json.loads(lines[0])["path"] == "with\nnewline.jpg"
    os.rename(root / "with\nnewline.jpg", root / "café ☕" / "moved\nagain.jpg")
    assert index_library(root, models=[recognizer]).moved == 1
    assert [h.path for h in search("parrot", catalog=catalog)] == ["café ☕/moved\nagain.jpg"]
