"""Every error imagerec raises on purpose.

The tree (leaf classes also inherit the matching built-in, so ``except
ValueError`` keeps working for callers who do not know imagerec)::

    ImagerecError
    ├── ImageDecodeError(ValueError)      a file or buffer is not a usable image
    ├── ImageTooLargeError(ImageDecodeError)  over the byte or pixel limit
    ├── ModelError
    │   ├── UnknownModelError(KeyError)   no model registered under that name
    │   ├── ModelFileError(OSError)       missing, unreadable or wrong-format model file
    │   └── ChecksumError(ModelFileError) sha256 differs from the pinned one
    ├── DownloadError(OSError)            a download failed or was refused
    │   └── OfflineError(DownloadError)   IMAGEREC_OFFLINE=1 forbids the download
    ├── OutputError(OSError)              an output file or folder cannot be written
    ├── UsageError(ValueError)            bad arguments from the caller
    ├── DatasetError(ValueError)          a training/evaluation dataset cannot be used
    ├── CloudError(OSError)               a cloud vision service refused or failed a request
    └── CatalogError(OSError)             a photo catalog is missing, unreadable or from a newer imagerec
        ├── CatalogBusyError              another process is writing to the catalog
        └── CatalogDamagedError           the catalog file is damaged (rebuild it)

Messages are one line: what was expected, what was received, where, and what
to do about it. Context travels as attributes (``path``, ``url``) so programs
need not parse messages.

>>> try:
...     raise ImageDecodeError("not an image", path="notes.txt")
... except ValueError as exc:
...     print(exc)
notes.txt: not an image
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "CatalogError",
    "CatalogBusyError",
    "CatalogDamagedError",
    "ImagerecError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "ModelError",
    "UnknownModelError",
    "ModelFileError",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "OutputError",
    "UsageError",
    "DatasetError",
    "CloudError",
]


class ImagerecError(Exception):
    """Base of every error imagerec raises deliberately."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in context.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class ImageDecodeError(ImagerecError, ValueError):
    """An input could not be turned into an RGB image.

    ``path`` names the file (or ``"<bytes>"`` / ``"<array>"``) and is shown
    first in the message.
    """

    def __init__(self, reason: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.reason = reason
        where = str(path) if path is not None else "<image>"
        super().__init__(f"{where}: {reason}", path=where)


class ImageTooLargeError(ImageDecodeError):
    """The image is over the configured byte or pixel limit."""


class ModelError(ImagerecError):
    """A model could not be found, loaded or trusted."""


class UnknownModelError(ModelError, KeyError):
    """No model is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.message


class ModelFileError(ModelError, OSError):
    """A model file is missing, unreadable or not in the expected format."""


class ChecksumError(ModelFileError):
    """A file's sha256 is not the pinned one; the file is never used."""


class DownloadError(ImagerecError, OSError):
    """A download failed (network, HTTP status, truncated transfer)."""


class OfflineError(DownloadError):
    """A download was needed but IMAGEREC_OFFLINE=1 forbids it."""


class OutputError(ImagerecError, OSError):
    """A result (model file, report folder...) cannot be written where it was asked for.

    ``path`` names the file or folder that could not be written.
    """


class UsageError(ImagerecError, ValueError):
    """The caller passed arguments that cannot work together."""


class DatasetError(ImagerecError, ValueError):
    """A labelled dataset cannot be used (empty class, one class, bad CSV...).

    ``path`` names the folder, CSV or archive when there is one.
    """


class CloudError(ImagerecError, OSError):
    """A cloud vision service (Google, AWS, Azure) refused or failed a request.

    ``provider`` names the service; ``kind`` says what went wrong, one of
    ``"auth"`` (missing, wrong or unauthorised credentials), ``"quota"``
    (rate or quota exceeded after the bounded retries), ``"invalid_image"``
    (the service would not take this image), ``"network"`` (no answer),
    ``"server"`` (5xx after retries) or ``"config"`` (nothing configured);
    ``status`` is the HTTP status when there was one. The message starts
    with the provider's name and never contains a credential.
    """

    def __init__(self, provider: str, message: str, *, kind: str = "server", status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}", provider=provider, kind=kind, status=status)


class CatalogError(ImagerecError, OSError):
    """The catalog file is missing, unreadable, or from a newer imagerec."""


class CatalogBusyError(CatalogError):
    """Another process is writing to the catalog."""


class CatalogDamagedError(CatalogError):
    """The catalog file is damaged; ``imagerec index ROOT --rebuild`` makes a new one."""
