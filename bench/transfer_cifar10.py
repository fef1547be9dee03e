"""Transfer learning on CIFAR-10 with a frozen backbone: accuracy vs examples per class.

Protocol (issue 4): ../shared/data/cifar10-train.tar.gz, a fixed stratified
45,000 / 5,000 split (``Dataset.split_indices(0.1, seed=0)``), images
upscaled from 32×32 to 224×224, embeddings from ``--backbone``
(``mobilenet_v2`` by default: 1280-d, LiteRT int8). Reported: validation accuracy of the logistic head with every
embedded training image and with 10 / 100 / 1,000 per class; of the imprint
head with 1 / 5 / 10 per class (median over several random draws); feature
extraction images/s; head fitting time; optionally ``course_cnn`` trained
from scratch on the same per-class subsets (``--course-cnn``).

The full protocol embeds 50,000 images once (about 4 minutes for
``mobilenet_v2``, 20 for ``mobilenet_multi`` on two cores); embeddings are
cached, so later runs start at once. What the reported numbers come from
(docs/transfer.md)::

    .venv/bin/python bench/transfer_cifar10.py --course-cnn --cnn-minutes 5
    .venv/bin/python bench/transfer_cifar10.py --backbone mobilenet_multi --dense \
        --output bench/results/transfer_cifar10_multi.json

A quick check on a subset::

    .venv/bin/python bench/transfer_cifar10.py --train-per-class 300 --val-per-class 100

Writes bench/results/transfer_cifar10.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))

import numpy as np  # noqa: E402

from imagerec.data import load_dataset  # noqa: E402
from imagerec.transfer.backbones import default_frame, get_backbone  # noqa: E402
from imagerec.transfer.features import extract  # noqa: E402
from imagerec.transfer.heads import DenseHead, ImprintHead, LogisticHead  # noqa: E402


def per_class_indices(targets: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` random members of every class among ``pool`` (indices into targets)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(targets[pool]):
        members = pool[targets[pool] == c]
        chosen.append(rng.choice(members, min(k, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def accuracy(head, X: np.ndarray, y: np.ndarray) -> float:
    return float((head.predict_proba(X).argmax(axis=1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10-train.tar.gz"))
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--frame", type=int, default=None,
                        help="grey frame in pixels at the backbone's input (default: imagerec learn's, 16 at 224; 0: none)")
    parser.add_argument("--train-per-class", type=int, default=4500, help="training images embedded per class (≤ 4500)")
    parser.add_argument("--val-per-class", type=int, default=500, help="validation images per class (≤ 500)")
    parser.add_argument("--logistic-shots", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--imprint-shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--draws", type=int, default=5, help="random draws per small subset (median reported)")
    parser.add_argument("--dense", action="store_true", help="also fit the dense (Keras Dense + Dropout) head on all embedded images")
    parser.add_argument("--course-cnn", action="store_true", help="also train course_cnn from scratch on the subsets")
    parser.add_argument("--cnn-minutes", type=float, default=5.0, help="time budget per course_cnn run")
    parser.add_argument("--speed-images", type=int, default=192, help="images embedded uncached to measure images/s")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "transfer_cifar10.json"))
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data)
    train_pool, val_pool = dataset.split_indices(0.1, seed=0)
    targets = dataset.targets
    train_idx = per_class_indices(targets, train_pool, args.train_per_class, seed=1)
    val_idx = per_class_indices(targets, val_pool, args.val_per_class, seed=2)
    print(f"{len(dataset)} images, fixed split {len(train_pool)} / {len(val_pool)}; "
          f"using {len(train_idx)} training and {len(val_idx)} validation images", file=sys.stderr)

    backbone = get_backbone(args.backbone)
    backbone = backbone.framed(default_frame(backbone.preprocessing) if args.frame is None else args.frame)
    wanted = np.concatenate([train_idx, val_idx])
    extraction = extract([dataset.paths[i] for i in wanted], backbone, progress=None)
    if not extraction.ok.all():
        print(f"{(~extraction.ok).sum()} images could not be read", file=sys.stderr)
    embeddings = extraction.embeddings[:, 0]
    position = {int(i): p for p, i in enumerate(wanted)}
    X_val = embeddings[[position[int(i)] for i in val_idx]]
    y_val = targets[val_idx]
    # Extraction speed, measured without the cache (median of three runs).
    sample = [dataset.paths[i] for i in val_idx[: args.speed_images]]
    rates = [extract(sample, backbone, cache=None, progress=False).images_per_second for _ in range(3)]
    results: dict = {
        "protocol": {
            "data": args.data, "split": "stratified 45,000 / 5,000 (seed 0)", "backbone": args.backbone,
            "frame": backbone.preprocessing.frame, "train_images": int(len(train_idx)), "val_images": int(len(val_idx)), "upscaled_to": list(backbone.preprocessing.size),
        },
        "extraction": {
            "computed": extraction.computed, "from_cache": extraction.cached,
            "seconds": round(extraction.seconds, 1),
            "images_per_second": None if extraction.computed == 0 else round(extraction.images_per_second, 1),
            "uncached_images_per_second_median": round(statistics.median(rates), 1),
            "uncached_sample": len(sample),
        },
        "logistic": [], "dense": [], "imprint": [], "course_cnn": [],
        "cpu": f"{os.cpu_count()} cores shared with other jobs during the run",
    }

    def rows_for(idx: np.ndarray) -> np.ndarray:
        return embeddings[[position[int(i)] for i in idx]]

    # Logistic head: all embedded training images, then k per class.
    settings = [("all", train_idx)] + [(k, None) for k in args.logistic_shots if k <= args.train_per_class]
    for k, fixed in settings:
        accs, fits, Cs = [], [], []
        for draw in range(1 if fixed is not None else (args.draws if k != "all" and k <= 100 else 1)):
            idx = fixed if fixed is not None else per_class_indices(targets, train_idx, k, seed=100 + draw)
            started = time.perf_counter()
            head = LogisticHead().fit(rows_for(idx), targets[idx], dataset.classes)
            fits.append(time.perf_counter() - started)
            accs.append(accuracy(head, X_val, y_val))
            Cs.append(head.C_)
        row = {"per_class": k if k != "all" else int(args.train_per_class), "subset": str(k), "draws": len(accs),
               "val_accuracy_median": round(statistics.median(accs), 4),
               "val_accuracy_range": [round(min(accs), 4), round(max(accs), 4)],
               "fit_seconds_median": round(statistics.median(fits), 2), "C": Cs}
        results["logistic"].append(row)
        print(f"logistic {str(k):>5}/class: {row['val_accuracy_median']:.1%} "
              f"(range {min(accs):.1%}–{max(accs):.1%}, {len(accs)} draws), fit {row['fit_seconds_median']:.2f} s",
              file=sys.stderr)

    if args.dense:
        started = time.perf_counter()
        head = DenseHead().fit(rows_for(train_idx), targets[train_idx], dataset.classes)
        row = {"per_class": int(args.train_per_class), "val_accuracy": round(accuracy(head, X_val, y_val), 4),
               "fit_seconds": round(time.perf_counter() - started, 1), "params": head.params()}
        results["dense"].append(row)
        print(f"dense      all: {row['val_accuracy']:.1%}, fit {row['fit_seconds']} s", file=sys.stderr)

    for k in args.imprint_shots:
        accs, fits = [], []
        for draw in range(max(args.draws, 5)):
            idx = per_class_indices(targets, train_idx, k, seed=200 + draw)
            started = time.perf_counter()
            head = ImprintHead().fit(rows_for(idx), targets[idx], dataset.classes)
            fits.append(time.perf_counter() - started)
            accs.append(accuracy(head, X_val, y_val))
        row = {"per_class": k, "draws": len(accs), "val_accuracy_median": round(statistics.median(accs), 4),
               "val_accuracy_range": [round(min(accs), 4), round(max(accs), 4)],
               "fit_seconds_median": round(statistics.median(fits), 4)}
        results["imprint"].append(row)
        print(f"imprint  {k:>5}/class: {row['val_accuracy_median']:.1%} (range {min(accs):.1%}–{max(accs):.1%})",
              file=sys.stderr)

    if args.course_cnn:
        import imagerec

        val_set = dataset.take(val_idx)
        for k in args.logistic_shots:
            if k > args.train_per_class:
                continue
            idx = per_class_indices(targets, train_idx, k, seed=100)
            with tempfile.TemporaryDirectory() as folder:
                run = imagerec.train(dataset.take(idx), arch="course_cnn", val_data=val_set, image_size=32,
                                     output=Path(folder) / "cnn.keras", max_minutes=args.cnn_minutes, verbose=False)
            row = {"per_class": k, "val_accuracy": round(run.best_val_accuracy, 4), "seconds": round(run.seconds, 1),
                   "epochs": len(run.history), "stopped": run.stopped}
            results["course_cnn"].append(row)
            print(f"course_cnn {k:>5}/class: {row['val_accuracy']:.1%} ({row['epochs']} epochs, {row['seconds']} s)",
                  file=sys.stderr)

    print("\n| setting | examples / class | val accuracy | fit time |")
    print("|---|---:|---:|---:|")
    for row in results["logistic"]:
        label = "logistic (all embedded)" if row["subset"] == "all" else "logistic"
        print(f"| {label} | {row['per_class']} | {row['val_accuracy_median']:.1%} | {row['fit_seconds_median']:.2f} s |")
    for row in results["dense"]:
        print(f"| dense (all embedded) | {row['per_class']} | {row['val_accuracy']:.1%} | {row['fit_seconds']:.0f} s |")
    for row in results["imprint"]:
        print(f"| imprint | {row['per_class']} | {row['val_accuracy_median']:.1%} | {row['fit_seconds_median'] * 1000:.1f} ms |")
    for row in results["course_cnn"]:
        print(f"| course_cnn from scratch | {row['per_class']} | {row['val_accuracy']:.1%} | {row['seconds']:.0f} s |")
    ext = results["extraction"]
    print(f"\nextraction: {ext['computed']} images embedded in {ext['seconds']} s, {ext['from_cache']} from the cache; "
          f"uncached: {ext['uncached_images_per_second_median']} images/s (median of 3 × {ext['uncached_sample']}, "
          "decoding + resizing 32→224 included)")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
