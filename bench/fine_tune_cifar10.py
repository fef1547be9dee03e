"""Fine-tuning a pretrained Keras MobileNetV2 on a CIFAR-10 subset: the gain over its frozen head.

Protocol (issue 4, "report the gain over the frozen head"): ``--per-class``
images of each class drawn (seeds 1, 2, …, one per ``--draws``) from the training part of the fixed
45,000 / 5,000 split of ../shared/data/cifar10-train.tar.gz, upscaled to
``--size`` pixels. :func:`imagerec.transfer.finetune.fine_tune` holds out a
stratified 20 % of them, learns the frozen logistic head on the rest,
unfreezes the last ``--layers`` layers and trains them. Both accuracies are
on the same held-out images. The weights are Keras's MobileNetV2 ImageNet
weights rebuilt from the zoo's LiteRT file (``weights="zoo"``), since Keras's
own cannot be downloaded here; ``--weights imagenet`` uses Keras's cache.

    .venv/bin/python bench/fine_tune_cifar10.py --per-class 250 --size 160 --layers 20 --epochs 5 --draws 3

Writes bench/results/fine_tune_cifar10.json.
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
sys.path.insert(0, str(ROOT / "bench"))

from transfer_cifar10 import per_class_indices  # noqa: E402

from imagerec.data import load_dataset  # noqa: E402
from imagerec.transfer.finetune import fine_tune  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10-train.tar.gz"))
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--size", type=int, default=160, help="input side in pixels (CIFAR's 32 upscaled)")
    parser.add_argument("--layers", type=int, default=20, help="layers with weights to unfreeze")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weights", default="zoo")
    parser.add_argument("--draws", type=int, default=3, help="random subsets (and held-out splits); medians reported")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "fine_tune_cifar10.json"))
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data)
    train_pool, _ = dataset.split_indices(0.1, seed=0)
    runs = []
    for draw in range(args.draws):
        subset = dataset.take(per_class_indices(dataset.targets, train_pool, args.per_class, seed=1 + draw))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            result = fine_tune(subset, backbone="keras:MobileNetV2", weights=args.weights, input_size=args.size,
                               layers=args.layers, epochs=args.epochs, lr=args.lr, seed=draw,
                               output=Path(folder) / "tuned.keras", verbose=False)
        seconds = time.perf_counter() - started
        runs.append({**{k: v for k, v in result.to_dict().items() if k not in ("path", "skipped", "classes")},
                     "seconds_total": round(seconds, 1), "seconds_training": round(result.train.seconds, 1),
                     "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in epoch.items()}
                                 for epoch in result.train.history]})
        print(f"draw {draw}: frozen {result.frozen_val_accuracy:.1%} → fine-tuned {result.fine_tuned_val_accuracy:.1%} "
              f"({result.gain:+.1%}) on {result.val_images} held-out images; {result.train.seconds:.0f} s of "
              f"training, {seconds:.0f} s in all", file=sys.stderr)
    median = lambda key: statistics.median(run[key] for run in runs)  # noqa: E731
    row = {"protocol": {"per_class": args.per_class, "size": args.size, "layers": args.layers, "epochs": args.epochs,
                        "lr": args.lr, "weights": args.weights, "draws": args.draws},
           "frozen_val_accuracy_median": median("frozen_val_accuracy"),
           "fine_tuned_val_accuracy_median": median("fine_tuned_val_accuracy"),
           "gain_median": median("gain"), "seconds_training_median": median("seconds_training"), "runs": runs}
    print(f"median of {args.draws}: frozen {row['frozen_val_accuracy_median']:.1%} → fine-tuned "
          f"{row['fine_tuned_val_accuracy_median']:.1%}, gain {row['gain_median']:+.1%}; "
          f"{row['seconds_training_median']:.0f} s of training ({args.layers} layers, {args.epochs} epochs, "
          f"{args.size} px)")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
