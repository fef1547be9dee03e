"""Keras Applications in imagerec: ONNX Runtime vs Keras ``predict`` (torch backend), and the one-time conversion.

For each zoo model backed by a Keras application (``vgg16``, ``resnet50``,
``efficientnet_v2_b0``, ``efficientnet_v2_s``, ``convnext_tiny``,
``mobilenet_v3_large``), with random weights (speed does not depend on the
weights, and the real ones cannot be downloaded everywhere):

- conversion: seconds to build the network and export it as ONNX (what the
  first ``imagerec.load(name)`` pays once, besides the download and the
  check on one image); the export is compared with Keras here on the
  benchmark's own batch instead — random weights can saturate a softmax
  (EfficientNetV2 S), so the row records the largest difference of the
  embedding (relative to its largest value) and of the scores;
- ms/image at batch 1 and batch 32 through imagerec's ONNX Runtime backend
  (normalisation included) and through Keras ``model.predict`` on the torch
  backend, measured in one run, interleaved, median of ``--rounds``.

    python bench/keras_apps.py --models mobilenet_v3_large resnet50 --rounds 3

Prints a table and writes ``bench/results/keras_apps.json`` (rows of models not
measured in this run are kept from the file). Each row records the machine's
load average (1 min) before and after it: the machine is shared, so only
ratios measured within one row are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("vgg16", "resnet50", "efficientnet_v2_b0", "efficientnet_v2_s", "convnext_tiny", "mobilenet_v3_large")


def measure(name: str, rounds: int, threads: int | None) -> dict:
    from imagerec import zoo
    from imagerec.backends.onnx import OnnxBackend
    from imagerec.core.keras_backend import import_keras
    from imagerec.formats.keras_onnx import export_keras

    keras = import_keras()
    spec = zoo.get(name)
    height, width = spec.input_size
    start = time.perf_counter()
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, spec.application)(weights=None, include_top=True, input_shape=(height, width, 3))
    built = time.perf_counter() - start
    onnx_path = Path(tempfile.mkdtemp()) / f"{name}.onnx"
    start = time.perf_counter()
    export_keras(model, onnx_path, embedding_layer=spec.embedding_tensor, check=False)
    exported = time.perf_counter() - start
    backend = OnnxBackend(onnx_path, normalization=spec.preprocessing.normalization, num_threads=threads)
    normalize = backend._normalize.numpy  # the same float input Keras gets  # noqa: SLF001 (bench only)
    rng = np.random.default_rng(0)
    result = {"model": name, "input": [height, width], "build_s": round(built, 2), "export_s": round(exported, 2),
              "load_before": round(os.getloadavg()[0], 2)}
    result.update(agreement(keras, model, backend, spec, rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)))
    for batch_size in (1, 32):
        batch = rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8)
        backend.run(batch)  # warm-up
        model.predict(normalize(batch), batch_size=batch_size, verbose=0)
        onnx_times, keras_times = [], []
        for _ in range(rounds):  # interleaved, so a busy moment on the shared machine hits both
            t = time.perf_counter()
            backend.run(batch)
            onnx_times.append((time.perf_counter() - t) * 1000 / batch_size)
            t = time.perf_counter()
            model.predict(normalize(batch), batch_size=batch_size, verbose=0)
            keras_times.append((time.perf_counter() - t) * 1000 / batch_size)
        onnx_ms, keras_ms = statistics.median(onnx_times), statistics.median(keras_times)
        result[f"onnx_ms_b{batch_size}"] = round(onnx_ms, 2)
        result[f"keras_ms_b{batch_size}"] = round(keras_ms, 2)
        result[f"speedup_b{batch_size}"] = round(keras_ms / onnx_ms, 2)
    result["load_after"] = round(os.getloadavg()[0], 2)
    return result


def agreement(keras, model, backend, spec, batch: np.ndarray) -> dict:
    """How far ONNX Runtime is from Keras on ``batch``: embedding (relative) and scores (absolute)."""
    both = keras.Model(model.inputs, [model.get_layer(spec.embedding_tensor).output, model.outputs[0]])
    embedding, scores = (keras.ops.convert_to_numpy(x) for x in both(backend._normalize.numpy(batch)))  # noqa: SLF001
    got = backend.run(batch, ("embedding", "scores"))
    scale = max(1.0, float(np.abs(embedding).max()))
    return {"embedding_rel_diff": float(np.abs(embedding.reshape(len(batch), -1) - got["embedding"]).max() / scale),
            "scores_max_diff": float(np.abs(scores.reshape(len(batch), -1) - got["scores"]).max())}


def merged(previous: Path, rows: list[dict]) -> list[dict]:
    """``rows``, then the rows of ``previous`` (an earlier run's file) for models not measured now."""
    try:
        earlier = json.loads(previous.read_text())["models"]
    except (OSError, ValueError, KeyError):
        earlier = []
    measured = {row["model"] for row in rows}
    order = {name: index for index, name in enumerate(MODELS)}
    kept = rows + [row for row in earlier if row.get("model") not in measured]
    return sorted(kept, key=lambda row: order.get(row["model"], len(order)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "keras_apps.json")
    args = parser.parse_args()
    import torch

    info = {"rounds": args.rounds, "threads": args.threads, "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "note": "ms per image, median of interleaved rounds; random weights"}
    rows = []
    for name in args.models:
        try:
            row = measure(name, args.rounds, args.threads)
        except Exception as exc:  # one model's failure is a result too; the others are still measured
            print(f"{name:20s} failed: {str(exc).splitlines()[0][:200]}", flush=True)
            continue
        rows.append(row)
        args.output.parent.mkdir(parents=True, exist_ok=True)  # written after each model: nothing measured is lost
        args.output.write_text(json.dumps({"settings": info, "models": merged(args.output, rows)}, indent=1) + "\n")
        print(f"{name:20s} build {row['build_s']:6.1f} s  export {row['export_s']:6.1f} s  "
              f"b1: onnx {row['onnx_ms_b1']:7.1f} ms keras {row['keras_ms_b1']:7.1f} ms ({row['speedup_b1']}x)  "
              f"b32: onnx {row['onnx_ms_b32']:7.1f} ms keras {row['keras_ms_b32']:7.1f} ms ({row['speedup_b32']}x)  "
              f"embedding diff {row['embedding_rel_diff']:.1e}  load {row['load_before']} -> {row['load_after']}",
              flush=True)


if __name__ == "__main__":
    main()
