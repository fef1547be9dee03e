"""Load test for ``imagerec serve``: throughput and latency under concurrency.

Starts ``imagerec serve`` on 127.0.0.1 (a separate process, as in
production) with micro-batching on and then off, sends the shared photos
from C concurrent clients (httpx async, raw ``image/jpeg`` bodies to
``/v1/predict``) for C = 1, 8, 32, and reports images/s, p50 / p95 / p99
latency and errors, next to the in-process throughput measured in the same
run (``Recognizer.predict_files`` on the same photos: decode + model, and
the model alone on decoded batches). Each cell is the median of
``--repeats`` runs; each run is bounded by ``--requests`` and ``--seconds``.

    python bench/serve_load.py                          # the full version
    python bench/serve_load.py --requests 150 --repeats 1 --seconds 15   # a short one

The clients run on the same machine as the server and take CPU from it;
the numbers are a floor for a dedicated server. Results: a table on stdout
and ``bench/results/serve_load.json``. Because throughput on a shared machine
moves with the neighbours' load, the table also gives the server process's
CPU time per image (from /proc) next to the in-process CPU time per image:
their ratio is the service's overhead, whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def photos(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        sys.exit(f"no JPEG photos in {folder}")
    return [(p.name, p.read_bytes()) for p in files]


# -- in-process baseline -----------------------------------------------------------


class InProcess:
    """The same photos through ``Recognizer.predict_files`` in this process."""

    def __init__(self, model: str, images: list[tuple[str, bytes]], count: int) -> None:
        import imagerec

        self.recognizer = imagerec.load(model)
        self.sources = [images[i % len(images)][1] for i in range(count)]
        self.batch = self.recognizer.preprocess(self.sources[:32])
        list(self.recognizer.predict_files(self.sources[:8]))  # warm up

    def decode_and_model(self) -> float:
        started, cpu = time.perf_counter(), time.process_time()
        done = sum(1 for result in self.recognizer.predict_files(self.sources) if result.ok)
        self.cpu_ms_per_image = (time.process_time() - cpu) / max(1, done) * 1000
        return done / (time.perf_counter() - started)

    def model_only(self) -> float:
        rounds = max(1, len(self.sources) // 32)
        started = time.perf_counter()
        for _ in range(rounds):
            self.recognizer.predict(self.batch, top_k=5)
        return rounds * 32 / (time.perf_counter() - started)


# -- the server ------------------------------------------------------------------------


class Server:
    def __init__(self, model: str, max_batch: int, max_wait_ms: float, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "imagerec", "serve", "--model", model, "--port", str(self.port),
            "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning",
        ]
        self.log = open(log, "wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"server exited with {self.process.returncode}; see {log}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        sys.exit(f"server did not become ready; see {log}")

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux), to tell its cost from the clients'."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


async def load(url: str, images: list[tuple[str, bytes]], concurrency: int, requests: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < requests and time.monotonic() < deadline:
            name, body = images[issued % len(images)]
            issued += 1
            started = time.perf_counter()
            try:
                reply = await http.post(url + "/v1/predict", content=body, headers={"content-type": "image/jpeg"})
                ok = reply.status_code == 200 and "predictions" in reply.json()["results"][0]
                kind = "ok" if ok else f"http {reply.status_code}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            if kind == "ok":
                latencies.append(time.perf_counter() - started)
            else:
                errors[kind] = errors.get(kind, 0) + 1

    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    values = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "images_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def median_run(runs: list[dict]) -> dict:
    keys = ("images_per_s", "p50_ms", "p95_ms", "p99_ms")
    cell = {key: round(statistics.median(run[key] for run in runs), 1) for key in keys}
    cell["ok"] = sum(run["ok"] for run in runs)
    cell["errors"] = sum(run["errors"] for run in runs)
    kinds: dict[str, int] = {}
    for run in runs:
        for kind, count in run["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    cell["error_kinds"] = kinds
    return cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=600, help="requests per run (at most)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per run (at most)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch for the micro-batching runs")
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "serve_load.json")
    args = parser.parse_args()

    if (SHARED / "models").is_dir():
        os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))
    images = photos(args.photos)
    print(f"{len(images)} photos from {args.photos}; model {args.model}; {os.cpu_count()} CPUs (shared)")
    local = InProcess(args.model, images, min(args.requests, 256))
    baselines: list[float] = []
    model_only = [local.model_only() for _ in range(args.repeats)]

    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, max_batch in (("micro-batching", args.max_batch), ("no batching", 1)):
        server = Server(args.model, max_batch, args.max_wait_ms, args.output.with_suffix(f".{max_batch}.log"))
        try:
            asyncio.run(load(server.url, images, 4, 16, 30))  # warm up
            for concurrency in args.concurrency:
                # The CPU is shared with other work whose load changes: the
                # in-process baseline is measured right next to each run.
                runs, near, near_cpu, server_cpu = [], [], [], []
                for _ in range(args.repeats):
                    near.append(local.decode_and_model())
                    near_cpu.append(local.cpu_ms_per_image)
                    before = server.cpu_seconds()
                    run = asyncio.run(load(server.url, images, concurrency, args.requests, args.seconds))
                    after = server.cpu_seconds()
                    if before is not None and after is not None and run["ok"]:
                        server_cpu.append((after - before) / run["ok"] * 1000)
                    runs.append(run)
                baselines.extend(near)
                cell = median_run(runs)
                # CPU per image is steadier than throughput on a shared machine:
                # the server's cost next to the same work done in-process.
                cell["server_cpu_ms_per_image"] = round(statistics.median(server_cpu), 2) if server_cpu else None
                cell["in_process_cpu_ms_per_image"] = round(statistics.median(near_cpu), 2)
                cell.update(mode=label, max_batch=max_batch, concurrency=concurrency)
                cell["in_process_images_per_s"] = round(statistics.median(near), 1)
                cell["vs_in_process"] = round(
                    statistics.median(run["images_per_s"] / base for run, base in zip(runs, near)), 3
                )
                rows.append(cell)
                print(f"  {label:15s} C={concurrency:<3d} {cell['images_per_s']:7.1f} images/s  "
                      f"p50 {cell['p50_ms']:7.1f} ms  p95 {cell['p95_ms']:7.1f}  p99 {cell['p99_ms']:7.1f}  "
                      f"errors {cell['errors']}  (in-process {cell['in_process_images_per_s']}: "
                      f"{cell['vs_in_process']:.0%})", flush=True)
        finally:
            server.stop()

    print()
    header = (f"{'mode':15s} {'C':>3s} {'images/s':>9s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} "
              f"{'errors':>6s} {'in-process':>10s} {'ratio':>6s} {'CPU ms/img server':>17s} {'in-process':>10s}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['mode']:15s} {row['concurrency']:3d} {row['images_per_s']:9.1f} {row['p50_ms']:8.1f} "
              f"{row['p95_ms']:8.1f} {row['p99_ms']:8.1f} {row['errors']:6d} {row['in_process_images_per_s']:10.1f} "
              f"{row['vs_in_process']:6.0%} {row['server_cpu_ms_per_image'] or float('nan'):17.2f} "
              f"{row['in_process_cpu_ms_per_image']:10.2f}")
    baseline = {
        "decode_and_model_images_per_s": round(statistics.median(baselines), 1),
        "model_only_images_per_s": round(statistics.median(model_only), 1),
    }
    print(f"in-process, same photos (median over the run): {baseline['decode_and_model_images_per_s']} images/s "
          f"decode + model; {baseline['model_only_images_per_s']} images/s model only on decoded batches of 32")
    result = {
        "benchmark": "serve_load",
        "model": args.model,
        "photos": [name for name, _ in images],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "CPU shared with other work"},
        "in_process": baseline,
        "rows": rows,
    }
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
