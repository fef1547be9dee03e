"""``imagerec compare PHOTO... --providers local,google,aws,azure [--model NAME] [--json] [--html FILE]``."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.errors import CloudError, UsageError
from ..core.pipeline import expand_paths
from ..core.progress import progress
from ._app import app, check_output_file, fail


@app.command()
def compare(
    paths: List[str] = typer.Argument(..., help="Photos or folders."),
    providers: str = typer.Option(
        "local", "--providers", "-p", help="Comma-separated: local, google, aws, azure (credentials from the environment)."
    ),
    model: str = typer.Option("mobilenet_v2", "--model", "-m", help="The local model: a zoo name or a model file."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=50, help="Labels per photo and provider."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    html: Optional[str] = typer.Option(None, "--html", help="Also write a self-contained HTML report here."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also walk sub-folders."),
) -> None:
    """Run the same photos through local models and cloud vision APIs, side by side:
    labels, agreement, latency and estimated cost."""
    from ..cloud import PROVIDER_NAMES, make_provider
    from ..cloud.base import UnavailableProvider
    from ..cloud.compare import compare as run_compare

    names = [name.strip().lower() for name in providers.split(",") if name.strip()]
    if not names:
        raise UsageError("--providers is empty (expected some of " + ", ".join(PROVIDER_NAMES) + ")")
    unknown = [name for name in names if name not in PROVIDER_NAMES]
    if unknown:
        raise UsageError(f"unknown provider {unknown[0]!r} in --providers (expected some of {', '.join(PROVIDER_NAMES)})")
    if len(set(names)) != len(names):
        raise UsageError(f"--providers names a provider twice: {providers}")
    if html:
        check_output_file("--html", html)  # before any paid request is made, not after
    files = expand_paths(paths, recursive=recursive)
    if not files:
        raise fail("no image files found in " + ", ".join(paths), code=2)

    built = []
    for name in names:
        try:
            built.append(make_provider(name, model=model))
        except CloudError as exc:
            built.append(UnavailableProvider(name, exc))

    total = len(files) * len(built)
    with progress(total, "comparing", enabled=False if json_output or total <= 1 else None) as advance:
        comparison = run_compare(files, built, top_k=top_k, on_result=lambda _name, _result: advance())

    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    if not json_output:
        # Once per provider, before the tables, which leave that provider out.
        for name, reason in comparison.unavailable.items():
            errors.print(f"[red]error:[/] {escape(reason)} [dim]({name} is left out of the comparison)[/]")
    if json_output:
        sys.stdout.write(json.dumps(comparison.to_dict(), ensure_ascii=False, indent=2) + "\n")
    elif comparison.providers:
        _print_tables(comparison, Console())
    if html:
        from ..cloud.report import write_html

        try:
            written = write_html(comparison, html)
        except OSError as exc:
            raise fail(f"cannot write the report to {html} ({exc.strerror or exc})") from exc
        if not json_output:
            Console(stderr=True, highlight=False).print(f"report written to {escape(str(written))}")
    for name in comparison.providers:
        summary = comparison.summaries[name]
        if summary.errors and not json_output:
            errors.print(f"[red]error:[/] {escape(summary.first_error or '')}" + (f" ({summary.errors} photos)" if summary.errors > 1 else ""))
    raise typer.Exit(1 if comparison.failed else 0)


def _print_tables(comparison, console: Console) -> None:
    names = comparison.providers
    for i, photo in enumerate(comparison.photos):
        # The path on its own line, never wrapped: a table title would break it at the table's width.
        console.print(f"[bold]{escape(photo)}[/]", soft_wrap=True)
        table = Table(show_lines=False)
        table.add_column("#", justify="right", style="dim")
        for name in names:
            table.add_column(name, overflow="fold")
        columns = []
        for name in names:
            result = comparison.results[name][i]
            if result.ok:
                columns.append([f"{escape(p.label)} [dim]{p.score:.0%}[/]" for p in result.predictions] or ["[dim](no labels)[/]"])
            else:
                columns.append([f"[red]{escape(_short(str(result.error), 80))}[/]"])
        for rank in range(max(len(c) for c in columns)):
            table.add_row(str(rank + 1), *[c[rank] if rank < len(c) else "" for c in columns])
        console.print(table)

    summary = Table(title="latency and cost", title_justify="left")
    for column in ("provider", "ok", "errors", "requests", "median / image", "total", "US$ / 1,000", "this run"):
        summary.add_column(column, justify="left" if column == "provider" else "right")
    for name in names:
        s = comparison.summaries[name]
        median = "–" if s.median_seconds_per_image is None else f"{s.median_seconds_per_image * 1000:.0f} ms"
        summary.add_row(
            name, str(s.ok), str(s.errors), str(s.requests), median, f"{s.wall_seconds:.2f} s", f"{s.usd_per_1000:.2f}", f"{s.estimated_usd:.4f}"
        )
    console.print(summary)
    if comparison.agreement:
        agree = Table(title="agreement (top-k label overlap after normalising case and synonyms)", title_justify="left")
        for column in ("providers", "photos", "mean agreement", "photos with a shared label"):
            agree.add_column(column, justify="left" if column == "providers" else "right")
        for pair in comparison.agreement:
            mean = "–" if pair.mean_agreement is None else f"{pair.mean_agreement:.0%}"
            agree.add_row(f"{pair.a} ↔ {pair.b}", str(pair.photos), mean, str(pair.photos_with_shared_label))
        console.print(agree)
    console.print(f"[dim]prices: list prices taken {comparison.prices_taken} (imagerec.cloud.pricing); latency measured here, network included[/]")


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
