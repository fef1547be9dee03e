"""Benchmark the photo library: indexing speed, incremental re-index, search latency.

Part 1 (index): a generated library of photo-like 4000×3000 JPEGs (upscales
of the shared photos with sensor-like noise, several crops of each, every file
with distinct bytes, plus exact duplicates under other names):

- photos/s of the first index;
- a re-index with nothing changed (target: ≥ 50× faster than the first);
- a re-index after moving 10 % of the files to another folder.

Part 2 (search): catalogs of N generated rows written directly (files,
contents, top-5 predictions, 1280-d float16 embeddings, one real photo among
them), at N = 2,000 and 1,000,000: latency of a label search ("dog": 118
labels through the WordNet hierarchy; "parrot": one label) and of a
similar-photo query (the real photo), warm, median of repeated runs; plus the
one-off cost of building / loading the approximate index.

    python bench/index_library.py                    # full size (2,000 photos, 2k and 1M rows)
    python bench/index_library.py --photos 400 --rows 2000 1000000
    python bench/index_library.py --photos 200 --rows 0 --memory --output /tmp/index.json   # first pass + peak RSS

``--memory`` also indexes 200 and 2,000 photos (predict_throughput's photos again
under other names, each with other trailing bytes, so each is decoded) in fresh
processes and reports their peak RSS, which must not grow with the library.

The machine is shared; the table says how many cores the run had and what
the load was. Results go to bench/results/index_library.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))

from imagerec.library import Catalog, index_library, search, similar  # noqa: E402
from imagerec.library.search import vector_index  # noqa: E402

BASES = ["cat_720p.jpg", "cat_1080p.jpg", "parrot.jpg", "pets.jpg", "hot_dog.jpg", "owl.jpg",
         "kite_and_cold.jpg", "face.jpg", "grace_hopper.bmp", "bird.bmp", "dragonfly.bmp", "sunflower.bmp"]


def render_variants(out: Path, variants: int, seed: int = 0) -> list[bytes]:
    """Full-size JPEG bytes: each shared photo upscaled to 4000×3000 in ``variants`` crops, with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rendered = []
    for name in BASES:
        image = Image.open(SHARED / "photos" / name).convert("RGB")
        for v in range(variants):
            w, h = image.size
            # A different 4:3 crop per variant, so the pictures differ, not only the bytes.
            crop_w = min(w, int(h * 4 / 3)) * (1 - 0.06 * v / max(1, variants - 1))
            crop_h = crop_w * 3 / 4
            left = (w - crop_w) * rng.uniform(0, 1)
            top = (h - crop_h) * rng.uniform(0, 1)
            big = image.resize((4000, 3000), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
            pixels = np.asarray(big, np.int16) + rng.normal(0, 6, (3000, 4000, 1)).astype(np.int16)
            big = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            path = out / f"base_{len(rendered):03d}.jpg"
            big.save(path, "JPEG", quality=90)
            rendered.append(path.read_bytes())
    return rendered


def make_library(root: Path, photos: int, variants: int) -> dict:
    started = time.perf_counter()
    scratch = root.parent / "renders"
    scratch.mkdir(parents=True, exist_ok=True)
    rendered = render_variants(scratch, variants)
    duplicates = photos // 20  # 5 % exact copies under other names
    for i in range(photos - duplicates):
        folder = root / f"{2015 + i % 10}" / f"{1 + (i // 10) % 12:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        # Bytes after the JPEG end marker make every file distinct without changing its pixels.
        (folder / f"IMG_{i:05d}.jpg").write_bytes(rendered[i % len(rendered)] + f"bench-{i}".encode())
    files = sorted(root.rglob("*.jpg"))
    for i in range(duplicates):
        shutil.copy2(files[i * 7 % len(files)], root / files[i * 7 % len(files)].parent / f"copy of {i}.jpg")
    shutil.rmtree(scratch)
    total = sum(p.stat().st_size for p in root.rglob("*.jpg"))
    return {"photos": photos, "distinct_renders": len(rendered), "exact_duplicates": duplicates,
            "bytes": total, "generate_seconds": round(time.perf_counter() - started, 1)}


def bench_index(work: Path, photos: int, variants: int, repeats: int) -> dict:
    root = work / "library"
    info = make_library(root, photos, variants)
    print(f"library: {photos} photos, {info['bytes'] / 1e9:.2f} GB, generated in {info['generate_seconds']} s", flush=True)
    catalog = work / "catalog.db"
    cpu = time.process_time()
    first = index_library(root, catalog=catalog)
    first_cpu = time.process_time() - cpu
    print(f"first index: {first.seconds:.1f} s ({first.decoded / first.seconds:.1f} photos/s, "
          f"{first_cpu / first.decoded * 1000:.1f} CPU ms a photo)", flush=True)
    again = []
    for _ in range(repeats):
        summary = index_library(root, catalog=catalog)
        assert summary.unchanged == photos and summary.decoded == 0
        again.append(summary.seconds)
    moves = []
    files = sorted(p for p in root.rglob("*.jpg"))
    chosen = files[:: 10][: photos // 10]
    for r in range(max(1, repeats // 2)):
        target = root / f"moved {r}"
        target.mkdir()
        for path in chosen:
            os.rename(path, target / path.name.replace(".jpg", f" ({path.parent.name}).jpg"))
        summary = index_library(root, catalog=catalog)
        assert summary.moved == len(chosen) and summary.decoded == 0, summary
        moves.append(summary.seconds)
        chosen = sorted(target.iterdir())
    no_change = statistics.median(again)
    return {
        **info,
        "first_index_seconds": round(first.seconds, 2),
        "first_index_photos_per_second": round(first.decoded / first.seconds, 2),
        # Steadier than photos/s on a shared machine; cores × 1000 / it is the rate if no core idles.
        "first_index_cpu_ms_per_photo": round(first_cpu / first.decoded * 1000, 2),
        "decoded": first.decoded,
        "reindex_unchanged_seconds_median": round(no_change, 4),
        "reindex_unchanged_runs": [round(s, 4) for s in again],
        "reindex_speedup": round(first.seconds / no_change, 1),
        "moved_files": len(chosen),
        "reindex_after_move_seconds_median": round(statistics.median(moves), 3),
        "reindex_after_move_runs": [round(s, 3) for s in moves],
    }


def rss_child(root: Path, catalog: Path) -> None:
    """Run in a fresh process: index ``root``; print photos, seconds and peak RSS as JSON."""
    import resource

    cpu = time.process_time()
    summary = index_library(root, catalog=catalog)
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"photos": summary.decoded, "seconds": round(summary.seconds, 2),
                      "photos_per_second": round(summary.decoded / summary.seconds, 2),
                      "cpu_ms_per_photo": round(cpu / summary.decoded * 1000, 2), "peak_rss_mb": round(peak, 1)}))


def bench_memory(work: Path, sizes: tuple[int, ...] = (200, 2000)) -> list[dict]:
    """Peak RSS of a fresh process indexing ``size`` photos: predict_throughput's 200 photos again under other
    names, each with other bytes after its end marker (so each is a new content, decoded and recognised)."""
    import subprocess

    sys.path.insert(0, str(Path(__file__).parent))
    from predict_throughput import make_photos

    sources = [p.read_bytes() for p in make_photos(Path(tempfile.gettempdir()) / "imagerec-bench-photos", 200)]
    results = []
    for size in sizes:
        root = work / f"rss_{size}"
        root.mkdir(parents=True, exist_ok=True)
        for i in range(size):
            (root / f"IMG_{i:05d}.jpg").write_bytes(sources[i % len(sources)] + f"copy-{i}".encode())
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(root), str(work / f"rss_{size}.db")],
                             check=True, capture_output=True, text=True).stdout
        results.append({"library": size, **json.loads(out.strip().splitlines()[-1])})
        shutil.rmtree(root)
        print(f"peak RSS indexing {size} photos: {results[-1]['peak_rss_mb']:.0f} MB "
              f"({results[-1]['photos_per_second']} photos/s)", flush=True)
    return results


def scenes(seed: int = 0, dim: int = 1280) -> tuple[np.ndarray, np.ndarray]:
    """2,000 "scenes": embedding centres, and each scene's favourite label."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2000, dim)).astype(np.float32), rng.integers(1, 1001, 2000)


def insert_rows(cat: Catalog, model_id: int, first: int, n: int, rng: np.random.Generator) -> None:
    """``n`` generated photos with ids from ``first``, in one transaction."""
    centers, label_pool = scenes()
    scene = rng.integers(0, len(centers), n)
    vectors = centers[scene] + 0.8 * rng.standard_normal((n, centers.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors.astype(np.float16)
    ids = range(first, first + n)
    top = -np.sort(-rng.dirichlet(np.full(5, 0.5), n), axis=1)
    labels = np.stack([label_pool[scene], *(rng.integers(1, 1001, n) for _ in range(4))], axis=1)
    db = cat.db
    with cat.transaction():
        db.executemany(
            "INSERT INTO contents (id, sha256, width, height) VALUES (?, ?, 4000, 3000)", ((i, f"{i:064x}") for i in ids)
        )
        db.executemany(
            "INSERT INTO files (id, path, size, mtime_ns, content_id, status, indexed_at)"
            " VALUES (?, ?, 4000000, 0, ?, 'ok', 'x')",
            ((i, f"{2000 + i % 20}/{i % 12 + 1:02d}/IMG_{i:07d}.jpg", i) for i in ids),
        )
        db.executemany(
            "INSERT OR IGNORE INTO predictions (content_id, model_id, label, score) VALUES (?, ?, ?, ?)",
            ((i, model_id, int(labels[r, c]), float(top[r, c])) for r, i in enumerate(ids) for c in range(5)),
        )
        db.executemany(
            "INSERT INTO embeddings (content_id, model_id, vector) VALUES (?, ?, ?)",
            ((i, model_id, vectors[r].tobytes()) for r, i in enumerate(ids)),
        )
        db.executemany("INSERT INTO analyses (content_id, model_id) VALUES (?, ?)", ((i, model_id) for i in ids))
        cat.mark_changed()


def generate_catalog(path: Path, rows: int, real_photo: Path, seed: int = 0) -> None:
    """A catalog of ``rows`` photos written directly, plus ``real_photo`` with its true embedding."""
    import imagerec

    rng = np.random.default_rng(seed + 1)
    recognizer = imagerec.load("mobilenet_v2")
    root = path.parent / "root"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(real_photo, root / real_photo.name)
    with Catalog(path, root=root) as cat:
        model_id = cat.register_model(recognizer, top_k=5, source="mobilenet_v2")
        db = cat.db
        db.execute("PRAGMA synchronous = OFF")
        db.execute("DROP INDEX predictions_by_label")  # built once at the end: much faster
        for start in range(0, rows, 20000):
            insert_rows(cat, model_id, start + 1, min(20000, rows - start), rng)
        with cat.transaction():
            db.execute("CREATE INDEX predictions_by_label ON predictions (model_id, label, score DESC)")
        # The real photo, analysed for real.
        data = (root / real_photo.name).read_bytes()
        probabilities = recognizer.predict_proba(str(root / real_photo.name))[0]
        embedding = recognizer.embed(str(root / real_photo.name))[0]
        order = np.argsort(-probabilities)[:5]
        stat = (root / real_photo.name).stat()
        with cat.transaction():
            content = cat.put_content(hashlib.sha256(data).hexdigest(), None, None, None, None)
            cat.put_analysis(content, model_id, [(int(i), float(probabilities[i])) for i in order], embedding)
            cat.put_file(real_photo.name, stat.st_size, stat.st_mtime_ns, content, "ok", None)
        db.execute("ANALYZE")


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs), runs


def bench_search(work: Path, rows: int, repeats: int) -> dict:
    path = work / f"rows_{rows}" / "catalog.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate_catalog(path, rows, SHARED / "photos" / "parrot.jpg")
    generated = time.perf_counter() - started
    print(f"{rows:,} rows generated in {generated:.0f} s ({path.stat().st_size / 1e9:.2f} GB)", flush=True)
    photo = path.parent / "root" / "parrot.jpg"
    with Catalog(path, readonly=True) as cat:
        row = cat.model()
        started = time.perf_counter()
        index = vector_index(cat, row)
        built = time.perf_counter() - started
        kind = index.kind
    # A fresh process would find the saved index: time loading it (approximate only).
    loaded = None
    if kind == "approximate":
        import importlib

        importlib.import_module("imagerec.library.search")._INDEX_CACHE.clear()
        with Catalog(path, readonly=True) as cat:
            started = time.perf_counter()
            vector_index(cat, cat.model())
            loaded = time.perf_counter() - started
    with Catalog(path, readonly=True) as cat:
        dog_hits = search("dog", catalog=cat)
        dog, dog_runs = timed(lambda: search("dog", catalog=cat), repeats)
        parrot, parrot_runs = timed(lambda: search("parrot", catalog=cat), repeats)
        like = similar(photo, catalog=cat, limit=20)
        sim, sim_runs = timed(lambda: similar(photo, catalog=cat, limit=20), repeats)
    # Agreement with exact search, for 20 of the generated photos as queries.
    with Catalog(path, readonly=True) as cat:
        ids, vectors = cat.embeddings(cat.model().id)
        index = vector_index(cat, cat.model())
    picks = np.random.default_rng(1).choice(len(ids), 20, replace=False)
    queries = np.asarray(vectors[picks], np.float32)
    exact = np.concatenate(
        [queries @ np.asarray(vectors[i : i + 65536], np.float32).T for i in range(0, len(ids), 65536)], axis=1
    )
    recalls = []
    for q, scores in zip(queries, exact):
        truth = set(ids[np.argsort(-scores)[:21]].tolist())
        found = set(index.search(q, 21)[0].tolist())
        recalls.append(len(truth & found) / 21)
    del vectors, exact
    # 1,000 new photos arrive (an index run): the first similar query afterwards
    # brings the vector index up to date (adds them; no rebuild).
    with Catalog(path) as cat:
        insert_rows(cat, cat.model().id, rows + 10, 1000, np.random.default_rng(99))
    with Catalog(path, readonly=True) as cat:
        started = time.perf_counter()
        similar(photo, catalog=cat, limit=20)
        after_adding = time.perf_counter() - started
        again, _ = timed(lambda: similar(photo, catalog=cat, limit=20), repeats)
    return {
        "rows": rows,
        "generate_seconds": round(generated, 1),
        "catalog_bytes": path.stat().st_size,
        "vector_index": kind,
        "vector_index_build_seconds": round(built, 2),
        "vector_index_load_seconds": None if loaded is None else round(loaded, 3),
        "search_dog_ms_median": round(dog, 2),
        "search_dog_hits": len(dog_hits),
        "search_dog_runs_ms": [round(x, 2) for x in dog_runs],
        "search_parrot_ms_median": round(parrot, 2),
        "similar_ms_median": round(sim, 2),
        "similar_runs_ms": [round(x, 2) for x in sim_runs],
        "similar_photos_found": len(like),
        "similar_first_after_1000_new_photos_seconds": round(after_adding, 3),
        "similar_ms_median_after_adding": round(again, 2),
        "vector_index_recall_at_20": round(float(np.mean(recalls)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=2000, help="photos in the generated library (0: skip part 1)")
    parser.add_argument("--variants", type=int, default=8, help="distinct 4000×3000 renders per shared photo")
    parser.add_argument("--rows", type=int, nargs="*", default=[2000, 1_000_000], help="catalog sizes for part 2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "index_library.json")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the peak RSS of indexing 200 and 2,000 photos (fresh processes)")
    parser.add_argument("--rss-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(*args.rss_child)
    work = Path(args.work or tempfile.mkdtemp(prefix="imagerec-bench-"))
    results = {
        "machine": {"cores": len(os.sched_getaffinity(0)), "load_average_at_start": os.getloadavg()},
        "note": "shared 2-core machine: other jobs ran at the same time",
    }
    try:
        if args.photos:
            results["index"] = bench_index(work / "index", args.photos, args.variants, args.repeats)
        if args.memory:
            results["memory"] = bench_memory(work / "memory")
        results["search"] = [bench_search(work / "search", rows, args.repeats) for rows in args.rows if rows > 0]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print_table(results)
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def print_table(results: dict) -> None:
    print()
    if "index" in results:
        r = results["index"]
        print(f"| index ({r['photos']} photos 4000×3000, {r['bytes'] / 1e9:.1f} GB) | value |")
        print("|---|---|")
        print(f"| first index | {r['first_index_seconds']} s = {r['first_index_photos_per_second']} photos/s "
              f"({r['first_index_cpu_ms_per_photo']} CPU ms a photo) |")
        print(f"| re-index, nothing changed (median) | {r['reindex_unchanged_seconds_median']} s = {r['reindex_speedup']}× faster |")
        print(f"| re-index after moving {r['moved_files']} files (median) | {r['reindex_after_move_seconds_median']} s |")
        print()
    for m in results.get("memory", []):
        print(f"peak RSS indexing {m['library']} photos: {m['peak_rss_mb']:.0f} MB ({m['photos_per_second']} photos/s, "
              f"{m['cpu_ms_per_photo']} CPU ms a photo)")
    print()
    print("| rows | label search 'dog' | label search 'parrot' | similar | vector index | build / load | recall@20 |")
    print("|---|---|---|---|---|---|---|")
    for r in results.get("search", []):
        load = "" if r["vector_index_load_seconds"] is None else f" / {r['vector_index_load_seconds']} s"
        print(
            f"| {r['rows']:,} | {r['search_dog_ms_median']} ms | {r['search_parrot_ms_median']} ms | "
            f"{r['similar_ms_median']} ms | {r['vector_index']} | {r['vector_index_build_seconds']} s{load} | "
            f"{r['vector_index_recall_at_20']} |"
        )
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    sys.exit(main())
