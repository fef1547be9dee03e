"""What the command says about the names a user types: the version, mistyped model files and zoo names."""

from __future__ import annotations

import pytest

import imagerec
from imagerec.cli import run_app
from imagerec.core.errors import ModelFileError, UnknownModelError


def test_version_prints_the_package_version(capsys) -> None:
    assert run_app(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"imagerec {imagerec.__version__}"


@pytest.mark.parametrize("name", ["pets.kears", "models/pets.keras", "pets.imagerec"])
def test_a_mistyped_file_name_is_a_missing_file_not_an_unknown_model(name: str, capsys) -> None:
    assert run_app(["predict", "x.jpg", "--model", name]) == 1
    err = capsys.readouterr().err
    assert f"{name}: no such" in err and "no model named" not in err


def test_a_mistyped_zoo_name_gets_a_suggestion(capsys) -> None:
    assert run_app(["predict", "x.jpg", "--model", "mobilenetv2"]) == 2
    assert "did you mean 'mobilenet_v2'" in capsys.readouterr().err


def test_the_python_api_says_the_same() -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        imagerec.load("pets.kears")
    with pytest.raises(UnknownModelError, match="did you mean 'mobilenet_v1_embedder'"):
        imagerec.load("mobilenet_v1_embeder")
    with pytest.raises(UnknownModelError, match="known models") as caught:
        imagerec.load("completely_different")
    assert "did you mean" not in str(caught.value)
