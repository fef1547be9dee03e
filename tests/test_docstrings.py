"""Every example in a docstring runs and prints what it says.

The examples are the first code a reader copies, so they are tested like
the rest. They name the sample photos as ``../shared/photos/...``, so they
run from the project folder.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import imagerec

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(info.name for info in pkgutil.walk_packages(imagerec.__path__, "imagerec.") if info.name != "imagerec.__main__")


def test_modules_are_found():
    assert {"imagerec.core.images", "imagerec.recognizer", "imagerec.library.catalog"} <= set(MODULES)


@pytest.mark.parametrize("name", ["imagerec", *MODULES])
def test_docstring_examples(name: str, photos_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # each example sees a copy of its module's globals
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} docstring examples in {name} failed (output above)"
