"""``imagerec search WORD``, ``imagerec similar PHOTO`` and ``imagerec duplicates``."""

from __future__ import annotations

import json
import sys
from typing import Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..library.search import DEFAULT_MIN_SCORE, Hit, why_text
from ..library.search import duplicates as find_duplicates
from ..library.search import search as search_photos
from ..library.search import similar as similar_photos
from ..library.no_match import term_line
from ..library.search import why_no_match
from ..library.contact_sheet import write_contact_sheet
from ._app import app, check_output_file, fail
from .index import printable

_CATALOG_HELP = "Catalog file (default: IMAGEREC_CATALOG, or .imagerec/catalog.db here or above)."


@app.command()
def search(
    query: str = typer.Argument(..., help="What to look for, terms combined with AND: things, colours, dates and months, times of day, cameras, places ('red bird 2019', 'dog on a beach', 'sunset iphone', 'cat in june')."),
    catalog: Optional[str] = typer.Option(None, "--catalog", "-c", help=_CATALOG_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only this model's predictions."),
    min_score: float = typer.Option(DEFAULT_MIN_SCORE, "--min-score", min=0.0, max=1.0, help="Lowest label score that counts (the default is measured: docs/library.md)."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many photos."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per photo (JSON Lines)."),
    html: Optional[str] = typer.Option(None, "--html", help="Also write a thumbnail contact sheet here."),
) -> None:
    """Photos matching every term of QUERY, best first; --json says how each term was read (`why`)."""
    if html:
        check_output_file("--html", html)
    hits = search_photos(query, catalog=catalog, model=model, min_score=min_score, limit=limit)
    _emit(hits, json_output, html, title=f"imagerec search: {query}", label=True)
    if not hits:  # why, on stderr (stdout stays JSON Lines): how each term was read and what it matches
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        line, terms = why_no_match(query, catalog=catalog, model=model, min_score=min_score)
        err.print(escape(line))
        if len([t for t in terms if t["read_as"] != "skipped"]) > 1:
            for term in terms:
                err.print("  " + escape(term_line(term)))


@app.command()
def similar(
    photo: str = typer.Argument(..., help="A photo, in the library or not."),
    catalog: Optional[str] = typer.Option(None, "--catalog", "-c", help=_CATALOG_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Whose embeddings to compare (default: the first with embeddings)."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="At most this many photos."),
    min_score: float = typer.Option(0.0, "--min-score", min=-1.0, max=1.0, help="Lowest cosine similarity listed."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per photo (JSON Lines)."),
    html: Optional[str] = typer.Option(None, "--html", help="Also write a thumbnail contact sheet here."),
) -> None:
    """Photos that look like PHOTO, by embedding cosine similarity."""
    if html:
        check_output_file("--html", html)
    hits = similar_photos(photo, catalog=catalog, model=model, limit=limit, min_score=min_score)
    _emit(hits, json_output, html, title=f"imagerec similar: {photo}", label=False, score_name="similarity",
          reference=photo)


@app.command()
def duplicates(
    catalog: Optional[str] = typer.Option(None, "--catalog", "-c", help=_CATALOG_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Whose embeddings to compare."),
    threshold: float = typer.Option(0.95, "--threshold", "-t", min=0.0, max=1.0, help="Cosine similarity from which photos count as the same."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per group (JSON Lines)."),
    html: Optional[str] = typer.Option(None, "--html", help="Also write a contact sheet of the groups here."),
) -> None:
    """Groups of near-identical photos: identical bytes, or nearly identical content."""
    if html:
        check_output_file("--html", html)
    groups = find_duplicates(catalog=catalog, model=model, threshold=threshold)
    if json_output:
        for group in groups:
            sys.stdout.write(json.dumps(group.to_dict(), ensure_ascii=False) + "\n")
    else:
        console = Console(highlight=False)
        table = Table()
        table.add_column("group", justify="right")
        table.add_column("kind")
        table.add_column("similarity", justify="right")
        table.add_column("photos", overflow="fold")
        for number, group in enumerate(groups, 1):
            table.add_row(str(number), group.kind, f"{group.similarity:.3f}", escape("\n".join(printable(p) for p in group.paths)))
        if groups:
            console.print(table)
        Console(stderr=True, highlight=False).print(f"{len(groups)} group{'s' if len(groups) != 1 else ''} of duplicates")
    if html:
        hits = [
            Hit(path, group.similarity, group.root, label=f"group {number} ({group.kind})")
            for number, group in enumerate(groups, 1)
            for path in group.paths
        ]
        _write_sheet(hits, html, title="imagerec duplicates", score_name="similarity")


def _emit(hits: Sequence[Hit], json_output: bool, html: str | None, *, title: str, label: bool,
          score_name: str = "score", reference: str | None = None) -> None:
    if json_output:
        for hit in hits:
            sys.stdout.write(json.dumps(hit.to_dict(), ensure_ascii=False) + "\n")
    elif hits:
        with_label = label and any(hit.label for hit in hits)  # a query of dates, places or colours labels nothing
        # A query of dates, cameras or places matches or not: every score is 1, a column that says nothing.
        with_score = not label or with_label or any(hit.score != 1.0 for hit in hits)
        table = Table()
        table.add_column("photo", overflow="fold", style="bold")
        if with_score:
            table.add_column(score_name, justify="right")  # "similarity" for similar: a cosine, not a probability
        if with_label:
            table.add_column("label", overflow="fold")
        if label:
            table.add_column("why", overflow="fold")
        for hit in hits:
            row = [escape(printable(hit.path))] + ([f"{hit.score:.3f}"] if with_score else [])
            if with_label:
                row.append(escape(hit.label or ""))
            if label:
                row.append(escape(why_text(hit.why)))
            table.add_row(*row)
        Console(highlight=False).print(table)
    if html:
        _write_sheet(hits, html, title=title, score_name=score_name, reference=reference)


def _write_sheet(hits: Sequence[Hit], html: str, *, title: str, score_name: str = "score",
                 reference: str | None = None) -> None:
    try:
        write_contact_sheet(hits, html, title=title, score_name=score_name, reference=reference)
    except OSError as exc:
        raise fail(f"cannot write the contact sheet to {escape(html)} ({escape(exc.strerror or str(exc))})") from exc
