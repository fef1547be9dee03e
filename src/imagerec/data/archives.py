"""Dataset archives (``.tar``, ``.tar.gz``) extracted once into a cache, within limits.

Extraction goes through tarfile's "data" filter (no absolute paths, no
``..``, no device files, no links out of the folder) and a budget checked
member by member, before each member's bytes are written: total size, number
of files and size relative to the archive. A refused or failed extraction
leaves nothing behind.

>>> import io, tarfile, tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> with tarfile.open(folder / "bomb.tar.gz", "w:gz") as tar:
...     member = tarfile.TarInfo("cats/zeros.jpg"); member.size = 50_000_000
...     tar.addfile(member, io.BytesIO(bytes(member.size)))
>>> extract_archive(folder / "bomb.tar.gz", folder / "cache")
Traceback (most recent call last):
...
imagerec.core.errors.DatasetError: ...: refusing to extract the archive: its files add up to more than ...
>>> list((folder / "cache").iterdir())
[]
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import zoo
from ..core.errors import DatasetError, UsageError

__all__ = ["ArchiveLimits", "extract_archive"]


@dataclass(frozen=True)
class ArchiveLimits:
    """What extracting a dataset archive may write, checked member by member.

    Each member's size is known from its header before its bytes are
    written, so a bomb (gigabytes of zeros in a small ``.tar.gz``) is
    refused before it reaches the disk. Photos barely compress, so a
    ratio of 100 leaves ample room for real datasets.

    >>> ArchiveLimits().max_ratio
    100
    """

    max_total_bytes: int = 16 * 1024**3
    max_members: int = 1_000_000
    max_ratio: int = 100  # extracted bytes per byte of archive

    def __post_init__(self) -> None:
        for name in ("max_total_bytes", "max_members", "max_ratio"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")


class _ExtractionBudget:
    """A tarfile extraction filter: the "data" filter, then the running totals."""

    def __init__(self, archive: Path, limits: ArchiveLimits) -> None:
        self.archive, self.limits = archive, limits
        self.allowed = min(limits.max_total_bytes, limits.max_ratio * max(1, archive.stat().st_size))
        self.members = 0
        self.total = 0

    def __call__(self, member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        member = tarfile.data_filter(member, path)
        self.members += 1
        self.total += member.size
        if self.members > self.limits.max_members:
            self._refuse(f"it holds more than {self.limits.max_members:,} files")
        if self.total > self.allowed:
            self._refuse(
                f"its files add up to more than {self.allowed:,} bytes ({self.limits.max_ratio}× the archive's size, "
                f"at most {self.limits.max_total_bytes:,}; {member.name!r} alone is {member.size:,}): "
                "a decompression bomb? If it is real, extract it yourself and give the folder"
            )
        return member

    def _refuse(self, why: str) -> None:
        raise DatasetError(f"{self.archive}: refusing to extract the archive: {why}", path=str(self.archive))


def extract_archive(archive: Path, cache: Path, limits: ArchiveLimits = ArchiveLimits()) -> Path:
    """Extract ``archive`` once into ``cache`` (keyed by its sha256); return the folder.

    The archive is unpacked into a staging folder that is renamed into place
    once complete: a folder, so :func:`~imagerec.core.fs.atomic_path` (one
    file) does not apply, and ``.complete`` inside it marks a finished one.
    """
    try:
        digest = zoo.sha256_file(archive)
    except OSError as exc:
        raise DatasetError(f"{archive}: cannot read ({exc.strerror or exc})", path=str(archive)) from exc
    target = cache / digest[:32]
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, "..", device files and
            # links that leave the folder: an archive cannot write elsewhere;
            # the budget refuses a bomb before its first big member is written.
            tar.extractall(staging, filter=_ExtractionBudget(archive, limits))
        (staging / ".complete").write_text(str(archive))
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / ".complete").is_file():  # another process won the race otherwise
                raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"{archive}: cannot extract the archive ({exc})", path=str(archive)) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
