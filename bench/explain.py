"""Seconds per explanation (``Recognizer.explain``) per model kind and method (occlusion, Grad-CAM).

Model kinds, each explaining the same shared photos:

- ``zoo int8``: ``mobilenet_v2`` (int8 TFLite through LiteRT) — occlusion only;
- ``learned``: ``tests/fixtures/legacy/pets.imagerec`` (a head on the zoo
  model's embedding) — occlusion only;
- ``onnx``: ``tests/fixtures/legacy/shapes.onnx`` (a small exported CNN, ONNX Runtime) — occlusion only;
- ``keras file``: ``tests/fixtures/legacy/shapes.keras`` (the same small CNN as a ``.keras`` file);
- ``keras2 h5``: the shared Teachable Machine export (a real MobileNet, 224×224);
- ``keras zoo``: ``mobilenet_v3_large`` with random weights (speed does not
  depend on the weights; the real ones cannot be downloaded here), served
  from a local HTTP server as ``tests/test_keras_apps.py`` does, into a
  fresh cache — the Keras kinds both by occlusion and by Grad-CAM.

Occlusion is ``runs`` = 82 model runs through the recognizer's scoring path;
Grad-CAM is one scoring run plus one forward and backward pass of the Keras
model on the torch backend (the model is built on the first Grad-CAM, in the
warm-up). The table also gives a plain ``predict`` of the same photo, so the
ratio explain / predict is measured within one run. Median of ``--rounds``
rounds over ``--photos`` photos, after one warm-up photo.

    python bench/explain.py --rounds 3
    python bench/explain.py --rounds 3 --kinds "keras zoo" "zoo int8"

Prints a table and writes ``bench/results/explain.json`` (rows of kinds not
measured in this run are kept from the file), each row with the machine's
1-minute load average before it: the machine is shared, so compare ratios
within a row.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import http.server
import io
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))

LEGACY = ROOT / "tests" / "fixtures" / "legacy"
KERAS_ZOO = "mobilenet_v3_large"
MODELS = {
    "zoo int8": "mobilenet_v2",
    "learned": str(LEGACY / "pets.imagerec"),
    "onnx": str(LEGACY / "shapes.onnx"),
    "keras file": str(LEGACY / "shapes.keras"),
    "keras2 h5": str(SHARED / "models" / "teachable-machine" / "water_bottles_keras_model.h5"),
    "keras zoo": KERAS_ZOO,
}
PHOTOS = ["parrot.jpg", "hot_dog.jpg", "cat_720p.jpg", "owl.jpg"]


def _seconds(call, photos: list[Path]) -> float:
    """Mean seconds per photo of ``call(photo)`` over ``photos``."""
    start = time.perf_counter()
    for photo in photos:
        call(photo)
    return (time.perf_counter() - start) / len(photos)


def _keras2_weights(model) -> bytes:
    """``model``'s weights laid out as Keras 2's ``save_weights`` (and Keras's published files) lay them out."""
    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        names = []
        for layer in model.layers:
            weights = layer.trainable_weights + layer.non_trainable_weights
            group = handle.create_group(layer.name)
            weight_names = [f"{layer.name}/{w.name}:0" for w in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            for name, weight in zip(weight_names, weights):
                group.create_dataset(name, data=np.asarray(weight.numpy()))
            names.append(layer.name)
        handle.attrs["layer_names"] = np.array([n.encode() for n in names])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.4.0"
    return buffer.getvalue()


@contextlib.contextmanager
def served_keras_zoo_model() -> Iterator[None]:
    """The Keras zoo model's spec pointed at a local server holding random weights; a fresh cache."""
    from imagerec import zoo
    from imagerec.core.keras_backend import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    content = _keras2_weights(keras.applications.MobileNetV3Large(weights=None, include_top=True))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    original = zoo.get(KERAS_ZOO)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{original.model.filename}"
    remote = zoo.RemoteFile(original.model.filename, url, hashlib.md5(content).hexdigest())
    zoo.register(dataclasses.replace(original, model=remote), replace=True)
    saved = {key: os.environ.get(key) for key in ("IMAGEREC_CACHE_DIR", "IMAGEREC_OFFLINE")}
    os.environ["IMAGEREC_CACHE_DIR"] = tempfile.mkdtemp(prefix="imagerec-bench-explain-")
    os.environ["IMAGEREC_OFFLINE"] = "0"
    try:
        yield
    finally:
        zoo.register(original, replace=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        httpd.shutdown()
        httpd.server_close()


def measure(kind: str, photos: list[Path], rounds: int) -> list[dict]:
    """One row per method the model offers: seconds per explanation and per ``predict``."""
    import imagerec

    with served_keras_zoo_model() if kind == "keras zoo" else contextlib.nullcontext():
        model = MODELS[kind]
        recognizer = imagerec.load(model)
        methods = ["occlusion"] + (["grad-cam"] if recognizer.gives_gradients else [])
        rows = []
        for method in methods:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            heat = recognizer.explain(photos[0], method=method)  # warm-up: first runs allocate, Keras builds
            first_s = time.perf_counter() - start
            recognizer.predict(photos[0])
            explain_s, predict_s = [], []
            for _ in range(rounds):  # interleaved, so a busy moment on the shared machine hits both
                explain_s.append(_seconds(lambda photo, m=method: recognizer.explain(photo, method=m), photos))
                predict_s.append(_seconds(lambda photo: recognizer.predict(photo, top_k=1), photos))
            row = {"kind": kind, "model": Path(model).name, "method": heat.method,
                   "input": list(recognizer.preprocessing.size), "runs": heat.runs, "first_s": round(first_s, 3),
                   "explain_s": round(statistics.median(explain_s), 4),
                   "predict_s": round(statistics.median(predict_s), 5), "load_before": round(load, 2)}
            row["ratio"] = round(row["explain_s"] / row["predict_s"], 1)
            rows.append(row)
            print(f"{kind:10} {row['model'][:24]:24} {row['method']:9} {row['input'][0]}×{row['input'][1]}  "
                  f"runs {row['runs']:3}  explain {row['explain_s']:.3f} s  predict {row['predict_s'] * 1000:.1f} ms  "
                  f"×{row['ratio']:.0f}  (first {row['first_s']:.1f} s, load {load:.1f})", flush=True)
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    parser.add_argument("--kinds", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "explain.json")
    args = parser.parse_args()

    photos = [SHARED / "photos" / name for name in PHOTOS[: args.photos]]
    rows = [row for kind in args.kinds for row in measure(kind, photos, args.rounds)]
    kept = []
    if args.output.is_file():
        kept = [row for row in json.loads(args.output.read_text()).get("rows", []) if row.get("kind") not in args.kinds]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {"rounds": args.rounds, "photos": [p.name for p in photos], "cpus": os.cpu_count(),
              "machine": platform.machine(), "rows": kept + rows}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
