"""imagerec picks Keras's PyTorch backend only when it needs Keras, and never overrides a user's choice."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)


def test_import_imagerec_leaves_keras_alone() -> None:
    done = run("import os, sys, imagerec; print(os.environ.get('KERAS_BACKEND'), 'keras' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False"]


@pytest.mark.slow  # over 4 s here
def test_imagerecs_keras_features_choose_torch_when_nothing_was_chosen() -> None:
    done = run("from imagerec.core.keras_backend import import_keras; print(import_keras().backend.backend())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "torch"


def test_a_users_other_backend_is_kept_and_named_in_one_line() -> None:
    code = (
        "from imagerec.core.keras_backend import import_keras\n"
        "from imagerec.core.errors import UsageError\n"
        "try:\n    import_keras()\nexcept UsageError as exc:\n    print(exc)\n"
    )
    done = run(code, KERAS_BACKEND="numpy")
    assert done.returncode == 0, done.stderr
    assert "runs on 'numpy'" in done.stdout and "KERAS_BACKEND=torch" in done.stdout
