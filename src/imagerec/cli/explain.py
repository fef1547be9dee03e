"""``imagerec explain PHOTO... [--model M] [--label L] [--method auto|occlusion|grad-cam] -o OUT [--json]``.

Per photo, writes ``OUT/<name>_explain.png`` (the photo with the heat map of
:meth:`imagerec.Recognizer.explain` laid over it, the peak ringed) and
prints where the map peaks and which method made it (``auto``: Grad-CAM
when the model gives gradients — Keras models —, else occlusion);
``--json`` prints one object per photo (JSON Lines): ``path``, ``label``,
``method``, ``peak`` (``[x, y]`` in the photo's own pixels), ``score`` and
the written ``file``. A photo that cannot be read is one error line on
stderr; the others are still explained.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..core.errors import ImageDecodeError
from ..core.fs import atomic_path, prepare_output_folder
from ..core.pipeline import expand_paths
from ..explain import METHODS, check_method
from ..loading import load
from ._app import app, err_console, fail


@app.command()
def explain(
    paths: List[str] = typer.Argument(..., help="Image files or folders."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for the heat-map images."),
    model: str = typer.Option("mobilenet_v2", "--model", "-m", help="A zoo model name or a model file."),
    label: Optional[str] = typer.Option(None, "--label", "-l", help="The class to explain (default: the answer)."),
    method: str = typer.Option("auto", "--method", help=f"{' | '.join(METHODS)}: auto is Grad-CAM where the "
                               "model gives gradients (Keras models), else occlusion."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per photo (JSON Lines)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also walk sub-folders."),
) -> None:
    """Why the model said that: each photo with a heat map of the regions that drove the answer."""
    check_method(method)
    files = expand_paths(paths, recursive=recursive)
    if not files:
        raise fail("no image files found in " + ", ".join(paths), code=2)
    folder = Path(prepare_output_folder(output, what="the heat maps"))
    recognizer = load(model)
    if method == "grad-cam" and not recognizer.gives_gradients:
        raise fail(f"{recognizer.name!r} gives no gradients (only Keras models do: .keras, .h5, Keras zoo models); "
                   "use --method occlusion or auto", code=2)
    failed = 0
    names = _output_names(files)
    for path, name in zip(files, names):
        try:
            heat = recognizer.explain(path, label=label, method=method)
        except ImageDecodeError as exc:
            failed += 1
            err_console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
            continue
        written = folder / name
        with atomic_path(written) as tmp:
            heat.overlay().save(tmp, format="PNG")
        if json_output:
            row = {"path": path, **heat.to_dict(), "file": str(written)}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            x, y = heat.peak
            where = _in_words(heat.peak, heat.map.shape)
            sys.stdout.write(f"{path}: {heat.label} ({heat.score:.1%}) — looked most at x={x}, y={y} "
                             f"({where}, {heat.method}) → {written}\n")
        sys.stdout.flush()
    raise typer.Exit(1 if failed else 0)


def _output_names(files: list[str]) -> list[str]:
    """``<stem>_explain.png`` per photo; photos of the same name in different folders get ``-2``, ``-3``..."""
    seen: dict[str, int] = {}
    names = []
    for path in files:
        stem = Path(path).stem or "photo"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}_explain.png" if seen[stem] == 1 else f"{stem}_explain-{seen[stem]}.png")
    return names


def _in_words(peak: list[int], shape: tuple[int, ...]) -> str:
    """Which ninth of the photo the peak is in: "top left", "centre", "bottom right"...

    >>> _in_words([10, 190], (200, 300)), _in_words([150, 100], (200, 300))
    ('bottom left', 'centre')
    """
    x, y = peak
    height, width = shape[:2]
    row = ("top", "middle", "bottom")[min(2, 3 * y // max(1, height))]
    column = ("left", "centre", "right")[min(2, 3 * x // max(1, width))]
    if row == "middle":
        return "centre" if column == "centre" else f"middle {column}"
    return f"{row} {column}" if column != "centre" else f"{row} centre"
