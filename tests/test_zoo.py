"""imagerec.zoo: registry, verified lookup, offline mode and the download path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import imagerec
from imagerec import zoo
from imagerec.core.errors import ChecksumError, DownloadError, OfflineError, UnknownModelError

MODEL_FILE = "mobilenet_v2_1.0_224_quant.tflite"


def test_registry_has_the_required_models() -> None:
    names = [spec.name for spec in zoo.list_models()]
    for required in ("mobilenet_v2", "mobilenet_v2_tf2", "mobilenet_v1_embedder", "inat_birds"):
        assert required in names
    spec = zoo.get("mobilenet_v2")
    assert spec.task == "classify" and spec.input_size == (224, 224)
    assert spec.model.url.startswith("https://github.com/google-coral/test_data/raw/104342d2")
    assert len(spec.model.sha256) == 64 and spec.license
    assert zoo.get("mobilenet_v1_embedder").embedding_dim == 1024


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="known models: .*mobilenet_v2"):
        zoo.get("resnet9000")


def test_files_come_from_the_model_dir_and_are_verified(models_dir: Path) -> None:
    path = zoo.fetch(zoo.get("mobilenet_v2").model)
    assert path == models_dir / MODEL_FILE


def _with_model_dir(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("IMAGEREC_MODEL_DIR", str(folder))


def test_wrong_checksum_in_model_dir_is_never_used(tmp_path: Path, models_dir: Path, monkeypatch) -> None:
    tampered = tmp_path / MODEL_FILE
    data = bytearray((models_dir / MODEL_FILE).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte
    tampered.write_bytes(bytes(data))
    _with_model_dir(monkeypatch, tmp_path)
    with pytest.raises(ChecksumError, match="expected 7aad0c74"):
        imagerec.load("mobilenet_v2")
    assert tampered.exists()  # the user's own file is reported, not deleted


def test_offline_mode_says_which_file_to_put_where(tmp_path: Path, monkeypatch) -> None:
    _with_model_dir(monkeypatch, tmp_path / "empty")
    monkeypatch.setenv("IMAGEREC_OFFLINE", "1")
    with pytest.raises(OfflineError) as caught:
        zoo.fetch(zoo.get("inat_birds").model)
    message = str(caught.value)
    assert "mobilenet_v2_1.0_224_inat_bird_quant.tflite" in message
    assert "IMAGEREC_OFFLINE=1" in message and str(tmp_path / "empty") in message
    assert "https://github.com/google-coral/test_data/raw/" in message


def test_corrupt_cache_entry_is_discarded(tmp_path: Path, monkeypatch) -> None:
    _with_model_dir(monkeypatch, tmp_path / "none")
    monkeypatch.setenv("IMAGEREC_CACHE_DIR", str(tmp_path / "cache"))
    remote = zoo.get("mobilenet_v2").model
    cached = zoo.cache_dir() / remote.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")
    with pytest.raises(OfflineError):
        zoo.fetch(remote)
    assert not cached.exists()


# -- downloads against a local HTTP server ---------------------------------------


@pytest.fixture
def served_model(http_server, models_dir: Path, tmp_path: Path, monkeypatch):
    """A spec whose URL points at the local server, and an empty cache."""
    content = (models_dir / MODEL_FILE).read_bytes()
    http_server.routes["/model.tflite"] = (200, {"Content-Type": "application/octet-stream"}, content)
    monkeypatch.setenv("IMAGEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMAGEREC_MODEL_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("IMAGEREC_OFFLINE")
    sha = hashlib.sha256(content).hexdigest()
    return zoo.RemoteFile(MODEL_FILE, http_server.url + "/model.tflite", sha), content


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_success_is_verified_and_cached(served_model, http_server) -> None:
    remote, content = served_model
    path = zoo.fetch(remote, progress=False)
    assert path == zoo.cache_dir() / MODEL_FILE
    assert path.read_bytes() == content
    assert _leftovers(path.parent) == [MODEL_FILE]  # no temporary file left
    requests_before = len(http_server.requests)
    assert zoo.fetch(remote, progress=False) == path  # second time from the cache
    assert len(http_server.requests) == requests_before


def test_download_with_wrong_checksum_leaves_nothing(served_model) -> None:
    remote, _ = served_model
    wrong = zoo.RemoteFile(remote.filename, remote.url, "0" * 64)
    with pytest.raises(ChecksumError, match="expected 0000"):
        zoo.fetch(wrong, progress=False)
    assert _leftovers(zoo.cache_dir()) == []


def test_transfer_cut_off_half_way_leaves_no_usable_file(served_model, http_server) -> None:
    remote, content = served_model

    def half_then_hang_up(wfile) -> None:
        wfile.write(content[: len(content) // 2])
        wfile.flush()

    http_server.routes["/model.tflite"] = (200, {"Content-Length": str(len(content))}, half_then_hang_up)
    with pytest.raises((DownloadError, ChecksumError)):
        zoo.fetch(remote, progress=False)
    assert _leftovers(zoo.cache_dir()) == []
    # the next attempt, with the server healthy again, succeeds
    http_server.routes["/model.tflite"] = (200, {}, content)
    assert zoo.fetch(remote, progress=False).read_bytes() == content


def test_http_error_status_is_a_download_error(served_model, http_server) -> None:
    remote, _ = served_model
    http_server.routes["/model.tflite"] = (503, {}, b"busy")
    with pytest.raises(DownloadError, match="HTTP 503"):
        zoo.fetch(remote, progress=False)
    assert isinstance(DownloadError("x"), OSError)
    assert _leftovers(zoo.cache_dir()) == []


def test_download_command_uses_the_model_dir(models_dir: Path) -> None:
    from typer.testing import CliRunner

    from imagerec.cli import app

    result = CliRunner().invoke(app, ["models", "download", "mobilenet_v2"])
    assert result.exit_code == 0, result.output
    assert str(models_dir / MODEL_FILE) in result.output


def test_read_labels_plain_and_indexed(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("background\ncat\ndog\n\n")
    assert zoo.read_labels(plain) == ["background", "cat", "dog"]
    indexed = tmp_path / "indexed.txt"
    indexed.write_text("0  tench\n2  goldfish fish\n")
    assert zoo.read_labels(indexed) == ["tench", "class_1", "goldfish fish"]


def test_shared_label_files_match_the_models(models_dir: Path) -> None:
    assert len(zoo.read_labels(models_dir / "imagenet_labels.txt")) == 1001
    birds = zoo.read_labels(models_dir / "inat_bird_labels.txt")
    assert len(birds) == 965 and birds[-1] == "background"


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMAGEREC_CACHE_DIR", str(tmp_path))
    assert zoo.cache_dir() == tmp_path / "models"
    monkeypatch.delenv("IMAGEREC_CACHE_DIR")
    assert "imagerec" in str(zoo.cache_dir())
