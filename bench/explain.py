"""Seconds per explanation (``Recognizer.explain``, occlusion) per model kind.

Model kinds, each explaining the same shared photos:

- ``zoo int8``: ``mobilenet_v2`` (int8 TFLite through LiteRT);
- ``learned``: ``tests/fixtures/legacy/pets.imagerec`` (a head on the zoo
  model's embedding);
- ``onnx``: ``tests/fixtures/legacy/shapes.onnx`` (a small exported CNN, ONNX Runtime).

Every explanation is ``runs`` model runs (the whole photo, then one per
hidden square); the table also gives a plain ``predict`` of the same photo,
so the ratio explain / predict is measured within one run. Median of
``--rounds`` rounds over ``--photos`` photos, after one warm-up photo.

    python bench/explain.py --rounds 3

Prints a table and writes ``bench/results/explain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))

LEGACY = ROOT / "tests" / "fixtures" / "legacy"
MODELS = {"zoo int8": "mobilenet_v2", "learned": str(LEGACY / "pets.imagerec"), "onnx": str(LEGACY / "shapes.onnx")}
PHOTOS = ["parrot.jpg", "hot_dog.jpg", "cat_720p.jpg", "owl.jpg"]


def _seconds(call, photos: list[Path]) -> float:
    """Mean seconds per photo of ``call(photo)`` over ``photos``."""
    start = time.perf_counter()
    for photo in photos:
        call(photo)
    return (time.perf_counter() - start) / len(photos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "explain.json")
    args = parser.parse_args()

    import imagerec

    photos = [SHARED / "photos" / name for name in PHOTOS[: args.photos]]
    rows = []
    for kind, model in MODELS.items():
        recognizer = imagerec.load(model)
        heat = recognizer.explain(photos[0])  # warm-up: first runs allocate
        recognizer.predict(photos[0])
        explain_s, predict_s = [], []
        for _ in range(args.rounds):
            explain_s.append(_seconds(recognizer.explain, photos))
            predict_s.append(_seconds(lambda photo, r=recognizer: r.predict(photo, top_k=1), photos))
        row = {"kind": kind, "model": Path(model).name, "input": list(recognizer.preprocessing.size),
               "runs": heat.runs, "explain_s": statistics.median(explain_s),
               "predict_s": statistics.median(predict_s)}
        row["ratio"] = row["explain_s"] / row["predict_s"]
        rows.append(row)
        print(f"{kind:9} {row['model']:22} {row['input'][0]}×{row['input'][1]}  runs {row['runs']:3}  "
              f"explain {row['explain_s']:.3f} s  predict {row['predict_s'] * 1000:.1f} ms  ×{row['ratio']:.0f}",
              flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {"rounds": args.rounds, "photos": [p.name for p in photos], "cpus": os.cpu_count(),
              "machine": platform.machine(), "rows": rows}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
