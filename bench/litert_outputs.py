"""Does exposing the embedding slow classification down? LiteRT, MobileNet V2 int8.

:class:`imagerec.backends.litert.LiteRTBackend` gets the 1280-d embedding by
rewriting the model so that ``MobilenetV2/Logits/AvgPool`` is also a graph
output: one ``invoke`` computes scores and embedding. This measures, in one
run with the variants interleaved, milliseconds per image for

(a) the model file as published, scores only;
(b) the rewritten model, scores only (the plain ``predict`` path);
(c) the rewritten model, scores and embedding (what ``imagerec index`` uses);

and checks that (a) and (b) give identical scores. Median of ``--rounds``
rounds of ``--images`` images each.

    python bench/litert_outputs.py --rounds 7 --images 50

Prints a table and writes ``bench/results/litert_outputs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "litert_outputs.json")
    args = parser.parse_args()

    from imagerec import zoo
    from imagerec.backends.litert import LiteRTBackend

    spec = zoo.get("mobilenet_v2")
    path = zoo.fetch(spec.model)
    plain = LiteRTBackend(path, num_threads=args.threads)
    rewritten = LiteRTBackend(path, num_threads=args.threads, extra_outputs={"embedding": spec.embedding_tensor})
    batch = np.random.default_rng(0).integers(0, 256, (args.images, 224, 224, 3), dtype=np.uint8)
    variants = {
        "(a) published model, scores": (plain, ("scores",)),
        "(b) rewritten model, scores": (rewritten, ("scores",)),
        "(c) rewritten model, scores + embedding": (rewritten, ("scores", "embedding")),
    }
    for backend, outputs in variants.values():
        backend.run(batch[:2], outputs)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (backend, outputs) in variants.items():
            start = time.perf_counter()
            backend.run(batch, outputs)
            samples[name].append((time.perf_counter() - start) * 1000 / args.images)
    identical = bool(np.array_equal(plain.run(batch[:8])["scores"], rewritten.run(batch[:8])["scores"]))
    report = {
        "model": spec.name,
        "threads": plain.num_threads,
        "images_per_round": args.images,
        "rounds": args.rounds,
        "ms_per_image_median": {name: round(statistics.median(v), 3) for name, v in samples.items()},
        "ms_per_image_range": {name: [round(min(v), 3), round(max(v), 3)] for name, v in samples.items()},
        "scores_identical_a_vs_b": identical,
        "load_average": os.getloadavg(),
    }
    base = report["ms_per_image_median"]["(a) published model, scores"]
    print(f"LiteRT {spec.name}, {plain.num_threads} threads, median of {args.rounds} rounds × {args.images} images")
    for name, ms in report["ms_per_image_median"].items():
        print(f"  {name:42s} {ms:6.2f} ms/image  ({ms / base:.3f}× of (a))")
    print(f"  scores of (a) and (b) identical: {identical}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
