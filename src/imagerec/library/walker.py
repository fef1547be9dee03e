"""Find the photos under a library root.

Image files are those whose suffix is one of ``imagerec.core.images.IMAGE_SUFFIXES``.
Hidden entries (a leading dot: ``.git``, ``.imagerec``, ``.Trash-1000``) and
the system folders that operating systems and NAS boxes scatter around
(``@eaDir``, ``$RECYCLE.BIN``, ``System Volume Information``, ``__MACOSX``,
``lost+found``) are skipped. Symbolic links to folders are followed once: a
folder already visited (same device and inode) is not entered again, so a link
loop ends. Paths come back relative to the root, with ``/`` separators.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "a b").mkdir(); _ = (root / "a b" / "x.JPG").write_bytes(b"")
>>> _ = (root / ".hidden").mkdir(); _ = (root / ".hidden" / "y.jpg").write_bytes(b"")
>>> [entry.path for entry in walk(root)]
['a b/x.JPG']
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Callable, Iterator

from ..core.images import IMAGE_SUFFIXES

__all__ = ["Entry", "walk", "SYSTEM_FOLDERS"]

SYSTEM_FOLDERS = frozenset(
    {
        "@eadir",  # Synology thumbnails
        "$recycle.bin",
        "system volume information",
        "__macosx",
        "lost+found",
        "#recycle",
        "#snapshot",
    }
)


@dataclass(frozen=True)
class Entry:
    """One photo file: its path relative to the root, size and mtime."""

    path: str
    size: int
    mtime_ns: int


def walk(root: str | os.PathLike[str], on_error: Callable[[str, OSError], None] | None = None) -> Iterator[Entry]:
    """Yield every photo under ``root``, folder by folder, names sorted.

    Unreadable folders are reported to ``on_error`` and skipped.
    """
    top = os.fspath(root)
    seen: set[tuple[int, int]] = set()
    try:
        info = os.stat(top)
        seen.add((info.st_dev, info.st_ino))
    except OSError as exc:
        if on_error:
            on_error(top, exc)
        return
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as iterator:
                entries = sorted(iterator, key=lambda entry: entry.name)
        except OSError as exc:
            if on_error:
                on_error(folder, exc)
            continue
        subfolders = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower() in SYSTEM_FOLDERS:
                continue
            relative = prefix + name
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # bytes the file system allows but no catalog can store as text
                if on_error:
                    shown = os.fsencode(os.path.join(folder, name)).decode("utf-8", "backslashreplace")
                    on_error(shown, OSError(errno.EILSEQ, "file name is not valid UTF-8 (rename it)"))
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    info = entry.stat(follow_symlinks=True)
                    key = (info.st_dev, info.st_ino)
                    if key not in seen:  # a link loop, or a second link to the same folder
                        seen.add(key)
                        subfolders.append((entry.path, relative + "/"))
                    continue
                if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                    continue
                info = entry.stat(follow_symlinks=True)
            except OSError as exc:  # a dangling link, a file removed meanwhile
                if on_error:
                    on_error(entry.path, exc)
                continue
            if entry.is_file(follow_symlinks=True):
                yield Entry(relative, info.st_size, info.st_mtime_ns)
        stack.extend(reversed(subfolders))
