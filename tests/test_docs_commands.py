"""Every shell command block in README.md and docs/*.md runs, the way the docstring examples are tested.

A fenced block in ``bash``, ``sh``, ``shell`` or ``console`` is run with bash
(``set -euo pipefail``) in a fresh folder of its own that holds the files the
docs name: ``photos/`` (class folders), ``cat.jpg`` and ``parrot.jpg`` (12-megapixel
JPEGs, as a phone takes), ``photo.jpg``, ``holiday/``, ``more-photos/``,
``labelled/``, ``pets.imagerec``, a ``~/Pictures`` library, and ``../shared``.
In a ``console`` block the commands are the lines starting with ``$ `` (and
the indented lines after them); the other lines are sample output, not
compared. Commands that talk to ``http://127.0.0.1:8000`` reach an
``imagerec serve`` the test starts.

A block that cannot run here says why in a comment on the line before it,
``<!-- not tested: needs cloud credentials -->``, and is reported as skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_serving_server import Server, start_server

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("bash", "sh", "shell", "console")
SKIP = re.compile(r"<!--\s*not tested:\s*(.+?)\s*-->")
SERVER = "127.0.0.1:8000"


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    text: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def script(self) -> str:
        """The block's commands as one bash script."""
        lines = self.text.splitlines()
        if self.language != "console":
            return "\n".join(lines)
        commands: list[str] = []
        inside = False
        for line in lines:
            if line.startswith("$ "):
                commands.append(line[2:])
                inside = True
            elif inside and line[:1].isspace() and line.strip():
                commands.append(line)  # the continuation of a command
            else:
                inside = False  # sample output
        return "\n".join(commands)


def shell_blocks(path: Path) -> list[Block]:
    """The shell blocks of one Markdown file, each with the reason it is not run (if it says one)."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\w+)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        if opening.group(2) in SHELLS:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            reason = SKIP.search(before)
            indent = len(opening.group(1))
            body = "\n".join(line[indent:] for line in lines[i + 1:end])
            blocks.append(Block(str(path.relative_to(ROOT)), i + 1, opening.group(2), body,
                                reason.group(1) if reason else None))
        i = end + 1
    return blocks


BLOCKS = [block for doc in DOCS for block in shell_blocks(doc)]


def test_the_docs_have_shell_blocks_and_most_are_run() -> None:
    assert len(BLOCKS) > 20
    run = [block for block in BLOCKS if block.skip is None]
    assert len(run) >= 8, [block.id for block in run]


# -- the folder a block runs in ------------------------------------------------------------


def _jpeg(source: Path, dest: Path, size: tuple[int, int] | None = None) -> None:
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        if size is not None:
            image = image.resize(size, Image.Resampling.BICUBIC)
        image.save(dest, quality=92)


@pytest.fixture(scope="module")
def materials(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> Path:
    """The files a block's folder is made of, made once."""
    folder = tmp_path_factory.mktemp("docs-materials")
    # A phone's photo: 12 megapixels, a few MB, so base64 of it is far past a command line's limit.
    _jpeg(photos_dir / "cat_1080p.jpg", folder / "cat.jpg", (4000, 3000))
    _jpeg(photos_dir / "parrot.jpg", folder / "parrot.jpg", (4000, 3000))
    assert (folder / "cat.jpg").stat().st_size > 1_000_000
    shots = photos_dir / "few-shot"
    classes = {
        "cat": [shots / "cat_train_0.bmp", photos_dir / "cat_720p.jpg", photos_dir / "cat_1080p.jpg"],
        "dog": [shots / "dog_train_0.bmp", photos_dir / "pets.jpg"],
        "hot dog": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp", photos_dir / "hot_dog.jpg"],
    }
    for name in ("photos", "labelled", "labelled-test-photos"):
        for label, files in classes.items():
            (folder / name / label).mkdir(parents=True)
            for i, source in enumerate(files):
                _jpeg(source, folder / name / label / f"{i}.jpg")
    (folder / "more-photos" / "parrot").mkdir(parents=True)
    _jpeg(photos_dir / "parrot.jpg", folder / "more-photos" / "parrot" / "0.jpg")
    _jpeg(photos_dir / "bird.bmp", folder / "more-photos" / "parrot" / "1.jpg")
    (folder / "holiday").mkdir()
    for name in ("owl.jpg", "kite_and_cold.jpg", "hot_dog.jpg"):
        shutil.copy(photos_dir / name, folder / "holiday" / name)
    shutil.copy(photos_dir / "hot_dog.jpg", folder / "photo.jpg")
    _jpeg(shots / "hotdog_train_0.bmp", folder / "mug1.jpg")
    _jpeg(shots / "hotdog_train_1.bmp", folder / "mug2.jpg")
    pictures = folder / "home" / "Pictures"
    for sub, name, source in (("2021", "IMG_0412.jpg", "pets.jpg"), ("2021/06", "IMG_0412.jpg", "pets.jpg"),
                              ("2019/12", "park.jpg", "pets.jpg"), ("2020", "lunch.jpg", "hot_dog.jpg"),
                              ("2020", "lunch copy.jpg", "hot_dog.jpg"), ("2022", "parrot.jpg", "parrot.jpg")):
        (pictures / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(photos_dir / source, pictures / sub / name)
    import imagerec

    learned = imagerec.learn({label: [str(p) for p in files] for label, files in classes.items()},
                             head="imprint", cache=False, name="pets")
    learned.save(folder / "pets.imagerec")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Server:
    running = start_server(tmp_path_factory.mktemp("docs-server"))
    yield running
    running.stop()


def _folder(materials: Path, tmp_path: Path) -> Path:
    """A fresh copy of the materials as ``work/``, with ``../shared`` beside it."""
    work = tmp_path / "work"
    shutil.copytree(materials, work, symlinks=True)
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    return work


@pytest.mark.slow  # about a minute in all: a server, a few trainings and exports
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_doc_command_block_runs(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    work = _folder(request.getfixturevalue("materials"), tmp_path)
    script = block.script()
    if SERVER in script:
        script = script.replace(SERVER, request.getfixturevalue("server").url.removeprefix("http://"))
    env = {**os.environ, "HOME": str(work / "home"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{block.id} failed ({run.returncode}):\n{script}\n--- stdout\n{run.stdout[-3000:]}\n--- stderr\n{run.stderr[-3000:]}"
    if "curl" in script:  # a refused request still exits 0 in curl: the answers must be answers
        assert '"error"' not in run.stdout, run.stdout[-3000:]
