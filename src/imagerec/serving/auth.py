"""Optional API keys: ``x-api-key`` header or ``?key=`` query parameter.

Google's client libraries send ``x-goog-api-key``, which is accepted too, so
a Cloud Vision client configured with ``client_options={"api_key": ...}``
works unchanged.

Keys are compared in constant time (both sides hashed first, so not even the
length leaks), and a key is never written to a log or echoed in a response.

>>> keys = ApiKeys(["correct-horse-battery-staple"])
>>> keys.accepts("correct-horse-battery-staple"), keys.accepts("wrong"), keys.accepts(None)
(True, False, False)
>>> ApiKeys([]).accepts(None)  # no keys configured: everyone is served
True
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable

__all__ = ["ApiKeys", "HEADER", "GOOGLE_HEADER", "QUERY_PARAMETER"]

HEADER = "x-api-key"
GOOGLE_HEADER = "x-goog-api-key"  # what Google's client libraries send for an api_key
QUERY_PARAMETER = "key"  # Cloud Vision's name for it


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class ApiKeys:
    """The set of keys a service accepts; empty means authentication is off."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    def __repr__(self) -> str:  # never show the keys
        return f"ApiKeys({len(self._digests)} keys)"

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str | None) -> bool:
        """Whether ``presented`` is one of the keys (always true when none are set)."""
        if not self._digests:
            return True
        if not presented:
            return False
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:  # no early exit: the time does not say which key matched
            matched |= hmac.compare_digest(digest, candidate)
        return matched

    def presented(self, headers, query_params) -> str | None:
        """The key a request carries, header first."""
        return headers.get(HEADER) or headers.get(GOOGLE_HEADER) or query_params.get(QUERY_PARAMETER)
