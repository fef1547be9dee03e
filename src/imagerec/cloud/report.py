"""A self-contained HTML page for a :class:`~imagerec.cloud.compare.Comparison`.

One file, no scripts, no external assets: a thumbnail and the labels of
every provider per photo, then agreement, latency and cost tables.

>>> from imagerec.cloud.report import render_html
>>> callable(render_html)
True
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

from ..core.errors import ImagerecError
from ..core.fs import atomic_write_text
from ..core.images import load_pil
from . import pricing
from .compare import Comparison

__all__ = ["render_html", "write_html"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.photo img{max-width:160px;max-height:160px;display:block}
.err{color:#b00020}.score{color:#666}.note{color:#666;font-size:.9rem}
"""


def _thumbnail(path: str) -> str:
    """A small JPEG data URI of the photo, or '' when it cannot be read."""
    try:
        image = load_pil(path)
    except (ImagerecError, OSError, ValueError):
        return ""
    image.thumbnail((160, 160))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def render_html(comparison: Comparison, *, thumbnails: bool = True) -> str:
    """The report as one HTML string (every value escaped)."""
    e = html.escape
    names = comparison.providers
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>imagerec compare</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>imagerec compare</h1>",
        f"<p>{len(comparison.photos)} photo(s), providers: {e(', '.join(names))}; top {comparison.top_k} labels each"
        + (f"; local model: {e(comparison.model)}" if comparison.model else "")
        + ".</p>",
        *(f"<p class='err'>{e(reason)} ({e(name)} is left out of the comparison)</p>"
          for name, reason in comparison.unavailable.items()),
        "<h2>Labels</h2><table><tr><th>photo</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>",
    ]
    for i, photo in enumerate(comparison.photos):
        thumb = _thumbnail(photo) if thumbnails and os.path.isfile(photo) else ""
        cell = f"<img src='{thumb}' alt=''>" if thumb else ""
        row = [f"<td class='photo'>{cell}{e(Path(photo).name)}</td>"]
        for name in names:
            result = comparison.results[name][i]
            if not result.ok:
                row.append(f"<td class='err'>{e(str(result.error))}</td>")
                continue
            labels = "<br>".join(f"{e(p.label)} <span class='score'>{p.score:.0%}</span>" for p in result.predictions)
            row.append(f"<td>{labels or '<em>no labels</em>'}</td>")
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</table>")

    out.append("<h2>Agreement</h2>")
    if comparison.agreement:
        out.append(
            "<p class='note'>Share of each provider's top labels that the other also gave, averaged both ways, "
            "after normalising case, plurals and synonyms.</p>"
            "<table><tr><th>providers</th><th>photos</th><th>mean agreement</th><th>photos with a shared label</th></tr>"
        )
        for pair in comparison.agreement:
            mean = "–" if pair.mean_agreement is None else f"{pair.mean_agreement:.0%}"
            out.append(
                f"<tr><td>{e(pair.a)} ↔ {e(pair.b)}</td><td class='num'>{pair.photos}</td>"
                f"<td class='num'>{mean}</td><td class='num'>{pair.photos_with_shared_label}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append("<p class='note'>Only one provider: nothing to compare.</p>")

    out.append(
        "<h2>Latency and cost</h2><table><tr><th>provider</th><th>ok</th><th>errors</th><th>requests</th>"
        "<th>median per image</th><th>total</th><th>US$ per 1,000 images</th><th>this run</th></tr>"
    )
    for name in names:
        s = comparison.summaries[name]
        out.append(
            f"<tr><td>{e(name)}</td><td class='num'>{s.ok}</td><td class='num'>{s.errors}</td>"
            f"<td class='num'>{s.requests}</td><td class='num'>{_seconds(s.median_seconds_per_image)}</td>"
            f"<td class='num'>{s.wall_seconds:.2f} s</td><td class='num'>${s.usd_per_1000:.2f}</td>"
            f"<td class='num'>${s.estimated_usd:.4f}</td></tr>"
        )
    out.append("</table>")
    out.append(f"<p class='note'>Prices: list prices taken {e(comparison.prices_taken)}:</p><ul class='note'>")
    for name in names:
        price = pricing.PRICES.get(name)
        if price is None:
            continue
        source = f" (<a href='{e(price.source)}'>{e(price.source)}</a>)" if price.source else ""
        out.append(f"<li>{e(name)}: ${price.usd_per_1000:.2f} per 1,000 — {e(price.tier)}; {e(price.free_tier)}{source}</li>")
    out.append("</ul><p class='note'>Latency is measured on this machine and includes upload and network time.</p>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_html(comparison: Comparison, path: str | os.PathLike[str], **options) -> Path:
    """Write the report to ``path``, atomically (never a half-written page)."""
    return atomic_write_text(path, render_html(comparison, **options))
