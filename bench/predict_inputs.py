"""Photos per second for the inputs that are not big JPEGs: small JPEGs, PNGs, file objects and URLs.

``bench/predict_throughput.py`` measures 12-megapixel JPEGs, where draft mode
and the near-tie refinement decide the rate. This one checks that nothing
else got slower: in one run, each the median of ``--runs`` runs, it measures
the course's loop (``Image.open(x).convert("RGB").resize((224, 224))`` and one
interpreter invoke per photo, one process) and ``Recognizer.predict_files``
on the same inputs:

- 200 small JPEGs (640×480, quality 90) by path;
- 100 PNGs (800×600) by path;
- the 200 small JPEGs as file objects (``io.BytesIO``);
- the 200 small JPEGs as ``http://127.0.0.1`` URLs from a local server.

It prints photos/s for both, their ratio, imagerec's CPU time a photo
(steadier than photos/s when others load the machine), and how often their top-1 agree
(not always: the course squashes a photo to 224×224, imagerec crops its
centre, as the model was trained).
``--src`` imports imagerec from another checkout's ``src`` folder, so the
code of an earlier commit can be measured with the same script:

    python bench/predict_inputs.py --runs 5
    git worktree add /tmp/before ddfd433 && python bench/predict_inputs.py --src /tmp/before/src
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("IMAGEREC_MODEL_DIR", str(SHARED / "models"))
MODEL = SHARED / "models" / "mobilenet_v2_1.0_224_quant.tflite"


def make_inputs(folder: Path, jpegs: int = 200, pngs: int = 100) -> dict[str, list[Path]]:
    """Small JPEGs and PNGs made from the shared photos (cached between runs)."""
    sources = sorted(p for p in (SHARED / "photos").rglob("*") if p.suffix.lower() in {".jpg", ".bmp"})
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Path]] = {"jpeg": [], "png": []}
    for kind, count, size in (("jpeg", jpegs, (640, 480)), ("png", pngs, (800, 600))):
        for i in range(count):
            path = folder / f"{kind}_{i:04d}.{'jpg' if kind == 'jpeg' else 'png'}"
            made[kind].append(path)
            if path.exists():
                continue
            image = Image.open(sources[i % len(sources)]).convert("RGB")
            # A different crop of the source for each copy, so no two inputs are the same picture.
            w, h = image.size
            shift = (i // len(sources)) % 10 * 0.02
            box = (w * shift, h * shift, w * (0.8 + shift), h * (0.8 + shift))
            image = image.resize(size, Image.Resampling.BICUBIC, box=box)
            image.save(path, "JPEG", quality=90) if kind == "jpeg" else image.save(path, "PNG")
    return made


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A local HTTP server for ``folder`` on 127.0.0.1 (any free port) and its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def naive(interpreter, sources: list) -> list[int]:
    """The course's loop over ``sources`` (paths, file objects or URLs, fetched with urllib)."""
    from urllib.request import urlopen

    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    top1 = []
    for source in sources:
        if isinstance(source, str) and source.startswith("http"):
            with urlopen(source) as response:
                source = io.BytesIO(response.read())
        elif isinstance(source, io.BytesIO):
            source.seek(0)
        image = Image.open(source).convert("RGB").resize((224, 224))
        interpreter.set_tensor(input_index, np.asarray(image)[None])
        interpreter.invoke()
        top1.append(int(np.argmax(interpreter.get_tensor(output_index)[0])))
    return top1


def api(recognizer, sources: list) -> list[int]:
    for source in sources:
        if isinstance(source, io.BytesIO):
            source.seek(0)
    return [result.predictions[0].index for result in recognizer.predict_files(sources, top_k=1)]


def timed(function, *args) -> tuple[float, float, list[int]]:
    """(seconds, CPU seconds of this process, the function's top-1 indices)."""
    cpu, start = time.process_time(), time.perf_counter()
    top1 = function(*args)
    return time.perf_counter() - start, time.process_time() - cpu, top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", type=Path, help="import imagerec from this src folder (another checkout)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "imagerec-bench-inputs")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "predict_inputs.json")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, str(args.src.resolve()))
    import imagerec
    from ai_edge_litert.interpreter import Interpreter

    made = make_inputs(args.folder)
    server, base = serve(args.folder)
    kinds = {
        "small JPEG (640×480) by path": [str(p) for p in made["jpeg"]],
        "PNG (800×600) by path": [str(p) for p in made["png"]],
        "small JPEG as a file object": [io.BytesIO(p.read_bytes()) for p in made["jpeg"]],
        "small JPEG by URL (127.0.0.1)": [f"{base}/{p.name}" for p in made["jpeg"]],
    }
    recognizer = imagerec.load("mobilenet_v2")
    interpreter = Interpreter(model_path=str(MODEL))
    interpreter.allocate_tensors()
    api(recognizer, kinds["small JPEG (640×480) by path"][:16])  # warm up both
    naive(interpreter, kinds["small JPEG (640×480) by path"][:4])
    rows = []
    try:
        for name, sources in kinds.items():
            naive_s, api_s, api_cpu = [], [], []
            for _ in range(args.runs):
                seconds, _, naive_top1 = timed(naive, interpreter, sources)
                naive_s.append(seconds)
                seconds, cpu, api_top1 = timed(api, recognizer, sources)
                api_s.append(seconds)
                api_cpu.append(cpu)
            a, b = len(sources) / statistics.median(naive_s), len(sources) / statistics.median(api_s)
            # The model's output 0 is "background", which imagerec's labels leave out.
            offset = interpreter.get_output_details()[0]["shape"][-1] - len(recognizer.labels)
            agreement = float(np.mean(np.array(naive_top1) - offset == np.array(api_top1)))
            rows.append({"input": name, "photos": len(sources), "naive_photos_per_s": round(a, 1),
                         "imagerec_photos_per_s": round(b, 1), "ratio": round(b / a, 2),
                         "imagerec_cpu_ms_per_photo": round(statistics.median(api_cpu) / len(sources) * 1000, 2),
                         "top1_agreement": round(agreement, 3)})
            print(f"{name:32s} naive {a:6.1f}/s  imagerec {b:6.1f}/s  {b / a:4.1f}×  "
                  f"imagerec CPU {rows[-1]['imagerec_cpu_ms_per_photo']:5.2f} ms a photo  "
                  f"top-1 agree {rows[-1]['top1_agreement']:.1%}", flush=True)
    finally:
        server.shutdown()
    result = {"runs": args.runs, "src": str(args.src or ROOT / "src"), "load_average": os.getloadavg(), "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
