"""Peak memory and time of one decode, by pixel format (issue 20, item 2).

Each case is decoded for a 224×224 model in a fresh subprocess; the figure is
the growth of the peak resident set (``VmHWM``) over the process after
imports and after reading the file, so it is what one decode costs. With
``--no-reduce`` the decoder converts the full picture (the behaviour before
the fix), for comparison::

    .venv/bin/python bench/decode_memory.py            # side 7000 (49 MP)
    .venv/bin/python bench/decode_memory.py --side 3000 --no-reduce
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = r"""
import json, sys, time

def peak_kib():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from imagerec.core import images
from imagerec.core.images import Limits, Preprocessing, load_image
if sys.argv[2] == "1":
    images._reduce_before_converting = lambda image, preprocessing, orientation: image
data = open(sys.argv[1], "rb").read()
before = peak_kib()
started = time.perf_counter()
try:
    load_image(data, Preprocessing(size=(224, 224)), limits=Limits(max_pixels=100_000_000))
    error = None
except Exception as exc:
    error = str(exc)
elapsed = time.perf_counter() - started
peak = peak_kib()
print(json.dumps({"mib": (peak - before) / 1024, "seconds": elapsed, "error": error}))
"""


def cases(side: int) -> dict[str, bytes]:
    def save(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (side, side), dtype=np.uint8)
    return {
        "float32 TIFF (F)": save(Image.fromarray(np.zeros((side, side), np.float32), "F"), "TIFF", compression="tiff_adobe_deflate"),
        "16-bit PNG (I;16)": save(Image.fromarray(np.full((side, side), 40000, np.uint16)), "PNG"),
        "RGBA PNG": save(Image.new("RGBA", (side, side), (10, 20, 30, 128)), "PNG"),
        "palette GIF (P)": save(Image.fromarray(noise, "L").convert("P"), "GIF"),
        "RGB JPEG": save(Image.fromarray(np.stack([noise] * 3, axis=2), "RGB"), "JPEG", quality=80),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--no-reduce", action="store_true", help="convert the full picture (the behaviour before)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'case':20} {'file KB':>9} {'peak MiB':>9} {'seconds':>8}  (side {options.side}, reduce {'off' if options.no_reduce else 'on'})")
        for name, data in cases(options.side).items():
            path = Path(folder) / "image"
            path.write_bytes(data)
            output = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), "1" if options.no_reduce else "0"],
                capture_output=True, text=True, check=True,
            ).stdout
            result = json.loads(output.strip().splitlines()[-1])
            note = f"  error: {result['error']}" if result["error"] else ""
            print(f"{name:20} {len(data) / 1024:9.0f} {result['mib']:9.0f} {result['seconds']:8.2f}{note}")


if __name__ == "__main__":
    main()
