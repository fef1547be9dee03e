"""The hostile-input corpus against a real ``imagerec serve`` process (issue 20).

Sockets that never finish their headers come from 127.0.0.2 (the whole
127/8 block is loopback on Linux), so they are a different client from the
health checks on 127.0.0.1, as an attacker on the network would be.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from test_serving_server import start_server

pytestmark = pytest.mark.slow

SLOW_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # and never the blank line that ends them


def open_slow_sockets(server_url: str, count: int, source: str = "127.0.0.2") -> list[socket.socket]:
    port = int(server_url.rsplit(":", 1)[1])
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(SLOW_HEADERS)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server answered (408) or closed the socket."""
    sock.settimeout(0.01)
    try:
        sock.recv(1024)  # b"" (closed) or the 408 that precedes the close
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True
    return True


def test_slow_headers_neither_starve_health_checks_nor_stay_open(models_dir, tmp_path):
    # A cap of 100 connections and 200 sockets that never finish their headers:
    # before, every request got 503 for as long as they stayed open.
    server = start_server(tmp_path, "--max-connections", "100", "--max-client-connections", "150", "--header-timeout", "2")
    sockets: list[socket.socket] = []
    try:
        sockets = open_slow_sockets(server.url, 200)
        for _ in range(5):
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
            assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200
        deadline = time.monotonic() + 30
        while not all(closed_by_server(sock) for sock in sockets):  # dropped after the header deadline
            assert time.monotonic() < deadline, "sockets that never finished their headers are still open"
            time.sleep(0.2)
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_one_client_cannot_hold_more_than_its_share(models_dir, tmp_path):
    server = start_server(tmp_path, "--max-client-connections", "20", "--header-timeout", "60")
    sockets: list[socket.socket] = []
    try:
        sockets = open_slow_sockets(server.url, 60)
        time.sleep(0.5)  # let the server evict
        still_open = [sock for sock in sockets if not closed_by_server(sock)]
        assert len(still_open) == 20  # the newest 20: the oldest were closed to make room
        assert all(sock in sockets[-20:] for sock in still_open)
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200  # another client
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_the_default_host_list_refuses_dns_rebinding(models_dir, tmp_path):
    server = start_server(tmp_path)
    try:
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        assert httpx.get(server.url.replace("127.0.0.1", "localhost") + "/healthz", timeout=5).status_code == 200
        assert httpx.get(server.url + "/v1/models", headers={"host": "evil.example"}, timeout=5).status_code == 400
    finally:
        server.stop()
