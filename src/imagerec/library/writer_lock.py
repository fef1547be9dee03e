"""The one-writer lock of a catalog: an OS file lock beside the database, gone with its process.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> lock = WriterLock(os.path.join(folder, "c.db.lock"), os.path.join(folder, "c.db"))
>>> lock.acquire()
>>> WriterLock(os.path.join(folder, "c.db.lock"), os.path.join(folder, "c.db")).acquire(wait=0)
Traceback (most recent call last):
imagerec.core.errors.CatalogBusyError: ...another indexer (pid ...) is writing to this catalog; wait for it to finish or pass --wait SECONDS
>>> lock.release()
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, TextIO

from ..core.errors import CatalogBusyError, CatalogError

__all__ = ["WriterLock"]


class WriterLock:
    """Held by the one process that writes a catalog; readers never take it.

    The lock is an OS file lock (``flock``), so it disappears with its
    process, even on SIGKILL: a killed indexer never leaves the catalog
    locked. The lock file names its holder for the message others get.
    """

    def __init__(self, path: str | os.PathLike[str], catalog: str | os.PathLike[str]) -> None:
        self.path, self.catalog = Path(path), Path(catalog)
        self._handle: TextIO | None = None

    def acquire(self, wait: float | None = 0.0, on_wait: Callable[[str], None] | None = None) -> None:
        """Wait up to ``wait`` seconds (``None``: forever) to become the writer; ``on_wait(holder)`` once if waiting."""
        try:
            handle = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise CatalogError(
                f"{self.path}: cannot write the catalog here ({exc.strerror or exc}); "
                "pass --catalog FILE to keep it in a writable folder",
                path=str(self.path),
            ) from exc
        deadline = None if wait is None else time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    handle.close()
                    raise CatalogError(f"{self.path}: cannot lock the catalog ({exc})") from exc
                if deadline is not None and time.monotonic() >= deadline:
                    holder = self.holder()
                    handle.close()
                    raise CatalogBusyError(
                        f"{self.catalog}: another indexer ({holder}) is writing to this catalog; "
                        "wait for it to finish or pass --wait SECONDS",
                        path=str(self.catalog),
                    ) from None
                if on_wait is not None and not told:
                    on_wait(self.holder())
                    told = True
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        since = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        handle.write(f"pid {os.getpid()} since {since}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            self._handle.close()  # closing releases the flock
            self._handle = None

    def holder(self) -> str:
        """Who holds the lock, as its file says (``"another process"`` if it says nothing)."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return text or "another process"
