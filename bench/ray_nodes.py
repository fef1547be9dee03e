"""Benchmark `imagerec index --ray` on 1, 2 and 3 Ray nodes of this machine.

Each node is its own raylet with one CPU (Ray's multi-node test cluster,
``ray.cluster_utils.Cluster``: the head, then worker nodes), so N nodes run N
analysing actors. All of them share this machine's cores, so the table shows
Ray's overhead, not a cluster's speed-up: on a 2-core machine a third node
only adds processes competing for the same two cores.

Every run indexes the same generated photos (photo-like JPEGs made from the
shared photos, each with distinct bytes) into a fresh catalog and is timed
from the call of ``index_library`` to its return, as a user's
``imagerec index --ray ADDRESS`` would be: connecting the driver, starting
the actors, loading the model in each, the work, the catalog writes. Each
run indexes the library and its first half: the difference between the two
gives the marginal rate (photos/s once running) and the fixed cost of a run
(start-up: connecting, actors, models), which would otherwise blur together.
A local run (no Ray, the threaded pipeline on both cores) of the same photos
is the baseline. Medians of ``--runs`` runs.

    python bench/ray_nodes.py                          # 128 photos (and their first half), 3 runs, 1, 2, 3 nodes
    python bench/ray_nodes.py --photos 48 --runs 3 --nodes 1 2

Results go to bench/results/ray_nodes.json.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))
os.environ.setdefault("IMAGEREC_OFFLINE", "1")

from imagerec.library import index_library

BASES = ["cat_720p.jpg", "cat_1080p.jpg", "parrot.jpg", "pets.jpg", "hot_dog.jpg", "owl.jpg",
         "kite_and_cold.jpg", "face.jpg", "grace_hopper.bmp", "bird.bmp", "dragonfly.bmp", "sunflower.bmp"]


def make_photos(out: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    """``count`` photo-like JPEGs of ``size``: the shared photos resized, with a little noise, distinct bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.open(SHARED / "photos" / BASES[i % len(BASES)]).convert("RGB").resize(size)
        pixels = np.asarray(image, np.int16) + rng.integers(-6, 7, (size[1], size[0], 3), dtype=np.int16)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        (out / f"photo_{i:04d}.jpg").write_bytes(buffer.getvalue())


def timed_index(root: Path, work: Path, ray: str | None) -> float:
    """Seconds to index ``root`` into a fresh catalog."""
    catalog = Path(tempfile.mkdtemp(dir=work)) / "catalog.db"
    started = time.perf_counter()
    summary = index_library(root, catalog=catalog, ray=ray, batch_size=8)
    seconds = time.perf_counter() - started
    if summary.new != summary.seen or summary.failed:
        raise SystemExit(f"the run lost photos: {summary.to_dict()}")
    return seconds


def timed_runs(name: str, roots: tuple[Path, Path], work: Path, runs: int, ray: str | None) -> dict:
    """Median seconds for the half library and the whole one, the marginal rate and the fixed cost."""
    half, whole = [], []
    for run in range(runs):
        half.append(timed_index(roots[0], work, ray))
        whole.append(timed_index(roots[1], work, ray))
        print(f"  {name}, run {run + 1}: {half[-1]:.1f} s for the half, {whole[-1]:.1f} s for all", flush=True)
    photos = [len(list(root.glob("*.jpg"))) for root in roots]
    t_half, t_whole = statistics.median(half), statistics.median(whole)
    marginal = (photos[1] - photos[0]) / (t_whole - t_half) if t_whole > t_half else float("nan")
    return {"half_s": half, "whole_s": whole, "median_s": t_whole, "photos_per_s": photos[1] / t_whole,
            "half_photos_per_s": photos[0] / t_half,
            "marginal_photos_per_s": marginal, "fixed_s": t_whole - photos[1] / marginal}


def on_nodes(nodes: int, roots: tuple[Path, Path], work: Path, runs: int) -> dict:
    """Runs on a fresh cluster of ``nodes`` one-CPU nodes (the head included)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        timed_index(roots[0], work, cluster.address)  # warm-up: the nodes' first workers start cold
        return timed_runs(f"{nodes} node(s)", roots, work, runs, cluster.address)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--size", type=int, nargs=2, default=(1600, 1200), metavar=("W", "H"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="imagerec-ray-nodes-") as tmp:
        work = Path(tmp)
        roots = (work / "half", work / "library")
        make_photos(roots[1], args.photos, tuple(args.size))
        roots[0].mkdir()
        for photo in sorted(roots[1].glob("*.jpg"))[: args.photos // 2]:
            os.link(photo, roots[0] / photo.name)
        print(f"{args.photos} photos of {args.size[0]}×{args.size[1]}, {os.cpu_count()} cores", flush=True)
        results = {"local": timed_runs("local", roots, work, args.runs, None)}
        for nodes in args.nodes:
            results[f"{nodes} node(s)"] = on_nodes(nodes, roots, work, args.runs)
    load_after = os.getloadavg()

    base = results["local"]["photos_per_s"]
    half = args.photos // 2
    print(f"\n| {args.size[0]}×{args.size[1]} JPEGs | photos/s, {half} photos | photos/s, {args.photos} photos | "
          f"vs local ({args.photos}) | fixed cost of a run | photos/s once running |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        steady = result["marginal_photos_per_s"]
        fixed, rate = ("—", "— (noise: the larger run was not slower)") if math.isnan(steady) else (
            f"{result['fixed_s']:.1f} s", f"{steady:.1f}")
        print(f"| {name} | {result['half_photos_per_s']:.1f} | {result['photos_per_s']:.1f} | "
              f"{result['photos_per_s'] / base:.2f}× | {fixed} | {rate} |")
    print(f"\nload average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"{os.cpu_count()} cores shared by all nodes (medians of {args.runs} runs)")
    out = ROOT / "bench" / "results" / "ray_nodes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"photos": args.photos, "size": list(args.size), "cores": os.cpu_count(),
                               "load_average": [load_before[0], load_after[0]], "results": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
