"""Who may drive the service from a browser: the Host allow-list and cross-origin refusals.

A keyless server (the default) answers anything that reaches it, and a web
page on another site can reach ``127.0.0.1`` through the user's browser:
by posting to it (a form needs no CORS permission to be *sent*) or by DNS
rebinding (the page's own name made to resolve to 127.0.0.1, so the browser
even lets it read the answers). Two checks stop both:

- the ``Host`` header must be one the server expects (Starlette's
  ``TrustedHostMiddleware``; :func:`default_allowed_hosts` derives the list
  from the address the server listens on, ``--allowed-host`` extends it);
- a request that changes state (any method but GET, HEAD and OPTIONS) whose
  ``Origin`` is another site — or that the browser marks
  ``Sec-Fetch-Site: cross-site`` — is refused with 403 unless it carries a
  valid API key. The server's own page is same-origin, and a program
  (curl, a Cloud Vision client) sends no ``Origin`` at all.

>>> sorted(default_allowed_hosts("127.0.0.1"))
['127.0.0.1', '::1', 'localhost']
>>> cross_origin({"origin": "https://evil.example", "host": "127.0.0.1:8000"})
True
>>> cross_origin({"origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000"})
False
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Mapping
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["CrossOriginGuard", "cross_origin", "default_allowed_hosts"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def default_allowed_hosts(bind: str) -> list[str]:
    """The ``Host`` names a server listening on ``bind`` expects (port excluded).

    Loopback names always; for a wildcard address (``0.0.0.0``, ``::``) also
    this machine's name and addresses; otherwise the address itself. A
    server reached under a DNS name adds it with ``--allowed-host``.
    """
    hosts = set(LOOPBACK_NAMES)
    if bind in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
        hosts.update({name, socket.getfqdn()})
        try:
            hosts.update(info[4][0] for info in socket.getaddrinfo(name, None))
        except OSError:
            pass
    elif not _is_loopback(bind):
        hosts.add(bind)
    return sorted(hosts)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cross_origin(headers: Mapping[str, str]) -> bool:
    """Whether a browser sent this request from a page of another origin."""
    origin = headers.get("origin")
    if origin:
        return origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()
    return headers.get("sec-fetch-site") == "cross-site"


class CrossOriginGuard:
    """ASGI middleware: 403 for a cross-origin state-changing request without a valid API key."""

    def __init__(self, app, api_keys) -> None:
        self.app = app
        self.api_keys = api_keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("method") not in SAFE_METHODS:
            request = Request(scope)
            if cross_origin(request.headers) and not (
                self.api_keys.enabled and self.api_keys.accepts(self.api_keys.presented(request.headers, request.query_params))
            ):
                message = ("cross-origin request refused: a page of another site may not drive this server; "
                           "send an API key, or use the server's own page")
                response = JSONResponse({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": message}},
                                        status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
