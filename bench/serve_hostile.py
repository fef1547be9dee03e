"""``imagerec serve`` under attack: slow-header sockets and hostile inputs (issue 20).

Starts ``imagerec serve`` on 127.0.0.1 and alternates two phases:

- normal: ``--clients`` concurrent clients post the shared photos to
  ``/v1/predict`` (raw ``image/jpeg``); a probe asks ``/healthz`` every
  0.2 s;
- attack: the same, while 1,000 sockets that send
  ``GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n`` and never finish their headers
  are held open (from 8 loopback addresses, 127.0.0.2–9, as 8 attackers;
  each socket the server drops is opened again at once) and one more client
  sends a stream of hostile inputs (a float32 TIFF, a 16-bit PNG and an
  RGBA PNG of ``--side``², a zTXt bomb, a 5000-digit ``top_k``, 100,000
  nested brackets).

It reports, per phase, the real requests per second, the slowest and p99
``/healthz`` times and errors, and the attack/normal ratio (the median of
``--repeats`` pairs). The issue's bar: ``/healthz`` under 1 s and real
requests at 70 % or more of the normal rate::

    .venv/bin/python bench/serve_hostile.py                      # 3 pairs of 20 s
    .venv/bin/python bench/serve_hostile.py --seconds 10 --repeats 1

Clients, attackers and server share the machine's cores, so the ratio is a
floor. Results: a table on stdout and ``bench/results/serve_hostile.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "tests"))

import hostile  # noqa: E402  (the corpus's generators)

SLOW_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "imagerec", "serve", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"imagerec serve exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    sys.exit("imagerec serve did not become ready")


def hostile_requests(side: int) -> list[dict]:
    nines = "9" * 5000
    images = {"float-tiff": hostile.float_tiff(side), "png16": hostile.png16(side), "rgba-png": hostile.rgba_png(side),
              "ztxt-bomb": hostile.ztxt_bomb()}
    requests = [{"content": data, "headers": {"content-type": "application/octet-stream"}} for data in images.values()]
    requests.append({"content": '{"images": [{"content": "aGk="}], "top_k": %s}' % nines,
                     "headers": {"content-type": "application/json"}})
    requests.append({"content": "[" * 100_000 + "]" * 100_000, "headers": {"content-type": "application/json"}})
    return requests


async def real_clients(url: str, photos: list[bytes], clients: int, stop: asyncio.Event, counts: dict) -> None:
    async def one(index: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            position = index
            while not stop.is_set():
                photo = photos[position % len(photos)]
                position += clients
                try:
                    reply = await http.post(url + "/v1/predict", content=photo, headers={"content-type": "image/jpeg"})
                    counts["ok" if reply.status_code == 200 else "errors"] += 1
                except httpx.HTTPError:
                    counts["errors"] += 1

    await asyncio.gather(*(one(i) for i in range(clients)))


async def health_probe(url: str, stop: asyncio.Event, times: list[float], failures: list[str]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                reply = await http.get(url + "/healthz")
                if reply.status_code != 200:
                    failures.append(str(reply.status_code))
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)


async def slow_sockets(port: int, count: int, stop: asyncio.Event, held: dict) -> None:
    """Hold ``count`` half-sent requests open from 8 addresses; reopen each one the server drops."""

    async def hold(source: str) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.write(SLOW_HEADERS)
            held["open"] += 1
            try:
                stopped = asyncio.create_task(stop.wait())
                closed = asyncio.create_task(reader.read())  # b"" or a 408 once the server drops it
                await asyncio.wait({stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed.done():
                    held["dropped"] += 1
                for task in (stopped, closed):
                    task.cancel()
            finally:
                held["open"] -= 1
                writer.close()

    await asyncio.gather(*(hold(f"127.0.0.{2 + i % 8}") for i in range(count)))


async def hostile_stream(url: str, requests: list[dict], stop: asyncio.Event, statuses: dict) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        position = 0
        while not stop.is_set():
            request = requests[position % len(requests)]
            position += 1
            try:
                reply = await http.post(url + "/v1/predict", **request)
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1


async def phase(url: str, port: int, photos: list[bytes], options, attack: bool, requests: list[dict]) -> dict:
    stop = asyncio.Event()
    counts = {"ok": 0, "errors": 0}
    times: list[float] = []
    failures: list[str] = []
    held = {"open": 0, "dropped": 0}
    statuses: dict = {}
    tasks = [health_probe(url, stop, times, failures)]
    attacker = None
    if attack and options.sockets:
        # The attacker is its own process, as it would be: its event loop must not slow the real clients'.
        attacker = subprocess.Popen([sys.executable, __file__, "--attacker", str(port), str(options.sockets)],
                                    stdout=subprocess.PIPE, text=True)
    if attack and options.hostile:
        tasks.append(hostile_stream(url, requests, stop, statuses))
    running = [asyncio.create_task(task) for task in tasks]
    if attacker is not None:
        await asyncio.sleep(3)  # the sockets are open before the clock starts
    peak_open = 0
    clients = asyncio.create_task(real_clients(url, photos, options.clients, stop, counts))
    started = time.perf_counter()
    while time.perf_counter() - started < options.seconds:
        await asyncio.sleep(0.5)
    stop.set()
    elapsed = time.perf_counter() - started
    await asyncio.gather(clients, *running, return_exceptions=True)
    if attacker is not None:
        attacker.terminate()
        report = attacker.communicate(timeout=30)[0].strip().splitlines()
        if report:
            held.update(json.loads(report[-1]))
            peak_open = held["peak"]
    ordered = sorted(times)
    return {
        "attack": attack, "seconds": elapsed, "requests_per_s": counts["ok"] / elapsed, "errors": counts["errors"],
        "healthz_max_s": ordered[-1] if ordered else None,
        "healthz_p99_s": ordered[int(0.99 * (len(ordered) - 1))] if ordered else None,
        "healthz_failures": len(failures), "slow_sockets_held_peak": peak_open, "slow_sockets_dropped": held["dropped"],
        "hostile_statuses": {str(k): v for k, v in statuses.items()},
    }


def attacker_main(port: int, count: int) -> None:
    """The attacker process: hold the sockets until terminated, then print what it saw."""
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 256)), hard))
    held = {"open": 0, "dropped": 0, "peak": 0}

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        holder = asyncio.create_task(slow_sockets(port, count, stop, held))
        while not stop.is_set():
            held["peak"] = max(held["peak"], held["open"])
            await asyncio.sleep(0.2)
        await holder

    asyncio.run(run())
    print(json.dumps({"peak": held["peak"], "dropped": held["dropped"]}), flush=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--attacker":
        attacker_main(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--repeats", type=int, default=3, help="normal/attack pairs; medians are reported")
    parser.add_argument("--clients", type=int, default=4, help="concurrent real clients")
    parser.add_argument("--sockets", type=int, default=1000, help="slow-header sockets held during the attack")
    parser.add_argument("--side", type=int, default=5000, help="side of the hostile high-bit-depth images")
    parser.add_argument("--no-hostile", dest="hostile", action="store_false", help="attack with the sockets only")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "serve_hostile.json")
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, options.sockets + 512)), hard))
    photos = [p.read_bytes() for p in sorted((SHARED / "photos").glob("*.jpg"))]
    requests = hostile_requests(options.side)
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="serve-hostile-")) / "server.log"
    options.output.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(port, log)
    url = f"http://127.0.0.1:{port}"
    pairs = []
    try:
        for _ in range(options.repeats):
            normal = asyncio.run(phase(url, port, photos, options, False, requests))
            attacked = asyncio.run(phase(url, port, photos, options, True, requests))
            pairs.append({"normal": normal, "attack": attacked, "ratio": attacked["requests_per_s"] / normal["requests_per_s"]})
            print(f"normal {normal['requests_per_s']:6.1f} req/s, healthz max {normal['healthz_max_s']:.3f} s | "
                  f"attack {attacked['requests_per_s']:6.1f} req/s, healthz max {attacked['healthz_max_s']:.3f} s "
                  f"(p99 {attacked['healthz_p99_s']:.3f}), {attacked['healthz_failures']} failed, "
                  f"sockets held {attacked['slow_sockets_held_peak']}, dropped {attacked['slow_sockets_dropped']}, "
                  f"hostile answers {attacked['hostile_statuses']} | ratio {pairs[-1]['ratio']:.2f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    ratio = statistics.median(pair["ratio"] for pair in pairs)
    worst = max(pair["attack"]["healthz_max_s"] for pair in pairs)
    verdict = "PASS" if ratio >= 0.7 and worst < 1.0 else "FAIL"
    print(f"median ratio {ratio:.2f} (bar 0.70), slowest /healthz under attack {worst:.3f} s (bar 1 s): {verdict}")
    options.output.write_text(json.dumps({"pairs": pairs, "median_ratio": ratio, "healthz_worst_s": worst,
                                          "options": vars(options) | {"output": str(options.output)},
                                          "cpus": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
