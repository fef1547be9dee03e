"""Photos per second, end to end: the course's naive loop vs imagerec's API.

Builds photo-like JPEGs (the shared photos upscaled to 4000×3000, quality 90,
a third of them stored turned with an EXIF orientation tag), then measures in
one run, each the median of ``--runs`` runs:

(a) the naive baseline, as the course does it: per file
    ``Image.open(p).convert("RGB").resize((224, 224))`` and one interpreter
    invoke, in a single process;
(b) imagerec's Python API: ``Recognizer.predict_files`` (draft-mode JPEG
    decoding on a thread per core, overlapped with batched inference; the
    photos whose best two classes come within ``refine_margin`` are decoded
    again in full), the same with the refinement of the start of issue 24
    (near-ties at "fine" detail, 1/2 scale, in full only if still tied), and
    the same with refinement off.

It prints the ratio b/a, where the time goes (decode vs inference), the
limits those rates imply and each run's share of them, how often (b)'s top-1
agrees with a full decode (imagerec's own, ``refine_margin=1``, and a plain
one that turns the picture upright before resizing), the CPU time per photo
(steadier than photos/s on a shared machine) and the peak RSS of a process
predicting 200 and 2,000 photos. Results are also written to
``bench/results/predict_throughput.json``.

Two limits, both measured in the same run with a thread per core: decode
alone and inference alone each already keep every core busy, so they cannot
run side by side at full speed and their core-seconds per photo add up. The
*first-pass* limit is ``1 / (1/decode + 1/inference)`` photos/s; the
*answer's* limit adds what the answer needs besides: the near-ties' full
decodes and second inference (``share × (1/full + 1/inference)``).

    python bench/predict_throughput.py --photos 200 --runs 3
    python bench/predict_throughput.py --photos 200 --profile   # where the core-seconds go

``--profile`` instead runs (b) once under cProfile on one decode thread and
one interpreter thread (so every core-second is seen by the profiler) and
sums the time per kind of work: JPEG decoding, resampling, inference, file
reads, and the rest (Python overhead).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))

import imagerec  # noqa: E402
from imagerec.core.pipeline import decode_ordered  # noqa: E402

# (orientation tag, transpose that stores the pixels so the tag turns them upright)
ORIENTATIONS = [
    (1, None),
    (6, Image.Transpose.ROTATE_90),
    (8, Image.Transpose.ROTATE_270),
    (3, Image.Transpose.ROTATE_180),
]


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` 4000×3000 JPEGs from the shared photos (cached between runs)."""
    sources = sorted(p for p in (SHARED / "photos").rglob("*") if p.suffix.lower() in {".jpg", ".bmp"})
    if not sources:
        sys.exit(f"no shared photos under {SHARED / 'photos'}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        source = Image.open(sources[i % len(sources)]).convert("RGB")
        variant = (i // len(sources)) % 4
        # a slightly different framing per variant, so copies are not identical
        w, h = source.size
        margin = variant * 0.03
        source = source.crop((int(w * margin), int(h * margin), int(w * (1 - margin)), int(h * (1 - margin))))
        big = source.resize((4000, 3000), Image.Resampling.BICUBIC)
        tag, transpose = ORIENTATIONS[i % 3] if i % 3 else ORIENTATIONS[0]
        exif = Image.Exif()
        if transpose is not None:
            big = big.transpose(transpose)
            exif[0x0112] = tag
        big.save(path, "JPEG", quality=90, exif=exif)
    return paths


def naive(paths: list[Path], model_path: Path) -> tuple[float, float, list[int]]:
    """The course's loop; returns (seconds, decode seconds, top-1 indices)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    top1, decode = [], 0.0
    start = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        image = Image.open(path).convert("RGB").resize((224, 224))
        decode += time.perf_counter() - t0
        interpreter.set_tensor(input_index, np.asarray(image)[None])
        interpreter.invoke()
        top1.append(int(np.argmax(interpreter.get_tensor(output_index)[0])))
    return time.perf_counter() - start, decode, top1


def imagerec_api(recognizer, paths: list[Path]) -> tuple[float, list[int]]:
    start = time.perf_counter()
    top1 = [result.predictions[0].index for result in recognizer.predict_files(paths, top_k=1)]
    return time.perf_counter() - start, top1


def index_run(recognizer, folder: Path, paths: list[Path]) -> tuple[float, float, list[int]]:
    """``imagerec index`` of the same photos into a new catalog: (seconds, CPU seconds, top-1 label per photo).

    The first pass of an index does everything predict does (draft decode,
    inference, near-ties again in full) plus the file's hash, its EXIF facts,
    colours and the catalog's writes; the top-1 is read back from the catalog.
    """
    import sqlite3

    from imagerec.library import index_library

    with tempfile.TemporaryDirectory() as scratch:
        catalog = Path(scratch) / "catalog.db"
        cpu, start = time.process_time(), time.perf_counter()
        summary = index_library(folder, catalog=catalog, models=[recognizer], workers=recognizer.workers)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if summary.failed:
            raise SystemExit(f"index: {summary.failed} of the photos failed: {summary.failures[:3]}")
        with sqlite3.connect(catalog) as db:
            best = dict(db.execute(
                "SELECT f.path, (SELECT p.label FROM predictions p WHERE p.content_id = f.content_id"
                " ORDER BY p.score DESC, p.label LIMIT 1) FROM files f"))
    return seconds, cpu, [best[path.name] for path in paths]


def margin_sweep(draft: np.ndarray, full: np.ndarray, plain: np.ndarray, margins, costs: dict[str, float]) -> list[dict]:
    """What each refine margin would give on these photos: the share decoded again, the agreement, the rate.

    ``draft``/``full``/``plain`` are probabilities from the draft decode,
    imagerec's full decode and a plain full decode. The rate is the limit
    the measured per-photo core-seconds imply (``costs``: decode, inference
    and full decode rates in photos/s), so the margins compare without a
    timed run each.
    """
    ordered = np.sort(draft, axis=1)
    margin_of = ordered[:, -1] - ordered[:, -2]
    rows = []
    for margin in margins:
        near = margin_of < margin
        top1 = np.where(near, full.argmax(axis=1), draft.argmax(axis=1))
        seconds = 1 / costs["decode"] + 1 / costs["inference"] + near.mean() * (1 / costs["full"] + 1 / costs["inference"])
        rows.append({"margin": margin, "share_refined": round(float(near.mean()), 4),
                     "agreement_imagerec_full": round(float(np.mean(top1 == full.argmax(axis=1))), 4),
                     "agreement_plain_full": round(float(np.mean(top1 == plain.argmax(axis=1))), 4),
                     "limit_photos_per_s": round(1 / seconds, 1)})
    return rows


def decode_only(recognizer, paths: list[Path]) -> float:
    start = time.perf_counter()
    for _ in decode_ordered(paths, recognizer.preprocessing, workers=recognizer.workers):
        pass
    return time.perf_counter() - start


def inference_only(recognizer, batch: np.ndarray) -> float:
    start = time.perf_counter()
    for row in range(0, len(batch), recognizer.batch_size):
        recognizer.predict_proba(batch[row : row + recognizer.batch_size])
    return time.perf_counter() - start


def fine_then_full(recognizer):
    """A copy that refines as at the start of issue 24: a near-tie at "fine" detail (1/2 scale), in full if still tied."""
    before = copy.copy(recognizer)

    def next_detail(margin: float, decoded_at: str = "draft"):
        if decoded_at == "draft":
            return "fine" if margin < before.refine_margin else None
        return "full" if decoded_at == "fine" and margin < before.refine_margin * 0.05 else None

    before.next_detail = next_detail
    return before


def full_decode_only(recognizer, paths: list[Path]) -> float:
    """Seconds to decode ``paths`` in full for the model (a thread per core), as near-ties are."""
    start = time.perf_counter()
    for _ in decode_ordered(paths, recognizer.preprocessing, workers=recognizer.workers, detail="full"):
        pass
    return time.perf_counter() - start


def reference(recognizer, paths: list[Path]) -> dict[str, np.ndarray]:
    """Probabilities from a full decode (no draft mode) with the same crop, and
    from perturbations of it that show the noise floor of top-1 agreement on
    near-tie photos: bicubic instead of bilinear resampling, a JPEG quality-95
    round trip of the 224×224 input, draft mode one step finer (1/4
    instead of 1/8: twice the decoded size per side), and Pillow's
    ``reducing_gap=3`` resize (a box reduce first, a third of the resize's
    CPU, "indistinguishable" by Pillow's docs). Photos are decoded one at a
    time (a 12-megapixel decode is 36 MB)."""
    from PIL import ImageOps

    from imagerec.core.images import load_image, load_pil, resize

    pre = recognizer.preprocessing
    arrays: dict[str, list[np.ndarray]] = {"reference": [], "bicubic": [], "jpeg95": [], "draft_quarter": [], "fine": [],
                                           "imagerec_full": [], "reducing_gap": []}
    for path in paths:
        arrays["fine"].append(load_image(path, pre, detail="fine"))
        arrays["imagerec_full"].append(load_image(path, pre, detail="full"))
        full = load_pil(path)  # no preprocessing given: no draft mode
        bilinear = np.asarray(resize(full, pre))
        arrays["reference"].append(bilinear)
        arrays["bicubic"].append(_crop_resize(full, pre.size, Image.Resampling.BICUBIC))
        arrays["reducing_gap"].append(_crop_resize(full, pre.size, Image.Resampling.BILINEAR, reducing_gap=3.0))
        arrays["jpeg95"].append(_jpeg_round_trip(bilinear))
        with Image.open(path) as raw:
            turned = raw.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            height, width = pre.size[::-1] if turned else pre.size
            scale = max(width / raw.width, height / raw.height)
            raw.draft("RGB", (int(raw.width * scale * 2), int(raw.height * scale * 2)))
            arrays["draft_quarter"].append(np.asarray(resize(ImageOps.exif_transpose(raw).convert("RGB"), pre)))
    return {name: recognizer.predict_proba(np.stack(batch)) for name, batch in arrays.items()}


def _crop_resize(image: Image.Image, size: tuple[int, int], resample, reducing_gap: float | None = None) -> np.ndarray:
    height, width = size
    scale = max(width / image.width, height / image.height)
    crop_w, crop_h = width / scale, height / scale
    left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
    box = (left, top, left + crop_w, top + crop_h)
    return np.asarray(image.resize((width, height), resample, box=box, reducing_gap=reducing_gap))


def _jpeg_round_trip(array: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95)
    return np.asarray(Image.open(buffer).convert("RGB"))


# cProfile's name for the C functions doing each kind of work (substrings of the entry).
_KINDS = (
    ("decode (JPEG, libjpeg-turbo)", ("ImagingDecoder", "decode_jpeg", "decode_turbo")),
    ("resize + turn upright", ("'resize' of", "'transpose' of", "'reduce' of")),
    ("inference (LiteRT invoke)", ("Invoke", "invoke")),
    ("file reads", ("'read' of", "read_bytes")),
    ("copies (stack, asarray, convert)", ("numpy", "'convert' of", "'copy' of", "tobytes")),
)


def profile(recognizer, paths: list[Path]) -> None:
    """One (b) run under cProfile, single-threaded; prints the seconds per kind of work."""
    import cProfile
    import pstats

    recognizer.workers = 1
    profiler = cProfile.Profile()
    profiler.enable()
    start = time.perf_counter()
    for _ in recognizer.predict_files(paths, top_k=1):
        pass
    wall = time.perf_counter() - start
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (calls, ncalls, tottime, cumtime, callers)}
    totals = {kind: 0.0 for kind, _ in _KINDS}
    other = 0.0
    for (file, _, name), (_, _, tottime, _, _) in stats.items():
        entry = f"{file}:{name}"
        kind = next((k for k, marks in _KINDS if any(m in entry for m in marks)), None)
        if kind is None:
            other += tottime
        else:
            totals[kind] += tottime
    print(f"\nprofile: {len(paths)} photos, one decode thread, one inference thread, {wall:.1f} s "
          f"({wall / len(paths) * 1000:.1f} ms a photo, profiler overhead included)")
    for kind, seconds in [*totals.items(), ("Python (everything else)", other)]:
        print(f"  {kind:<34} {seconds:6.2f} s  {seconds / wall:5.0%}")
    print("\n  top functions by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


def make_calibration_photos(folder: Path, count: int, seed: int = 1) -> list[Path]:
    """``count`` JPEGs unlike the benchmark's: random crops of the shared photos at phone and camera sizes,
    qualities 80–95, any orientation tag (cached between runs). They calibrate; the benchmark tests."""
    sources = sorted(p for p in (SHARED / "photos").rglob("*") if p.suffix.lower() in {".jpg", ".bmp"})
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"calibration_{i:04d}.jpg"
        paths.append(path)
        source = sources[int(rng.integers(len(sources)))]
        side = rng.uniform(0.55, 0.95)
        size = [(4032, 3024), (3264, 2448), (6000, 4000), (4000, 3000)][int(rng.integers(4))]
        quality = int(rng.choice([80, 85, 92, 95]))
        tag, transpose = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
        if path.exists():
            continue
        image = Image.open(source).convert("RGB")
        w, h = image.size
        crop_w, crop_h = w * side, h * side
        left, top = rng.uniform(0, w - crop_w), rng.uniform(0, h - crop_h)
        big = image.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))
        exif = Image.Exif()
        if transpose is not None:
            big = big.transpose(transpose)
            exif[0x0112] = tag
        big.save(path, "JPEG", quality=quality, exif=exif)
    return paths


def calibrate(recognizer, paths: list[Path]) -> dict:
    """The draft-mode margin below which answers differ from a full decode's, on photos the benchmark never sees.

    A photo's answer from its draft decode "flips" when its top-1 differs
    from the full decode's; the margin to refine below must exceed the draft
    margin of every flip. Returns the largest such margin and the shares of
    photos refined at candidate margins."""
    from imagerec.core.images import load_image, load_pil, resize

    pre = recognizer.preprocessing
    draft = recognizer.predict_proba(np.stack([load_image(p, pre) for p in paths]))
    full = recognizer.predict_proba(np.stack([np.asarray(resize(load_pil(p), pre)) for p in paths]))
    margins = recognizer.margins(draft)
    flips = draft.argmax(axis=1) != full.argmax(axis=1)
    worst = float(margins[flips].max()) if flips.any() else 0.0
    return {
        "photos": len(paths),
        "flips": int(flips.sum()),
        "flip_margins": [round(float(m), 4) for m in np.sort(margins[flips])],
        "largest_flip_margin": round(worst, 4),
        "share_below": {f"{m:g}": round(float(np.mean(margins < m)), 4) for m in (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1)},
    }


def rss_child(folder: Path) -> None:
    """Run in a fresh process: predict every photo in ``folder``; print photos, seconds and peak RSS as JSON."""
    import resource

    recognizer = imagerec.load("mobilenet_v2")
    paths = sorted(folder.iterdir())
    start = time.perf_counter()
    count = sum(1 for _ in recognizer.predict_files(paths, top_k=1))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"photos": count, "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1)}))


def peak_memory(paths: list[Path], sizes: tuple[int, ...] = (200, 2000)) -> list[dict]:
    """Peak RSS of a fresh process predicting ``size`` photos: the benchmark's photos again under other names."""
    import subprocess

    results = []
    for size in sizes:
        folder = Path(tempfile.mkdtemp(prefix=f"imagerec-rss-{size}-"))
        try:
            for i in range(size):
                (folder / f"copy_{i:05d}.jpg").symlink_to(paths[i % len(paths)])
            out = subprocess.run([sys.executable, __file__, "--rss-child", str(folder)], check=True,
                                 capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for link in folder.iterdir():
                link.unlink()
            folder.rmdir()
        print(f"peak RSS predicting {size} photos: {results[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: one per core)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: one per core)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "imagerec-bench-photos")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "predict_throughput.json")
    parser.add_argument("--profile", action="store_true", help="profile one run instead of timing (see above)")
    parser.add_argument("--memory", action="store_true", help="only measure peak RSS for 200 and 2,000 photos")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--calibrate", type=int, default=0, metavar="N",
                        help="instead of timing, calibrate the refine margin on N other generated photos")
    args = parser.parse_args()

    if args.rss_child:
        rss_child(args.rss_child)
        return
    print(f"building {args.photos} photo-like 4000×3000 JPEGs in {args.folder} …", file=sys.stderr)
    paths = make_photos(args.folder, args.photos)
    recognizer = imagerec.load("mobilenet_v2", num_threads=args.threads)
    recognizer.workers = args.workers
    model_path = SHARED / "models" / "mobilenet_v2_1.0_224_quant.tflite"
    if args.calibrate:
        folder = args.folder.parent / "imagerec-calibration-photos"
        print(json.dumps(calibrate(recognizer, make_calibration_photos(folder, args.calibrate)), indent=2))
        return
    if args.memory:
        print(json.dumps(peak_memory(paths), indent=2))
        return
    if args.profile:
        profile(imagerec.load("mobilenet_v2", num_threads=1), paths)
        return

    naive_times, naive_decode, api_times, draft_times, decode_times, infer_times = [], [], [], [], [], []
    before_times: list[float] = []
    full_times: list[float] = []
    api_cpu: list[float] = []
    naive_cpu: list[float] = []
    draft_cpu: list[float] = []
    before_cpu: list[float] = []
    before = fine_then_full(recognizer)
    batch = recognizer.preprocess(paths)
    near = recognizer.margins(recognizer.predict_proba(batch)) < recognizer.refine_margin
    near_paths = [p for p, n in zip(paths, near) if n] or paths[:1]
    draft_only = copy.copy(recognizer)
    draft_only.refine_margin = 0.0
    api_top1: list[int] = []
    draft_top1: list[int] = []
    before_top1: list[int] = []
    index_times: list[float] = []
    index_cpu: list[float] = []
    index_top1: list[int] = []
    for run in range(args.runs):
        cpu = time.process_time()
        seconds, decoding, _ = naive(paths, model_path)
        naive_cpu.append(time.process_time() - cpu)
        naive_times.append(seconds)
        naive_decode.append(decoding)
        cpu = time.process_time()
        seconds, api_top1 = imagerec_api(recognizer, paths)
        api_cpu.append(time.process_time() - cpu)
        api_times.append(seconds)
        cpu = time.process_time()
        seconds, draft_top1 = imagerec_api(draft_only, paths)
        draft_cpu.append(time.process_time() - cpu)
        draft_times.append(seconds)
        cpu = time.process_time()
        seconds, before_top1 = imagerec_api(before, paths)
        before_cpu.append(time.process_time() - cpu)
        before_times.append(seconds)
        seconds, cpu, index_top1 = index_run(recognizer, args.folder, paths)
        index_times.append(seconds)
        index_cpu.append(cpu)
        decode_times.append(decode_only(recognizer, paths))
        infer_times.append(inference_only(recognizer, batch))
        full_times.append(full_decode_only(recognizer, near_paths))
        print(f"run {run + 1}: naive {naive_times[-1]:.1f} s, imagerec {api_times[-1]:.1f} s, before {before_times[-1]:.1f} s, "
              f"refinement off {draft_times[-1]:.1f} s, index {index_times[-1]:.1f} s", file=sys.stderr)

    probabilities = reference(recognizer, paths)
    ref = probabilities["reference"]
    ref_top1 = ref.argmax(axis=1)
    own_top1 = probabilities["imagerec_full"].argmax(axis=1)
    agreement = float(np.mean(np.array(api_top1) == ref_top1))
    agreement_own = float(np.mean(np.array(api_top1) == own_top1))
    agreement_draft = float(np.mean(np.array(draft_top1) == ref_top1))
    agreement_before = float(np.mean(np.array(before_top1) == ref_top1))
    refined_share = float(np.mean(near))
    ordered = np.sort(ref, axis=1)
    clear = (ordered[:, -1] - ordered[:, -2]) >= 0.05  # a top-1 not within 5 points of the runner-up
    agreement_clear = float(np.mean(np.array(api_top1)[clear] == ref_top1[clear]))
    floor_bicubic = float(np.mean(probabilities["bicubic"].argmax(axis=1) == ref_top1))
    floor_jpeg = float(np.mean(probabilities["jpeg95"].argmax(axis=1) == ref_top1))
    floor_draft = float(np.mean(probabilities["draft_quarter"].argmax(axis=1) == ref_top1))
    floor_fine = float(np.mean(probabilities["fine"].argmax(axis=1) == ref_top1))
    floor_own = float(np.mean(own_top1 == ref_top1))
    floor_gap = float(np.mean(probabilities["reducing_gap"].argmax(axis=1) == ref_top1))
    floor_gap_near = float(np.mean(probabilities["reducing_gap"].argmax(axis=1)[near] == ref_top1[near]))
    n = len(paths)
    a = n / statistics.median(naive_times)
    b = n / statistics.median(api_times)
    b0 = n / statistics.median(draft_times)
    b_before = n / statistics.median(before_times)
    decode_rate = n / statistics.median(decode_times)
    infer_rate = n / statistics.median(infer_times)
    full_rate = len(near_paths) / statistics.median(full_times)
    limit = 1 / (1 / decode_rate + 1 / infer_rate)  # serial: each alone keeps both cores busy
    limit_answer = 1 / (1 / decode_rate + 1 / infer_rate + refined_share * (1 / full_rate + 1 / infer_rate))
    b_index = n / statistics.median(index_times)
    index_agreement = float(np.mean(np.array(index_top1) == np.array(api_top1)))
    sweep = margin_sweep(recognizer.predict_proba(batch), probabilities["imagerec_full"], ref,
                         (0.0, 0.02, 0.04, 0.05, 0.06, 0.08, 0.1),
                         {"decode": decode_rate, "inference": infer_rate, "full": full_rate})
    memory = peak_memory(paths) if args.runs else []
    result = {
        "photos": n,
        "runs": args.runs,
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "naive_photos_per_s": round(a, 2),
        "imagerec_photos_per_s": round(b, 2),
        "ratio_b_over_a": round(b / a, 2),
        # CPU time is steadier than wall time when others load the machine: on an idle machine the
        # naive loop runs at 1000 / its ms, imagerec at cores × 1000 / its ms if no core idles.
        "naive_cpu_ms_per_photo": round(statistics.median(naive_cpu) / n * 1000, 2),
        "imagerec_cpu_ms_per_photo": round(statistics.median(api_cpu) / n * 1000, 2),
        "before_fine_then_full_cpu_ms_per_photo": round(statistics.median(before_cpu) / n * 1000, 2),
        "refinement_off_cpu_ms_per_photo": round(statistics.median(draft_cpu) / n * 1000, 2),
        "ratio_by_cpu_time": round(statistics.median(naive_cpu) / (statistics.median(api_cpu) / len(os.sched_getaffinity(0))), 2),
        "refine_margin": recognizer.refine_margin,
        "share_decoded_again_in_full": round(refined_share, 4),
        "before_fine_then_full_photos_per_s": round(b_before, 2),
        "top1_agreement_before_fine_then_full": round(agreement_before, 4),
        "limit_first_pass_photos_per_s": round(limit, 2),
        "limit_answer_photos_per_s": round(limit_answer, 2),
        "share_of_first_pass_limit": round(b / limit, 3),
        "share_of_answer_limit": round(b / limit_answer, 3),
        "share_of_first_pass_limit_refinement_off": round(b0 / limit, 3),
        "imagerec_refinement_off_photos_per_s": round(b0, 2),
        "top1_agreement_refinement_off": round(agreement_draft, 4),
        "naive_decode_share": round(statistics.median(naive_decode) / statistics.median(naive_times), 3),
        "imagerec_decode_only_photos_per_s": round(decode_rate, 2),
        "imagerec_inference_only_photos_per_s": round(infer_rate, 2),
        "imagerec_full_decode_only_photos_per_s": round(full_rate, 2),
        "top1_agreement_with_full_decode": round(agreement, 4),
        "top1_agreement_with_imagerec_full_decode": round(agreement_own, 4),
        "top1_agreement_where_reference_margin_ge_5pts": round(agreement_clear, 4),
        "photos_with_reference_margin_ge_5pts": int(clear.sum()),
        "noise_floor_full_decode_bicubic_vs_bilinear": round(floor_bicubic, 4),
        "noise_floor_full_decode_jpeg95_round_trip": round(floor_jpeg, 4),
        "noise_floor_imagerec_full_vs_plain_full": round(floor_own, 4),
        "agreement_draft_one_step_finer_1_4": round(floor_draft, 4),
        "noise_floor_full_decode_reducing_gap_3": round(floor_gap, 4),
        "noise_floor_full_decode_reducing_gap_3_on_near_ties": round(floor_gap_near, 4),
        "agreement_fine_1_2_alone": round(floor_fine, 4),
        "index_photos_per_s": round(b_index, 2),
        "index_cpu_ms_per_photo": round(statistics.median(index_cpu) / n * 1000, 2),
        "index_share_of_predict": round(b_index / b, 3),
        "index_top1_same_as_predict": round(index_agreement, 4),
        "margin_sweep": sweep,
        "peak_rss": memory,
        "decode_workers": args.workers or "cores",
        "inference_threads": recognizer.backend.num_threads,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("(a) naive loop, photos/s", f"{a:.1f}"),
        ("(b) imagerec API, photos/s", f"{b:.1f}"),
        ("ratio b/a (target ≥ 12)", f"{b / a:.1f}×"),
        ("CPU ms a photo: naive / imagerec / before / refinement off",
         f"{result['naive_cpu_ms_per_photo']:.0f} / {result['imagerec_cpu_ms_per_photo']:.1f} / "
         f"{result['before_fine_then_full_cpu_ms_per_photo']:.1f} / {result['refinement_off_cpu_ms_per_photo']:.1f}"),
        ("  ratio from CPU time (naive ms / (imagerec ms / cores))", f"{result['ratio_by_cpu_time']:.1f}×"),
        (f"  photos decoded again in full (margin < {recognizer.refine_margin:g})", f"{refined_share:.1%}"),
        ("  (b) near-ties at 1/2 first, in full if tied (before), photos/s", f"{b_before:.1f}"),
        ("  (b) with refinement off, photos/s", f"{b0:.1f}"),
        ("naive: share of time decoding", f"{result['naive_decode_share']:.0%}"),
        ("imagerec: draft decode alone, photos/s", f"{decode_rate:.1f}"),
        ("imagerec: inference alone, photos/s", f"{infer_rate:.1f}"),
        ("imagerec: full decode alone (near-ties), photos/s", f"{full_rate:.1f}"),
        ("first-pass limit 1/(1/decode + 1/inference), photos/s", f"{limit:.1f}"),
        ("answer's limit (+ near-ties' full decode and inference), photos/s", f"{limit_answer:.1f}"),
        ("  (b) as a share of the answer's limit", f"{b / limit_answer:.0%}"),
        ("  (b) as a share of the first-pass limit", f"{b / limit:.0%}"),
        ("  … refinement off, of the first-pass limit", f"{b0 / limit:.0%}"),
        ("top-1 agreement with a plain full decode (≥ 99.5 %)", f"{agreement:.1%}"),
        ("  … with imagerec's own full decode (refine_margin=1)", f"{agreement_own:.1%}"),
        ("  … before (1/2 first)", f"{agreement_before:.1%}"),
        ("  … with refinement off", f"{agreement_draft:.1%}"),
        (f"  … on the {int(clear.sum())} photos with a clear winner (margin ≥ 5 pts)", f"{agreement_clear:.1%}"),
        ("  noise floor: imagerec's full decode vs the plain one", f"{floor_own:.1%}"),
        ("  noise floor: full decode, bicubic vs bilinear", f"{floor_bicubic:.1%}"),
        ("  noise floor: full decode, JPEG q95 round trip", f"{floor_jpeg:.1%}"),
        ("  noise floor: full decode, Pillow reducing_gap=3 (all / near-ties)", f"{floor_gap:.1%} / {floor_gap_near:.1%}"),
        ("  draft one step finer (1/4, 2× the pixels a side)", f"{floor_draft:.1%}"),
        ("  a 1/2-scale decode for every photo", f"{floor_fine:.1%}"),
    ]
    rows += [
        ("imagerec index of the same photos (first pass), photos/s", f"{b_index:.1f}"),
        ("  CPU ms a photo", f"{result['index_cpu_ms_per_photo']:.1f}"),
        ("  as a share of predict (b)", f"{b_index / b:.0%}"),
        ("  top-1 in the catalog the same as predict's", f"{index_agreement:.1%}"),
        ("refine margin sweep (from this run's rates): margin → refined, agreement own/plain, limit/s", ""),
    ]
    rows += [(f"  {row['margin']:.2f} → {row['share_refined']:.1%}, {row['agreement_imagerec_full']:.1%} / "
              f"{row['agreement_plain_full']:.1%}", f"{row['limit_photos_per_s']:.1f}") for row in sweep]
    rows += [(f"peak RSS predicting {m['photos']} photos, MB", f"{m['peak_rss_mb']:.0f}") for m in memory]
    width = max(len(r[0]) for r in rows)
    print(f"\npredict throughput: {n} photos, median of {args.runs} runs, {result['cores']} cores, "
          f"load average {result['load_average'][0]:.1f}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>8}")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
