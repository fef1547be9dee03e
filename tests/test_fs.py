"""Files imagerec writes: whole or not at all, and with the permissions the umask gives (as ``cp`` does)."""

from __future__ import annotations

import os
import stat

import pytest

import imagerec
from imagerec.core.fs import atomic_write_text

SHOTS = "../shared/photos/few-shot/"


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_permissions_of_the_umask(tmp_path, umask):
    path = atomic_write_text(tmp_path / "note.txt", "hello")
    assert _mode(path) == 0o666 & ~umask


def test_a_saved_model_is_readable_by_a_service_user_under_umask_022(tmp_path):
    previous = os.umask(0o022)
    try:
        model = imagerec.learn({"cat": [SHOTS + "cat_train_0.bmp"], "dog": [SHOTS + "dog_train_0.bmp"]},
                               head="imprint", cache=False, name="pets")
        path = model.save(tmp_path / "pets.imagerec")
    finally:
        os.umask(previous)
    assert _mode(path) == 0o644
