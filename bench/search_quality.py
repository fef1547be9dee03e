"""Benchmark search quality and multi-term latency: how `imagerec search` answers what people ask.

Part 1 (quality): a labelled library — N CIFAR-10 training images per class
(32×32, drawn with a fixed seed from ../shared/data/cifar10-train.tar.gz) and
the shared photos whose class is known — indexed with MobileNet V2. Each
class is searched by the word a person would type ("car" for automobile) at
several minimum scores; for each: precision@10, precision and recall of all
hits, per class and averaged. This is what the default ``--min-score`` is
chosen from (docs/library.md).

Part 2 (latency): a catalog of generated rows (bench/index_library.py's
generator) given dates and times, cameras, colours and, for a third of them,
a GPS position in one of five cities; warm median latency of one-term and
multi-term queries ("dog 2019", "red dog", "dog on a beach", "blue june 2019",
"sunset iphone", "afternoon night" …); each photo's parts of the day are
computed once per catalog, as an index run does (about 17 s at 1M rows).
``--baseline FILE`` times an earlier
``library/combined.py`` (``git show REV:src/imagerec/library/combined.py``)
in the same run, alternating with the current one, so both medians see the
same load on a shared machine.

    python bench/search_quality.py                         # 100 per class, thresholds 0.05..0.6, 1M rows
    python bench/search_quality.py --per-class 30 --rows 0 # quality only, quick
    python bench/search_quality.py --per-class 0 --rows 1000000 --work /tmp/sq   # keeps the 1M catalog
    git show ddfd433:src/imagerec/library/combined.py > /tmp/combined_old.py
    python bench/search_quality.py --per-class 0 --work /tmp/sq --baseline /tmp/combined_old.py

The machine is shared: the output says the load average. Results go to
bench/results/search_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))
sys.path.insert(0, str(ROOT / "bench"))

from imagerec.library import Catalog, index_library, search  # noqa: E402
from imagerec.library.daytime_index import fill_daytimes  # noqa: E402

# The word a person types for each CIFAR-10 class.
QUERIES = {"airplane": "airplane", "automobile": "car", "bird": "bird", "cat": "cat", "deer": "deer",
           "dog": "dog", "frog": "frog", "horse": "horse", "ship": "ship", "truck": "truck"}
# Shared photos whose class is one of those (few-shot/ holds a cat and a dog).
SHARED_PHOTOS = {"cat_720p.jpg": "cat", "cat_1080p.jpg": "cat", "parrot.jpg": "bird", "owl.jpg": "bird",
                 "bird.bmp": "bird", "few-shot/dog_train_0.bmp": "dog", "few-shot/cat_train_0.bmp": "cat"}
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def make_library(root: Path, per_class: int, seed: int = 0) -> dict[str, str]:
    """Write the labelled library; path -> true class."""
    rng = np.random.default_rng(seed)
    truth: dict[str, str] = {}
    with tarfile.open(SHARED / "data" / "cifar10-train.tar.gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        by_class: dict[str, list[tarfile.TarInfo]] = {}
        for member in members:
            by_class.setdefault(member.name.split("/")[-2], []).append(member)
        for name, items in sorted(by_class.items()):
            chosen = rng.choice(len(items), size=min(per_class, len(items)), replace=False)
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in sorted(chosen):
                target = root / name / Path(items[i].name).name
                target.write_bytes(archive.extractfile(items[i]).read())
                truth[f"{name}/{target.name}"] = name
    for name, cls in SHARED_PHOTOS.items():
        source = SHARED / "photos" / name
        if source.is_file():
            target = root / "shared" / Path(name).name
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(source, target)
            truth[f"shared/{target.name}"] = cls
    return truth


def quality(work: Path, per_class: int) -> dict:
    root = work / "labelled"
    truth = make_library(root, per_class)
    started = time.perf_counter()
    index_library(root)
    print(f"indexed {len(truth)} labelled photos in {time.perf_counter() - started:.0f} s", flush=True)
    catalog = root / ".imagerec" / "catalog.db"
    rows = []
    for threshold in THRESHOLDS:
        for cls, word in QUERIES.items():
            relevant = {path for path, c in truth.items() if c == cls}
            hits = [hit.path for hit in search(word, catalog=catalog, min_score=threshold, limit=10_000)]
            good = [path for path in hits if path in relevant]
            rows.append({
                "threshold": threshold, "class": cls, "query": word, "hits": len(hits),
                "precision_at_10": round(sum(p in relevant for p in hits[:10]) / min(10, len(hits)), 3) if hits else None,
                "precision": round(len(good) / len(hits), 3) if hits else None,
                "recall": round(len(good) / len(relevant), 3),
            })
    return {"photos": len(truth), "per_class": per_class, "rows": rows, "summary": summarise(rows)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for threshold in THRESHOLDS:
        chosen = [r for r in rows if r["threshold"] == threshold]
        answered = [r for r in chosen if r["precision"] is not None]
        out.append({
            "threshold": threshold,
            "mean_precision_at_10": round(statistics.mean(r["precision_at_10"] or 0 for r in chosen), 3),
            "mean_precision": round(statistics.mean(r["precision"] for r in answered), 3) if answered else None,
            "mean_recall": round(statistics.mean(r["recall"] for r in chosen), 3),
            "hits": sum(r["hits"] for r in chosen),
        })
    return out


# Where a third of the generated photos were taken.
CITIES = ((48.8566, 2.3522), (40.7128, -74.006), (-33.8688, 151.2093), (35.6762, 139.6503), (64.1466, -21.9426))
QUERIES_TIMED = ("dog", "parrot", "dog 2019", "red dog", "red 2019", "parrot iphone", "dog canon 2015..2017",
                 "blue june 2019", "red bird", "dog on a beach", "cat 2019", "sunset iphone", "sunset", "dog in june",
                 # Times of day that few or no photos match (every generated photo has a time, spread evenly over
                 # the day): a thing at night or sunrise, late afternoons after dusk (Reykjavik in winter), and a time of
                 # day no photo was taken at (evening sunrises, and sunrise at sunset, do not happen at these places).
                 "night parrot", "sunrise parrot", "night", "afternoon night", "evening sunrise", "sunrise sunset")


# A multiplicative hash of the id: times and positions independent of the dates (which follow id % 2100).
_MIX = "((id * 2654435761) / 4096)"


def add_times(path: Path) -> None:
    """A time of day, a camera and, for a third of the photos, a GPS position in one of CITIES (hashed from the id), once per catalog."""
    with Catalog(path) as cat:
        if cat.meta("bench_times") == "3":
            return
        cat.db.execute("PRAGMA synchronous = OFF")
        with cat.transaction():
            cat.db.execute(f"UPDATE contents SET taken_at = substr(taken_at, 1, 11) || printf('%02d:%02d:00',"
                           f" {_MIX} % 24, ({_MIX} / 24) % 60), latitude = NULL, longitude = NULL, daytime = NULL WHERE taken_at IS NOT NULL")
            # add_facts's camera follows id % 6, so the month (id % 12) fixed it: an iPhone only ever took
            # photos in January, February, July and August. Hashed, each camera shoots all year round.
            cat.db.execute(f"UPDATE contents SET camera = CASE ({_MIX} / 21600) % 6 WHEN 0 THEN 'Apple iPhone 8'"
                           " WHEN 1 THEN 'Apple iPhone 12' WHEN 2 THEN 'Canon EOS 5D' WHEN 3 THEN 'NIKON D750'"
                           " WHEN 4 THEN 'Google Pixel 6' ELSE NULL END WHERE facts IS NOT NULL")
            for number, (latitude, longitude) in enumerate(CITIES):
                cat.db.execute(f"UPDATE contents SET latitude = ?, longitude = ? WHERE ({_MIX} / 1440) % 15 = ?",
                               (latitude, longitude, number))
            cat.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('bench_times', '3')")
            cat.mark_changed()
        cat.db.execute("ANALYZE")


def add_facts(path: Path, seed: int = 0) -> None:
    """Dates (2000-2024), cameras (6 models) and one or two colours for every generated row."""
    with Catalog(path) as cat:
        db = cat.db
        db.execute("PRAGMA synchronous = OFF")
        with cat.transaction():
            db.execute(
                "UPDATE contents SET taken_at = printf('%04d:%02d:%02d 12:00:00', 2000 + id % 25, 1 + id % 12, 1 + id % 28),"
                " camera = CASE id % 6 WHEN 0 THEN 'Apple iPhone 8' WHEN 1 THEN 'Apple iPhone 12' WHEN 2 THEN 'Canon EOS 5D'"
                " WHEN 3 THEN 'NIKON D750' WHEN 4 THEN 'Google Pixel 6' ELSE NULL END, facts = 1"
            )
            colours = ["black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"]
            for number, colour in enumerate(colours):
                db.execute(
                    "INSERT INTO colours (content_id, colour, share) SELECT id, ?, 0.1 + (id % 7) / 10.0 FROM contents"
                    " WHERE id % 11 = ? OR (id / 11) % 11 = ?",
                    (colour, number, number),
                )
            db.execute("INSERT OR IGNORE INTO terms (kind, value) SELECT DISTINCT 'camera', camera FROM contents WHERE camera IS NOT NULL")
            cat.mark_changed()
        db.execute("ANALYZE")


def _load_baseline(file: Path):
    """An earlier combined.py, imported as a sibling of the current one (its relative imports resolve)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("imagerec.library._combined_baseline", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(query: str, cat, repeats: int, combined) -> tuple[list[tuple[float, float]], int]:
    """Warm (wall, CPU) milliseconds of ``search(query)`` with ``combined``'s combined_search swapped in.

    The CPU time of the process is far less disturbed than the wall time by others' load on a shared machine."""
    search_module = sys.modules["imagerec.library.search"]  # the package's `search` is the function
    current = search_module.combined_search
    search_module.combined_search = combined.combined_search
    try:
        search(query, catalog=cat)  # warm
        times = []
        for _ in range(repeats):
            t, cpu = time.perf_counter(), time.process_time()
            found = search(query, catalog=cat)
            times.append(((time.perf_counter() - t) * 1000, (time.process_time() - cpu) * 1000))
    finally:
        search_module.combined_search = current
    return times, len(found)


def _medians(times: list[tuple[float, float]]) -> dict:
    return {"ms_median": round(statistics.median(t[0] for t in times), 2),
            "cpu_ms_median": round(statistics.median(t[1] for t in times), 2)}


def latency(work: Path, rows: int, repeats: int, baseline: Path | None = None) -> dict:
    combined = sys.modules["imagerec.library.combined"]
    from index_library import generate_catalog

    path = work / f"rows_{rows}" / "catalog.db"
    if not path.is_file():  # --work DIR keeps a generated catalog for the next run
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        generate_catalog(path, rows, SHARED / "photos" / "parrot.jpg")
        add_facts(path)
        print(f"{rows:,} rows with facts generated in {time.perf_counter() - started:.0f} s", flush=True)
    add_times(path)
    with Catalog(path) as cat:  # the parts of the day, as an index run computes them (once per catalog)
        started = time.perf_counter()
        filled = fill_daytimes(cat)
        if filled:
            cat.db.execute("ANALYZE")
            print(f"parts of the day of {filled:,} rows computed in {time.perf_counter() - started:.0f} s", flush=True)
    old = _load_baseline(baseline) if baseline else None
    out = {"rows": rows}
    with Catalog(path, readonly=True) as cat:
        for query in QUERIES_TIMED:
            now, then, hits, hits_then = [], [], 0, None
            for _ in range(3):  # alternate, so both see the same load
                times, hits = _timed(query, cat, max(1, repeats // 3), combined)
                now += times
                if old is not None:
                    try:
                        times, hits_then = _timed(query, cat, max(1, repeats // 3), old)
                        then += times
                    except (ValueError, KeyError):  # a query form the baseline does not know
                        hits_then = None
            out[query] = _medians(now) | {"hits": hits}
            shown = f"  {query!r}: {out[query]['ms_median']} ms, CPU {out[query]['cpu_ms_median']} ms ({hits} hits)"
            if then:
                out[query]["baseline"] = _medians(then) | {"hits": hits_then}
                shown += (f"; baseline {out[query]['baseline']['ms_median']} ms, CPU {out[query]['baseline']['cpu_ms_median']}"
                          f" ms ({hits_then} hits)")
            print(shown, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100, help="CIFAR-10 images per class (0: skip part 1)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="generated catalog rows for part 2 (0: skip)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--work", type=Path, help="keep generated data here and reuse it (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search_quality.json")
    parser.add_argument("--baseline", type=Path, help="an earlier library/combined.py to time in the same run")
    args = parser.parse_args()
    results: dict = {"cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="imagerec-search-quality-") as tmp:
        work = args.work or Path(tmp)
        if args.per_class:
            results["quality"] = quality(work, args.per_class)
            print_quality(results["quality"])
        if args.rows:
            results["latency"] = latency(work, args.rows, args.repeats, args.baseline)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


def print_quality(result: dict) -> None:
    print(f"\n{result['photos']} labelled photos ({result['per_class']} CIFAR-10 per class + shared photos)")
    print("| min score | mean precision@10 | mean precision | mean recall | hits |")
    print("|---|---|---|---|---|")
    for s in result["summary"]:
        print(f"| {s['threshold']} | {s['mean_precision_at_10']} | {s['mean_precision']} | {s['mean_recall']} | {s['hits']} |")
    print("\nper class:")
    for row in result["rows"]:
        print(f"  {row['threshold']:>4} {row['query']:>9}: P@10 {row['precision_at_10']}, P {row['precision']}, "
              f"R {row['recall']}, {row['hits']} hits")


if __name__ == "__main__":
    main()
