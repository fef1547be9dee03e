"""Class weighting on imbalanced data: per-class recall and macro-F1 with ``class_weight`` "none" and "balanced".

Protocol (issue 19): ../shared/data/cifar10-train.tar.gz, the fixed stratified
45,000 / 5,000 split of ``bench/transfer_cifar10.py`` (``split_indices(0.1,
seed=0)``). Training: ``--per-class`` images of every class, except one class
("the cut class") cut to ``--cut`` of them (10 % by default). Measured on a
*balanced* held-out set (``--val-per-class`` of every class, from the 5,000):
accuracy, macro-F1, the cut class's recall and precision, and the accuracy
that would be seen if the photos to recognise came in the training
proportions ("accuracy at training mix": the per-class recalls weighted by
the training counts), so the cost of weighting on a skewed stream is shown too.

Two parts:

``learn`` — frozen ``mobilenet_v2`` embeddings (cached, so later runs start at
once), the logistic and dense heads fitted with each setting, for several
cut classes and draws of the kept minority images; medians reported::

    .venv/bin/python bench/class_weight.py learn

``train`` — a short ``imagerec.train`` run from scratch per setting
(``fast_resnet`` at small width, 32×32, a few epochs), the same validation
images choosing the best epoch and measured (stated, as it favours neither)::

    .venv/bin/python bench/class_weight.py train --per-class 1000 --epochs 8

Writes bench/results/class_weight_<part>.json and prints a Markdown table.
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

SETTINGS = ("none", "balanced")


def per_class_indices(targets: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` random members of every class among ``pool`` (indices into targets)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(pool[targets[pool] == c], k, replace=False) for c in np.unique(targets[pool])]
    return np.sort(np.concatenate(chosen))


def cut_class(targets: np.ndarray, idx: np.ndarray, cls: int, keep: int, seed: int) -> np.ndarray:
    """``idx`` with only ``keep`` random members of class ``cls`` left."""
    rng = np.random.default_rng(seed)
    members = idx[targets[idx] == cls]
    return np.sort(np.concatenate([idx[targets[idx] != cls], rng.choice(members, keep, replace=False)]))


def scores(y_true: np.ndarray, y_pred: np.ndarray, cls: int, train_counts: np.ndarray) -> dict:
    """The figures of one fit on the balanced held-out set."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    labels = np.arange(len(train_counts))
    recalls = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "cut_recall": float(recalls[cls]),
        "cut_precision": float(precision_score(y_true, y_pred, labels=[cls], average="macro", zero_division=0)),
        "min_recall": float(recalls.min()),
        "accuracy_at_training_mix": float((recalls * train_counts).sum() / train_counts.sum()),
    }


def median_row(rows: list[dict]) -> dict:
    return {key: round(statistics.median(r[key] for r in rows), 4) for key in rows[0]}


def split(args) -> tuple:
    dataset = load_dataset(args.data)
    train_pool, val_pool = dataset.split_indices(0.1, seed=0)
    targets = np.asarray(dataset.targets)
    train_idx = per_class_indices(targets, train_pool, args.per_class, seed=1)
    val_idx = per_class_indices(targets, val_pool, args.val_per_class, seed=2)
    return dataset, targets, train_idx, val_idx


def run_learn(args) -> dict:
    from imagerec.transfer.backbones import default_frame, get_backbone
    from imagerec.transfer.features import extract
    from imagerec.transfer.heads import DenseHead, LogisticHead

    dataset, targets, train_idx, val_idx = split(args)
    backbone = get_backbone(args.backbone)
    backbone = backbone.framed(default_frame(backbone.preprocessing))
    wanted = np.concatenate([train_idx, val_idx])
    started = time.perf_counter()
    extraction = extract([dataset.paths[i] for i in wanted], backbone, progress=None)
    print(f"embedded {len(wanted)} images in {time.perf_counter() - started:.0f} s "
          f"({extraction.cached} from the cache)", file=sys.stderr)
    position = {int(i): p for p, i in enumerate(wanted)}
    embeddings = extraction.embeddings[:, 0]

    def rows_for(idx):
        return embeddings[[position[int(i)] for i in idx]]

    X_val, y_val = rows_for(val_idx), targets[val_idx]
    heads = {"logistic": lambda cw: LogisticHead(class_weight=cw),
             "dense": lambda cw: DenseHead(class_weight=cw, epochs=args.dense_epochs)}
    heads = {name: make for name, make in heads.items() if name in args.heads}
    raw: dict = {name: {cw: [] for cw in SETTINGS} for name in heads}
    keep = max(1, round(args.per_class * args.cut))
    for cls_name in args.cut_classes:
        cls = dataset.classes.index(cls_name)
        for draw in range(args.draws):
            idx = cut_class(targets, train_idx, cls, keep, seed=100 + draw)
            counts = np.bincount(targets[idx], minlength=len(dataset.classes))
            for name, make in heads.items():
                for cw in SETTINGS:
                    tick = time.perf_counter()
                    head = make(cw).fit(rows_for(idx), targets[idx], dataset.classes)
                    row = scores(y_val, head.predict_proba(X_val).argmax(axis=1), cls, counts)
                    row["fit_seconds"] = time.perf_counter() - tick
                    raw[name][cw].append({"cut_class": cls_name, "draw": draw, **row})
                    print(f"{name:8} {cw:8} cut {cls_name:10} draw {draw}: macro-F1 {row['macro_f1']:.3f}, "
                          f"cut recall {row['cut_recall']:.3f}, accuracy {row['accuracy']:.3f} "
                          f"({row['fit_seconds']:.1f} s)", file=sys.stderr)
    summary = {name: {cw: median_row([{k: v for k, v in r.items() if k not in ("cut_class", "draw")} for r in rows])
                      for cw, rows in by_setting.items()} for name, by_setting in raw.items()}
    return {
        "protocol": {"data": args.data, "backbone": args.backbone, "per_class": args.per_class,
                     "cut_to": keep, "cut_classes": args.cut_classes, "draws": args.draws,
                     "val_per_class": args.val_per_class, "test": "balanced held-out images (of the 5,000)"},
        "median": summary, "runs": raw,
        "cpu": f"{os.cpu_count()} cores shared with other jobs during the run",
    }


def run_train(args) -> dict:
    import imagerec

    dataset, targets, train_idx, val_idx = split(args)
    cls = dataset.classes.index(args.cut_classes[0])
    keep = max(1, round(args.per_class * args.cut))
    idx = cut_class(targets, train_idx, cls, keep, seed=100)
    counts = np.bincount(targets[idx], minlength=len(dataset.classes))
    val_set = dataset.take(val_idx)
    results: dict = {}
    for cw in SETTINGS:
        with tempfile.TemporaryDirectory() as folder:
            run = imagerec.train(dataset.take(idx), arch=args.arch, val_data=val_set, image_size=32,
                                 epochs=args.epochs, class_weight=cw, output=Path(folder) / "m.keras",
                                 verbose=False, seed=0, **({"widths": tuple(args.widths)} if args.arch == "fast_resnet" else {}))
            model = imagerec.load(run.path)
            pixels = val_set.arrays(model.preprocessing)
            predicted = model.predict_proba(pixels).argmax(axis=1)
        row = scores(targets[val_idx], predicted, cls, counts)
        row.update(seconds=round(run.seconds, 1), epochs=len(run.history), best_epoch=run.best_epoch)
        results[cw] = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        print(f"train {cw:8}: macro-F1 {row['macro_f1']:.3f}, cut recall {row['cut_recall']:.3f}, "
              f"accuracy {row['accuracy']:.3f} ({run.seconds:.0f} s)", file=sys.stderr)
    return {
        "protocol": {"data": args.data, "arch": args.arch, "widths": args.widths if args.arch == "fast_resnet" else None,
                     "epochs": args.epochs, "image_size": 32, "per_class": args.per_class, "cut_to": keep,
                     "cut_class": args.cut_classes[0], "val_per_class": args.val_per_class,
                     "note": "one run per setting, seed 0; the validation images also pick the best epoch"},
        "results": results,
        "cpu": f"{os.cpu_count()} cores shared with other jobs during the run",
    }


def table(result: dict, part: str) -> str:
    lines = ["| model | class_weight | macro-F1 | cut-class recall | cut-class precision | lowest recall "
             "| accuracy (balanced test) | accuracy at training mix |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    groups = result["median"] if part == "learn" else {args_arch(result): result["results"]}
    for name, by_setting in groups.items():
        for cw, r in by_setting.items():
            lines.append(f"| {name} | {cw} | {r['macro_f1']:.3f} | {r['cut_recall']:.1%} | {r['cut_precision']:.1%} "
                         f"| {r['min_recall']:.1%} | {r['accuracy']:.1%} | {r['accuracy_at_training_mix']:.1%} |")
    return "\n".join(lines)


def args_arch(result: dict) -> str:
    return result["protocol"]["arch"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("learn", "train"))
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10-train.tar.gz"))
    parser.add_argument("--per-class", type=int, default=None,
                        help="training images per class before the cut (default: 500 for learn, 1000 for train)")
    parser.add_argument("--cut", type=float, default=0.1, help="share of the cut class kept")
    parser.add_argument("--cut-classes", nargs="+", default=None,
                        help="classes cut in turn (learn; default: cat bird truck); train uses the first (default: cat)")
    parser.add_argument("--draws", type=int, default=2, help="draws of the kept minority images per cut class (learn)")
    parser.add_argument("--val-per-class", type=int, default=200, help="balanced held-out images per class (≤ 500)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--heads", nargs="+", default=["logistic", "dense"])
    parser.add_argument("--dense-epochs", type=int, default=30)
    parser.add_argument("--arch", default="fast_resnet")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 64])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.per_class is None:
        args.per_class = 500 if args.part == "learn" else 1000
    if args.cut_classes is None:
        args.cut_classes = ["cat", "bird", "truck"] if args.part == "learn" else ["cat"]
    result = run_learn(args) if args.part == "learn" else run_train(args)
    print(table(result, args.part))
    out = Path(args.output or ROOT / "bench" / "results" / f"class_weight_{args.part}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
