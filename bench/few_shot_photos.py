"""Teach cat / dog / hot dog from four photos by imprinting; predict the other shared photos.

The few-shot folder holds one cat, one dog and two hot-dog photos. The
imprint head makes each class the mean of its photos' embeddings (no
training), and the "unknown" threshold is calibrated from those same photos
(held-out hot dog, left-out classes). Every other photo in ../shared/photos
is then predicted; the expected answer is what a person sees in it:
``cat`` for the two cat photos, ``hot dog`` for hot_dog.jpg, ``dog`` for
pets.jpg (two dogs running) and ``unknown`` for the rest.

    .venv/bin/python bench/few_shot_photos.py            # augment 0 and 7, mobilenet_v2
    .venv/bin/python bench/few_shot_photos.py --backbone mobilenet_v1_embedder --augment 0

Prints a table per setting and writes bench/results/few_shot_photos.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))

import imagerec  # noqa: E402
from imagerec.core.images import IMAGE_SUFFIXES  # noqa: E402

TEACH = {
    "cat": ["cat_train_0.bmp"],
    "dog": ["dog_train_0.bmp"],
    "hot dog": ["hotdog_train_0.bmp", "hotdog_train_1.bmp"],
}
EXPECTED = {"cat_720p.jpg": "cat", "cat_1080p.jpg": "cat", "hot_dog.jpg": "hot dog", "pets.jpg": "dog"}


def run(backbone: str, augment: int, repeats: int) -> dict:
    shots = SHARED / "photos" / "few-shot"
    data = {label: [str(shots / name) for name in names] for label, names in TEACH.items()}
    photos = sorted(str(p) for p in (SHARED / "photos").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    learn_times, predict_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        # cache=False: time the whole thing, embedding included.
        model = imagerec.learn(data, backbone=backbone, head="imprint", augment=augment, cache=False, progress=False)
        learn_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        predictions = model.predict(photos, top_k=2)
        predict_times.append(time.perf_counter() - started)
    similarity = model.head.confidence(model.embed(photos))
    rows = []
    for path, ranked, cosine in zip(photos, predictions, similarity):
        name = Path(path).name
        expected = EXPECTED.get(name, "unknown")
        best = ranked.closest  # the answer is ranked.label ("unknown" below the threshold)
        rows.append({
            "photo": name, "expected": expected, "predicted": ranked.label, "closest": best.label,
            "score": round(best.score, 3), "nearest_class_cosine": round(float(cosine), 3),
            "runner_up": ranked[1].label if len(ranked) > 1 else None, "correct": ranked.label == expected,
        })
    return {
        "backbone": backbone, "augment": augment, "threshold": round(model.threshold, 4),
        "calibration": model.metadata["calibration"],
        "correct": sum(r["correct"] for r in rows), "photos": len(rows),
        "learn_seconds_median": round(statistics.median(learn_times), 3),
        "predict_seconds_median": round(statistics.median(predict_times), 3), "repeats": repeats,
        "rows": rows,
    }


def print_table(result: dict) -> None:
    print(f"\n{result['backbone']}, imprint, augment={result['augment']}: 'unknown' below cosine "
          f"{result['threshold']:.3f}; {result['correct']}/{result['photos']} as a person would say; "
          f"learn {result['learn_seconds_median']:.2f} s, predict {result['photos']} photos "
          f"{result['predict_seconds_median']:.2f} s (median of {result['repeats']})")
    print(f"{'photo':<20} {'expected':<9} {'predicted':<9} {'score':>6} {'cosine':>7}  ok")
    for r in result["rows"]:
        print(f"{r['photo']:<20} {r['expected']:<9} {r['predicted']:<9} {r['score']:>6.2f} "
              f"{r['nearest_class_cosine']:>7.3f}  {'yes' if r['correct'] else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--augment", type=int, nargs="+", default=[0, 7], help="augmentation settings to compare")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "few_shot_photos.json"))
    args = parser.parse_args(argv)
    results = [run(args.backbone, augment, args.repeats) for augment in args.augment]
    for result in results:
        print_table(result)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": f"{os.cpu_count()} cores, shared with other jobs", "results": results}, indent=2))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
