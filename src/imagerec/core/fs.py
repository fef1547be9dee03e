"""Writing files safely: whole or not at all, and output folders checked before long work.

:func:`atomic_path` is the one way imagerec writes a file that must never be
seen half-written (models, reports, caches, catalog side files): the content
goes to a temporary name in the same folder, is flushed to disk, given the
permissions any new file gets (``0o666`` less the process umask, as ``cp``
or Keras's ``model.save`` do; temporary files start private) and renamed over
the destination in one step. Any error leaves the destination as it was and no
temporary file behind.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> atomic_write_text(os.path.join(folder, "note.txt"), "hello").read_text()
'hello'
>>> with atomic_path(os.path.join(folder, "note.txt")) as tmp:
...     _ = tmp.write_text("changed")
...     raise RuntimeError("interrupted")
Traceback (most recent call last):
RuntimeError: interrupted
>>> open(os.path.join(folder, "note.txt")).read(), sorted(os.listdir(folder))
('hello', ['note.txt'])
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import OutputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "new_file_mode", "prepare_output_folder"]

_UMASK_LOCK = threading.Lock()


def new_file_mode() -> int:
    """The permissions a newly created file gets in this process: ``0o666`` less the umask.

    >>> new_file_mode() & 0o600  # the owner can always read and write
    384
    """
    try:  # Linux says it without changing it (other threads may be creating files)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Elsewhere POSIX reads the umask only by setting it: set and restore under a lock.
    with _UMASK_LOCK:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, mode: int | None = None, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``dest`` to write to; renamed over ``dest`` when the block ends without error.

    The temporary name keeps ``dest``'s suffixes (some writers, such as Keras
    and ONNX, choose the format by them) and starts with a dot, so folder
    listings and globs skip it. A folder that is missing is created.
    ``mode`` defaults to :func:`new_file_mode` (the umask decides, as for any file).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # All the suffixes: Keras wants weights files to end in ".weights.h5", not just ".h5".
    fd, name = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix="".join(dest.suffixes) or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
        os.chmod(tmp, new_file_mode() if mode is None else mode)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``dest`` atomically (see :func:`atomic_path`); return ``dest`` as a Path."""
    with atomic_path(dest, mode=mode) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically; return ``dest`` as a Path."""
    return atomic_write_bytes(dest, text.encode("utf-8"), mode=mode)


def prepare_output_folder(folder: str | os.PathLike[str], *, what: str = "the output") -> str:
    """Create ``folder`` (and its parents) and check a file can be written in it; return it.

    Called before long work so that a bad output location fails at once
    with an :class:`~imagerec.core.errors.OutputError` naming the path, not after
    an hour of training. ``what`` says in the message what was to be written.

    >>> import tempfile, os
    >>> folder = os.path.join(tempfile.mkdtemp(), "a", "b")
    >>> prepare_output_folder(folder) == folder and os.path.isdir(folder)
    True
    """
    where = os.fspath(folder) or "."
    blocker = where
    while blocker and not os.path.exists(blocker):  # the deepest part of the path that exists
        parent = os.path.dirname(blocker)
        blocker = parent if parent != blocker else ""
    if blocker and not os.path.isdir(blocker):
        raise OutputError(
            f"{where}: cannot write {what} there: {blocker} is a file, not a folder (choose another location)",
            path=where,
        )
    try:
        os.makedirs(where, exist_ok=True)
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        raise OutputError(
            f"{where}: cannot write {what} there ({exc.strerror or exc}); choose another location", path=where
        ) from exc
    return where
