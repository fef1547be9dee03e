"""Connection limits uvicorn lacks: a header deadline and per-client caps.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and counts
connections (``limit_concurrency``), but a client that sends half a request
line and then nothing holds its socket for ever, and every such socket
counts towards ``limit_concurrency`` — ~515 of them made every request,
health checks included, answer 503 (issue 20). :func:`guarded_protocol`
subclasses uvicorn's own httptools protocol (the one it picks by default)
with three rules:

- a connection that has not finished its request headers within
  ``header_timeout`` seconds of opening (or of its previous response) is
  closed — with a 408 if it had started a request;
- one client address may hold ``max_per_client`` connections; a new one
  over that closes the client's oldest connection still waiting for headers
  (or is refused with 503 when all of them are busy with requests);
- the server holds at most ``max_connections``; over that the oldest
  connection waiting for headers, of any client, makes room.

A connection whose headers are complete is never evicted, so requests being
served are not disturbed, and a new connection is always let in while
anyone is only holding sockets open — so ``/healthz`` keeps answering.
Pass the class to uvicorn as ``uvicorn.run(app, http=guarded_protocol(...))``.

>>> limits = ConnectionLimits(header_timeout=5, max_connections=1024, max_per_client=64)
>>> limits.max_per_client
64
>>> ConnectionLimits(header_timeout=0)
Traceback (most recent call last):
...
imagerec.core.errors.UsageError: header_timeout must be positive, got 0
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..core.errors import UsageError

__all__ = ["ConnectionLimits", "guarded_protocol"]

log = logging.getLogger("imagerec.serving")

_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take over its headers and how many sockets it may hold."""

    header_timeout: float = 5.0
    max_connections: int = 4096
    max_per_client: int = 128

    def __post_init__(self) -> None:
        if not self.header_timeout > 0:
            raise UsageError(f"header_timeout must be positive, got {self.header_timeout}")
        for name in ("max_connections", "max_per_client"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")


class _Book:
    """Every open connection of one server, by client, and which of them wait for headers."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[Any, str] = {}
        self.per_client: dict[str, int] = {}
        self.waiting: OrderedDict[Any, str] = OrderedDict()  # oldest first

    def admit(self, connection: Any, client: str) -> bool:
        """Make room for ``connection``; False when nothing can be evicted."""
        if self.per_client.get(client, 0) >= self.limits.max_per_client:
            if not self._evict(lambda owner: owner == client):
                return False
        if len(self.open) >= self.limits.max_connections:
            if not self._evict(lambda owner: True):
                return False
        self.open[connection] = client
        self.per_client[client] = self.per_client.get(client, 0) + 1
        self.waiting[connection] = client
        return True

    def _evict(self, matches) -> bool:
        for victim, owner in self.waiting.items():
            if matches(owner):
                victim.drop()  # connection_lost follows and calls forget()
                self.forget(victim)
                return True
        return False

    def busy(self, connection: Any) -> None:
        self.waiting.pop(connection, None)

    def idle(self, connection: Any) -> None:
        if connection in self.open:
            self.waiting[connection] = self.open[connection]

    def forget(self, connection: Any) -> None:
        self.waiting.pop(connection, None)
        client = self.open.pop(connection, None)
        if client is not None:
            left = self.per_client[client] - 1
            if left:
                self.per_client[client] = left
            else:
                del self.per_client[client]


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits`` enforced (one book per call)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    book = _Book(limits)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _started = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            client = self.client[0] if self.client else "-"
            if not book.admit(self, client):
                log.warning("refused a connection from %s: all of its connections are busy", client)
                transport.write(_BUSY_RESPONSE)
                transport.close()
                return
            self._arm()

        def on_message_begin(self) -> None:
            self._started = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._disarm()
            book.busy(self)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                self._started = False
                book.idle(self)
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            book.forget(self)
            super().connection_lost(exc)

        def drop(self) -> None:
            """Close a connection that never finished its headers."""
            self._disarm()
            if not self.transport.is_closing():
                if self._started:
                    self.transport.write(_TIMEOUT_RESPONSE)
                self.transport.close()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(limits.header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            book.forget(self)
            self.drop()

    return GuardedHttpToolsProtocol
