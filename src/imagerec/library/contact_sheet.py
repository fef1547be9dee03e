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
figcaption { font-size: 0.75rem; word-break: break-all; margin-top: 4px; }
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
    hits: Sequence, out: str | os.PathLike[str], *, title: str = "imagerec", score_name: str = "score"
) -> Path:
    """Write ``hits`` (objects with ``file``, ``path``, ``score`` and maybe ``label``, ``why``, ``description``) as HTML:
    under each photo, why it matched — its ``score_name`` ("score" of a search, "similarity" of a similar
    photo) and label, and what each query term matched in it — and its generated description."""

    def figure(hit) -> str:
        try:
            picture = f'<img src="{thumbnail_data_uri(hit.file)}" alt="{html.escape(hit.path)}">'
        except (ImageDecodeError, OSError) as exc:
            picture = f'<div class="missing">{html.escape(str(exc))}</div>'
        caption = f'<span class="score">{html.escape(score_name)} {hit.score:.3f}</span>'
        if getattr(hit, "label", None):
            caption += f" {html.escape(hit.label)}"
        why = why_text(getattr(hit, "why", None) or [])
        if why:
            caption += f'<br><span class="why">{html.escape(why)}</span>'
        if getattr(hit, "description", None):
            caption += f'<br><span class="description">{html.escape(hit.description)}</span>'
        caption += f"<br>{html.escape(hit.path)}"
        return f"<figure>{picture}<figcaption>{caption}</figcaption></figure>"

    figures = list(ordered_map(figure, hits, default_workers()))
    page = (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(figures)} photo{'s' if len(figures) != 1 else ''}</p>"
        f"<div class=\"grid\">{''.join(figures)}</div></body></html>\n"
    )
    return atomic_write_text(out, page)  # never a half-written sheet
