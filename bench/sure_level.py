"""How often an answer is right, by its probability: the measurement behind "not sure" (``SURE_LEVEL``).

imagerec marks an answer "not sure" when its probability is under
:data:`imagerec.answers.SURE_LEVEL` (50 %). This measures whether that
level means what a person reads into it — answers below it are right about
as often as a coin toss or less, answers above it mostly right — on
labelled photos, for two kinds of model:

``learned`` — a recognizer taught with ``imagerec.learn``'s default head
(logistic, balanced class weights) on frozen ``mobilenet_v2`` embeddings of
``--per-class`` CIFAR-10 training images per class, answering
``--val-per-class`` held-out images per class (the fixed 45,000 / 5,000
split of ``bench/transfer_cifar10.py``).

``zoo`` — ``mobilenet_v2`` itself (ImageNet-1k, 1,000 classes) on the same
held-out CIFAR-10 photos. An answer counts as right when its ImageNet class
lies under the CIFAR-10 class in WordNet (``tabby`` under ``cat``; the
classes are read through imagerec's own search hierarchy, so "automobile"
means every kind of car); photos whose class reaches no ImageNet class are
left out. CIFAR-10's 32-pixel photos are a hard test for a 224-pixel
model, which is the point: many answers are uncertain.

For each model: the answers in probability bands, with the share of
answers in the band and how many of them were right, and accuracy under and
over the level::

    .venv/bin/python bench/sure_level.py --per-class 200 --val-per-class 100

Writes bench/results/sure_level.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from class_weight import split  # noqa: E402
from imagerec.answers import SURE_LEVEL  # noqa: E402

BANDS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0 + 1e-9)


def reliability(best: np.ndarray, right: np.ndarray) -> dict:
    """Answers per probability band and their accuracy; accuracy under and over ``SURE_LEVEL``."""
    bands = []
    for low, high in zip(BANDS[:-1], BANDS[1:]):
        inside = (best >= low) & (best < high)
        bands.append({"from": low, "to": min(high, 1.0), "share": float(inside.mean()),
                      "answers": int(inside.sum()),
                      "accuracy": float(right[inside].mean()) if inside.any() else None})
    under = best < SURE_LEVEL
    return {
        "answers": int(len(best)),
        "bands": bands,
        "not_sure_share": float(under.mean()),
        "accuracy_not_sure": float(right[under].mean()) if under.any() else None,
        "accuracy_sure": float(right[~under].mean()) if (~under).any() else None,
        "accuracy_all": float(right.mean()),
    }


def learned_answers(dataset, targets, train_idx, val_idx, embeddings) -> tuple[np.ndarray, np.ndarray]:
    """Top probability and rightness of the default learned head on the held-out photos."""
    from imagerec.transfer.heads import LogisticHead

    head = LogisticHead(class_weight="balanced").fit(embeddings["train"], targets[train_idx], dataset.classes)
    probabilities = head.predict_proba(embeddings["val"])
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == targets[val_idx]


def zoo_answers(dataset, targets, val_idx, probabilities: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Top probability and rightness (top class under the CIFAR-10 class in WordNet) of the zoo model."""
    from imagerec.library.hierarchy import Hierarchy

    hierarchy = Hierarchy()
    under = {name: set(hierarchy.match(name, labels)) for name in dataset.classes}
    covered = np.array([bool(under[dataset.classes[targets[i]]]) for i in val_idx])
    top = probabilities.argmax(axis=1)
    right = np.array([int(top[k]) in under[dataset.classes[targets[i]]] for k, i in enumerate(val_idx)])
    print("CIFAR-10 classes with no ImageNet class under them: "
          f"{[name for name, found in under.items() if not found] or 'none'}", file=sys.stderr)
    return probabilities.max(axis=1)[covered], right[covered]


def run(args) -> dict:
    import imagerec
    from imagerec.transfer.backbones import default_frame, get_backbone
    from imagerec.transfer.features import extract

    dataset, targets, train_idx, val_idx = split(args)  # class_weight's split: the same photos

    backbone = get_backbone("mobilenet_v2")
    backbone = backbone.framed(default_frame(backbone.preprocessing))
    started = time.perf_counter()
    wanted = np.concatenate([train_idx, val_idx])
    extraction = extract([dataset.paths[i] for i in wanted], backbone, progress=None)
    vectors = extraction.embeddings[:, 0]
    embeddings = {"train": vectors[: len(train_idx)], "val": vectors[len(train_idx):]}
    print(f"embedded {len(wanted)} photos in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    results = {"learned": reliability(*learned_answers(dataset, targets, train_idx, val_idx, embeddings))}

    model = imagerec.load("mobilenet_v2")
    pixels = dataset.take(val_idx).arrays(model.preprocessing)
    probabilities = model.predict_proba(pixels)
    results["zoo"] = reliability(*zoo_answers(dataset, targets, val_idx, probabilities, list(model.labels)))
    return {
        "protocol": {"data": args.data, "per_class": args.per_class, "val_per_class": args.val_per_class,
                     "sure_level": SURE_LEVEL, "learned": "logistic head, balanced, mobilenet_v2 embeddings",
                     "zoo": "mobilenet_v2 int8; right = top ImageNet class under the CIFAR-10 class in WordNet"},
        "results": results,
    }


def table(result: dict) -> str:
    lines = []
    for name, r in result["results"].items():
        lines += [f"**{name}** ({r['answers']} answers; accuracy {r['accuracy_all']:.1%}; "
                  f"under {SURE_LEVEL:.0%}: {r['not_sure_share']:.1%} of answers, right "
                  f"{r['accuracy_not_sure'] or 0:.1%}; at or over: right {r['accuracy_sure'] or 0:.1%})", "",
                  "| probability | share of answers | right |", "|---|---:|---:|"]
        for band in r["bands"]:
            right = "–" if band["accuracy"] is None else f"{band['accuracy']:.1%}"
            lines.append(f"| {band['from']:.0%}–{band['to']:.0%} | {band['share']:.1%} | {right} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10-train.tar.gz"))
    parser.add_argument("--per-class", type=int, default=200, help="training photos per class (learned model)")
    parser.add_argument("--val-per-class", type=int, default=100, help="held-out photos per class")
    args = parser.parse_args(argv)
    result = run(args)
    out = ROOT / "bench" / "results" / "sure_level.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
