"""CIFAR-10 training benchmark: the course's CNN vs fast_resnet, and Keras's overhead.

Data: ``../shared/data/cifar10-train.tar.gz`` (50,000 JPEGs), split 45,000 /
5,000 (stratified, seed 0) — the validation images are never trained on.

Parts (run any combination):

``--overhead``
    Training-step throughput of the same network (``fast_resnet``'s defaults:
    widths 64/256/256 after a 2×2 whitening layer, batch 256, SGD + label
    smoothing) seven ways: Keras ``train_on_batch``; a PyTorch loop calling
    the Keras model (Keras's own torch ops); imagerec's training step (the
    Keras model's layers run as PyTorch ops on its own variables,
    :class:`imagerec.training.TorchGraph`); a hand-written plain PyTorch twin,
    NCHW and channels-last; and imagerec's step and the channels-last twin
    under bfloat16 autocast (``--compile`` adds the latter under
    ``torch.compile``). Rounds are interleaved and the median of
    ``--rounds`` is reported, with ratios to plain PyTorch (channels-last).

``--inference``
    Keras-eager vs ONNX Runtime prediction at batch 1 for MobileNet V2
    (float, 224×224, random weights — no download), through
    :func:`imagerec.formats.keras_onnx.export_keras` and ``OnnxBackend``.

``--run ARCH`` (``course_cnn`` and/or ``fast_resnet``)
    A real ``imagerec.train`` run with the architecture's defaults (the
    course's: Adam, batch 32, up to 30 epochs, early stopping), recording
    validation accuracy against wall-clock time and where the time goes
    (decode/cache, training steps, validation, checkpoints).
    ``--train-per-class`` / ``--val-per-class`` shrink the data for a short
    run, ``--minutes`` sets a time budget, ``--epochs`` overrides.

The full protocol of issue 3 (takes about 1.5 hours on two idle cores):

    python bench/cifar10_train.py --overhead --run course_cnn --run fast_resnet --minutes 60

A short version (what fits on a busy shared machine):

    python bench/cifar10_train.py --overhead --rounds 3 --steps 3 \\
        --run fast_resnet --train-per-class 400 --val-per-class 100 --epochs 4

Prints a table and writes ``bench/results/cifar10_train.json``.
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

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
ARCHIVE = SHARED / "data" / "cifar10-train.tar.gz"
RESULTS = ROOT / "bench" / "results" / "cifar10_train.json"


def machine_load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# -- Keras overhead -------------------------------------------------------------


def plain_torch_net(widths=(64, 256, 256), classes=10):
    """The same network as ``fast_resnet`` written directly in PyTorch: a 2×2
    whitening convolution of 24 filters (frozen), then per width conv → pool →
    BN → GELU → conv → BN → GELU, a global max-pool and a scaled linear head."""
    import torch
    from torch import nn

    def conv_bn(cin, cout, pool=False):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        norm = nn.BatchNorm2d(cout, momentum=0.4, eps=1e-5)
        norm.weight.requires_grad = False  # fast_resnet's batch norms have no scale
        layers += [norm, nn.GELU()]
        return nn.Sequential(*layers)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.whiten = nn.Conv2d(3, 24, 2)
            self.whiten.weight.requires_grad = False
            self.stages = nn.ModuleList()
            previous = 24
            for width in widths:
                self.stages.append(nn.Sequential(conv_bn(previous, width, pool=True), conv_bn(width, width)))
                previous = width
            self.head = nn.Linear(previous, classes, bias=False)

        def forward(self, x):
            x = nn.functional.gelu(self.whiten(x))
            for stage in self.stages:
                x = stage(x)
            return self.head(torch.amax(x, dim=(2, 3))) / 9

    return Net()


def measure_overhead(batch: int, steps: int, rounds: int, threads: int | None, compile_too: bool = False) -> dict:
    import keras
    import torch
    import torch.nn.functional as F

    from imagerec.architectures import fast_resnet, logits_model
    from imagerec.training import ModelRunner
    from imagerec.training.optim import make_loss, make_optimizer

    if threads:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, 32, 32, 3)).astype(np.uint8)
    x_float = pixels.astype(np.float32) / 255
    labels = rng.integers(0, 10, batch)
    y = torch.from_numpy(labels)

    model_a = fast_resnet(num_classes=10)
    model_a.get_layer("whiten").kernel.trainable = False
    model_a.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.2))
    y_onehot = np.eye(10, dtype=np.float32)[labels]

    def keras_fit():
        model_a.train_on_batch(x_float, y_onehot)

    model_b = fast_resnet(num_classes=10)
    logits_b = logits_model(model_b)
    model_b.get_layer("whiten").kernel.trainable = False  # as imagerec.train freezes it
    opt_b = torch.optim.SGD([v.value for v in model_b.trainable_variables], lr=0.05, momentum=0.9, nesterov=True)
    x_nhwc = torch.from_numpy(x_float)

    def keras_layers_torch_loop():
        opt_b.zero_grad(set_to_none=True)
        F.cross_entropy(logits_b(x_nhwc, training=True), y, label_smoothing=0.2).backward()
        opt_b.step()

    model_d = fast_resnet(num_classes=10)
    model_d.get_layer("whiten").kernel.trainable = False
    runner = ModelRunner(model_d, image_size=32, precision="float32")
    assert runner.engine == "torch-graph"
    opt_d = make_optimizer("sgd", *runner.parameter_groups(), lr=0.05, weight_decay=5e-4, momentum=0.9, norm_lr_scale=64.0)
    loss_d = make_loss("categorical_crossentropy", num_classes=10, label_smoothing=0.2, outputs_logits=True)

    def imagerec_step():
        opt_d.zero_grad(set_to_none=True)
        loss_d(runner.forward(pixels, training=True), y).backward()
        opt_d.step()

    model_e = fast_resnet(num_classes=10)
    model_e.get_layer("whiten").kernel.trainable = False
    runner_e = ModelRunner(model_e, image_size=32, precision="bfloat16")
    opt_e = make_optimizer("sgd", *runner_e.parameter_groups(), lr=0.05, weight_decay=5e-4, momentum=0.9, norm_lr_scale=64.0)

    def imagerec_step_bf16():
        opt_e.zero_grad(set_to_none=True)
        loss_d(runner_e.forward(pixels, training=True), y).backward()
        opt_e.step()

    def plain(channels_last: bool, bf16: bool = False, compiled: bool = False):
        net = plain_torch_net()
        x = torch.from_numpy(x_float).permute(0, 3, 1, 2).contiguous()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.05, momentum=0.9, nesterov=True)
        forward = torch.compile(net) if compiled else net

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = forward(x)
            F.cross_entropy(out.float(), y, label_smoothing=0.2).backward()
            opt.step()

        return step

    contenders = {
        "keras train_on_batch": keras_fit,
        "torch loop calling the Keras model": keras_layers_torch_loop,
        "imagerec (TorchGraph over Keras variables)": imagerec_step,
        "plain PyTorch NCHW": plain(False),
        "plain PyTorch channels-last": plain(True),
        "imagerec, bfloat16 autocast": imagerec_step_bf16,
        "plain PyTorch channels-last, bfloat16 autocast": plain(True, bf16=True),
    }
    if compile_too:  # compiling takes about a minute on two cores: only when asked
        contenders["plain PyTorch channels-last, bfloat16, torch.compile"] = plain(True, bf16=True, compiled=True)
    for step in contenders.values():  # warm-up: first calls build kernels and caches
        step()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, step in contenders.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            samples[name].append(batch * steps / (time.perf_counter() - start))
    baseline = statistics.median(samples["plain PyTorch channels-last"])
    return {
        name: {
            "images_per_second": statistics.median(values),
            "runs": values,
            "ratio_to_plain_pytorch_channels_last": statistics.median(values) / baseline,
        }
        for name, values in samples.items()
    }


def measure_inference(images: int, threads: int | None) -> dict:
    import keras
    import torch

    from imagerec.backends.onnx import OnnxBackend
    from imagerec.formats.keras_onnx import export_keras
    from imagerec.core.preprocessing import normalize

    if threads:
        torch.set_num_threads(threads)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    with tempfile.TemporaryDirectory() as work:
        tick = time.perf_counter()
        path = export_keras(model, Path(work) / "mobilenet_v2.onnx")
        export_seconds = time.perf_counter() - tick
        backend = OnnxBackend(path, normalization="tf", num_threads=threads)
        pixels = np.random.default_rng(0).integers(0, 256, (images, 224, 224, 3)).astype(np.uint8)

        def keras_eager(batch):
            with torch.no_grad():
                return model(normalize(batch, "tf"), training=False)

        rates = {}
        for name, run in (("keras eager (torch backend)", keras_eager), ("onnx runtime", backend.run)):
            run(pixels[:1])  # warm-up
            samples = []
            for image in pixels:
                start = time.perf_counter()
                run(image[None])
                samples.append(time.perf_counter() - start)
            rates[name] = 1.0 / statistics.median(samples)
        agree = float(np.abs(backend.run(pixels[:2])["scores"] - keras_eager(pixels[:2]).numpy()).max())
    return {
        "model": "MobileNetV2 float 224 (random weights)",
        "batch": 1,
        "export_seconds": export_seconds,
        "images_per_second": rates,
        "ratio_onnx_to_keras": rates["onnx runtime"] / rates["keras eager (torch backend)"],
        "max_score_difference": agree,
    }


# -- full training runs ------------------------------------------------------------


def run_training(arch: str, args: argparse.Namespace, work: Path) -> dict:
    import imagerec
    from imagerec.data import load_dataset
    from imagerec.training import resolve_precision

    started = time.perf_counter()
    data = load_dataset(ARCHIVE)
    train, val = data.split(0.1, seed=0)  # 45,000 / 5,000
    if args.train_per_class:
        train = train.subset(args.train_per_class, seed=0)
    if args.val_per_class:
        val = val.subset(args.val_per_class, seed=0)
    from imagerec.core.preprocessing import Preprocessing

    decode_start = time.perf_counter()
    pre = Preprocessing(size=(32, 32), normalization="unit")
    train.arrays(pre)
    val.arrays(pre)
    decode_seconds = time.perf_counter() - decode_start
    curve: list[dict] = []

    plans: list[dict] = []

    def on_event(event: str, info: dict) -> None:
        if event == "plan":
            plans.append(dict(info))
        if event == "epoch":
            curve.append({k: info.get(k) for k in ("epoch", "elapsed", "loss", "accuracy", "val_accuracy",
                                                    "images_per_second", "train_seconds", "val_seconds")})
            print(f"  {arch} epoch {info['epoch']}: val_acc {info.get('val_accuracy', 0):.4f} "
                  f"at {info['elapsed'] / 60:.1f} min, {info['images_per_second']:.0f} img/s", flush=True)

    options = {}
    if arch == "fast_resnet" and args.widths:
        options["widths"] = tuple(int(w) for w in args.widths.split(","))
    if arch == "fast_resnet":
        options.update(cutout=args.cutout, tta_shift=args.tta_shift)
    result = imagerec.train(
        train, val_data=val, arch=arch, output=work / f"{arch}.keras", epochs=args.epochs,
        # The budget counts this run's decoding above, as the wall clock reported below does.
        max_minutes=None if args.minutes is None else args.minutes - (time.perf_counter() - started) / 60,
        verbose=False, callbacks=[on_event], threads=args.threads,
        batch_size=args.batch_size if arch == "fast_resnet" else None, precision=args.precision, **options,
    )
    total = time.perf_counter() - started
    train_seconds = sum(h["train_seconds"] for h in result.history)
    val_seconds = sum(h.get("val_seconds", 0) for h in result.history)
    seen = sum(h["images_per_second"] * h["train_seconds"] for h in result.history)
    # Inference speed of the exported model (ONNX Runtime) on the validation images.
    recognizer = result.recognizer()
    pixels = np.asarray(val.arrays(pre))[:1000]
    tick = time.perf_counter()
    for start in range(0, len(pixels), 250):
        recognizer.predict_proba(np.ascontiguousarray(pixels[start:start + 250]))
    onnx_ips = len(pixels) / (time.perf_counter() - tick)
    tta = compare_tta(result.path, val, pre) if args.compare_tta else None
    return {
        "arch": arch,
        "train_images": len(train),
        "val_images": len(val),
        "config": result.config.to_dict(),
        "engine": "torch-graph" if result.history else None,
        "precision": resolve_precision(result.config.precision),
        "best_val_accuracy": result.best_val_accuracy,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped": result.stopped,
        "wall_clock_seconds": total,
        "time": {
            "decode_and_cache_seconds": decode_seconds,
            "train_step_seconds": train_seconds,
            "validation_seconds": val_seconds,
            "other_seconds (setup, checkpoints, export)": total - decode_seconds - train_seconds - val_seconds,
        },
        "train_images_per_second": seen / max(1e-9, train_seconds),
        "onnx_inference_images_per_second (with flip TTA)" if result.config.tta else "onnx_inference_images_per_second": onnx_ips,
        "curve": curve,
        "plans (--minutes)": plans,
        "tta_comparison": tta,
    }


def compare_tta(model_path: Path, val, pre) -> dict:
    """Validation accuracy and ONNX Runtime images/s of one trained model under each test-time augmentation."""
    from imagerec.backends.onnx import OnnxBackend
    from imagerec.formats.keras_onnx import export_keras

    pixels = np.asarray(val.arrays(pre))
    targets = np.asarray(val.targets)
    out = {}
    for name, flip, shift in [("none", False, 0), ("flip", True, 0), ("flip+shift1", True, 1)]:
        backend = OnnxBackend(export_keras(model_path, flip_average=flip, shift_average=shift), normalization="unit")
        tick = time.perf_counter()
        scores = np.concatenate([backend.run(np.ascontiguousarray(pixels[i:i + 250]), ("scores",))["scores"]
                                 for i in range(0, len(pixels), 250)])
        seconds = time.perf_counter() - tick
        out[name] = {"val_accuracy": float((scores.argmax(1) == targets).mean()),
                     "images_per_second": len(pixels) / seconds}
        print(f"  TTA {name}: {out[name]['val_accuracy']:.4f} ({out[name]['images_per_second']:.0f} img/s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overhead", action="store_true", help="Measure the Keras-vs-PyTorch training step.")
    parser.add_argument("--inference", action="store_true", help="Keras eager vs ONNX Runtime, MobileNet V2, batch 1.")
    parser.add_argument("--images", type=int, default=20, help="Images timed per inference engine.")
    parser.add_argument("--run", action="append", default=[], choices=["course_cnn", "fast_resnet"])
    parser.add_argument("--batch", type=int, default=256, help="Batch size of the overhead measurement.")
    parser.add_argument("--steps", type=int, default=5, help="Steps per overhead sample.")
    parser.add_argument("--compile", action="store_true",
                        help="--overhead also times the channels-last bfloat16 twin under torch.compile.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved overhead samples (median reported).")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: all cores).")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="Training arithmetic (auto: bfloat16 on CPUs with bfloat16 matrix units).")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs (default: the architecture's).")
    parser.add_argument("--minutes", type=float, default=None, help="Time budget per training run: the epochs are fitted to it (with --epochs, at most that many).")
    parser.add_argument("--batch-size", type=int, default=None, help="fast_resnet batch size.")
    parser.add_argument("--widths", default=None, help="fast_resnet stage widths, e.g. 64,256,256.")
    parser.add_argument("--cutout", type=int, default=0, help="fast_resnet cutout square side (0: off).")
    parser.add_argument("--tta-shift", type=int, default=0, help="Train with this test-time shift (validation uses it).")
    parser.add_argument("--compare-tta", action="store_true",
                        help="After training, score the best model's export with flip-only and with flip + 1-pixel shifts.")
    parser.add_argument("--train-per-class", type=int, default=None, help="Use a subset of the 45,000.")
    parser.add_argument("--val-per-class", type=int, default=None, help="Use a subset of the 5,000.")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Where the JSON goes.")
    args = parser.parse_args()
    if not (args.overhead or args.inference or args.run):
        parser.error("nothing to do: pass --overhead, --inference and/or --run ARCH")
    if args.run and not ARCHIVE.is_file():
        sys.exit(f"{ARCHIVE} not found (set IMAGEREC_SHARED)")
    import torch

    report: dict = {
        "machine": {"cores": os.cpu_count(), "torch_threads": args.threads or torch.get_num_threads(),
                    "load_average_at_start": machine_load(), "note": "shared machine: other work was running"},
        "args": vars(args),
    }
    if args.overhead:
        print(f"training-step throughput, batch {args.batch} (load average {machine_load()})", flush=True)
        report["overhead"] = measure_overhead(args.batch, args.steps, args.rounds, args.threads, args.compile)
        print(f"{'step':46s} {'images/s':>9s} {'vs plain CL':>11s}")
        for name, row in report["overhead"].items():
            print(f"{name:46s} {row['images_per_second']:9.1f} {row['ratio_to_plain_pytorch_channels_last']:10.2f}x")
    if args.inference:
        print(f"inference at batch 1 (load average {machine_load()})", flush=True)
        report["inference"] = measure_inference(args.images, args.threads)
        for name, rate in report["inference"]["images_per_second"].items():
            print(f"{name:46s} {rate:9.1f} images/s")
        print(f"ONNX Runtime / Keras eager: {report['inference']['ratio_onnx_to_keras']:.1f}x, "
              f"max score difference {report['inference']['max_score_difference']:.1e}")
    if args.run:
        report["runs"] = []
        with tempfile.TemporaryDirectory() as work:
            for arch in args.run:
                print(f"training {arch} (load average {machine_load()})", flush=True)
                report["runs"].append(run_training(arch, args, Path(work)))
        print(f"\n{'arch':12s} {'train':>6s} {'val':>5s} {'epochs':>6s} {'minutes':>7s} {'img/s':>6s} {'val acc':>8s}")
        for row in report["runs"]:
            print(f"{row['arch']:12s} {row['train_images']:6d} {row['val_images']:5d} {row['epochs_run']:6d} "
                  f"{row['wall_clock_seconds'] / 60:7.1f} {row['train_images_per_second']:6.0f} "
                  f"{row['best_val_accuracy']:8.2%}")
            print("   time: " + ", ".join(f"{k} {v:.0f}s" for k, v in row["time"].items()))
    report["machine"]["load_average_at_end"] = machine_load()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
