"""A contact sheet: one self-contained HTML page of thumbnails with paths and scores.

Thumbnails are small JPEGs embedded as ``data:`` URIs, so the page can be
mailed or moved without the library. A photo that cannot be read any more
gets a placeholder and its error, not a broken page.

>>> import tempfile, os
>>> out = os.path.join(tempfile.mkdtemp(), "sheet.html")
>>> write_contact_sheet([], out, title="nothing").name
'sheet.html'
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Sequence

from ..core.errors import ImageDecodeError
from ..core.fs import atomic_write_text
from ..core.images import load_pil
from ..core.pipeline import default_workers
from ..core.pipeline import ordered_map
from .search import why_text

__all__ = ["write_contact_sheet", "thumbnail_data_uri"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }
h1 { font-size: 1.3rem; } .grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 200px; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 6px; }
figure img { width: 200px; height: 150px; object-fit: contain; background: #eee; display: block; }
figcaption { font-size: 0.75rem; overflow-wrap: anywhere; margin-top: 4px; }
figure.reference { border: 2px solid #36c; }
.path { word-break: break-all; color: #444; font-family: ui-monospace, monospace; font-size: 0.7rem; }
.score { font-weight: 600; } .why { color: #555; } .description { font-style: italic; } .missing { width: 200px; height: 150px; background: #eee; display: flex;
  align-items: center; justify-content: center; color: #a00; font-size: 0.7rem; text-align: center; }
"""


def thumbnail_data_uri(path: str | os.PathLike[str], size: int = 200) -> str:
    """A ``data:image/jpeg`` URI of the photo scaled to fit ``size``×``size``."""
    from PIL import Image

    from ..core.preprocessing import Preprocessing

    # Draft-mode decoding makes a 12-megapixel JPEG cost a fraction of a full decode.
    image = load_pil(path, Preprocessing(size=(size, size), resize="crop"))
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_contact_sheet(
    hits: Sequence,
    out: str | os.PathLike[str],
    *,
    title: str = "imagerec",
    score_name: str = "score",
    reference: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``hits`` (objects with ``file``, ``path``, ``score`` and maybe ``label``, ``why``, ``description``) as HTML:
    under each photo, why it matched — its ``score_name`` ("score" of a search, "similarity" of a similar
    photo) and label, and what each query term matched in it — and its generated description.
    ``reference`` (the photo ``similar`` was asked about) is shown first, marked as such."""

    def picture(file, alt: str) -> str:
        try:
            return f'<img src="{thumbnail_data_uri(file)}" alt="{html.escape(alt)}">'
        except (ImageDecodeError, OSError) as exc:
            return f'<div class="missing">{html.escape(str(exc))}</div>'

    def figure(hit) -> str:
        caption = f'<span class="score">{html.escape(score_name)} {hit.score:.3f}</span>'
        why = why_text(getattr(hit, "why", None) or [])
        if getattr(hit, "label", None) and hit.label not in why:  # the why line names the label already
            caption += f" {html.escape(hit.label)}"
        if why:
            caption += f'<br><span class="why">{html.escape(why)}</span>'
        if getattr(hit, "description", None):
            caption += f'<br><span class="description">{html.escape(hit.description)}</span>'
        caption += f'<br><span class="path">{html.escape(hit.path)}</span>'
        return f"<figure>{picture(hit.file, hit.path)}<figcaption>{caption}</figcaption></figure>"

    figures = list(ordered_map(figure, hits, default_workers()))
    first = ""
    if reference is not None:
        name = os.fspath(reference)
        first = (f'<figure class="reference">{picture(name, name)}<figcaption><span class="score">the photo asked about'
                 f'</span><br><span class="path">{html.escape(name)}</span></figcaption></figure>')
    page = (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(figures)} photo{'s' if len(figures) != 1 else ''}</p>"
        f"<div class=\"grid\">{first}{''.join(figures)}</div></body></html>\n"
    )
    return atomic_write_text(out, page)  # never a half-written sheet
