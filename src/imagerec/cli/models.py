"""``imagerec models list | info NAME | download NAME``."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .. import zoo
from ._app import app

models_app = typer.Typer(help="List, describe and download the pretrained models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _local_path(remote: zoo.RemoteFile) -> Optional[str]:
    for folder in zoo.model_dirs():
        candidate = folder / remote.filename
        if candidate.is_file():
            return str(candidate)
    return None


@models_app.command("list")
def list_command(json_output: bool = typer.Option(False, "--json", help="One JSON object per model.")) -> None:
    """The registered pretrained models."""
    specs = zoo.list_models()
    if json_output:
        for spec in specs:
            typer.echo(json.dumps({**spec.to_dict(), "local_path": _local_path(spec.model)}))
        return
    table = Table(title="imagerec models")
    table.add_column("name", no_wrap=True)  # the one thing a reader copies: never folded
    for column in ("task", "input", "top-1", "size", "local"):
        table.add_column(column)
    for spec in specs:
        marker = "✓" if _local_path(spec.model) else "–"
        name = spec.name + (" (default)" if spec.name == zoo.DEFAULT_MODEL else "")
        top1 = f"{spec.top1:.1f} %" if spec.top1 is not None else ""
        size = f"{spec.size_mb:.0f} MB" if spec.size_mb is not None else ""
        table.add_row(name, spec.task, "×".join(map(str, spec.input_size)), top1, size, marker)
    Console().print(table)
    Console().print("[dim]imagerec models info NAME: description, licence, addresses, hashes[/]")


@models_app.command("info")
def info_command(name: str = typer.Argument(..., help="A model name from `imagerec models list`.")) -> None:
    """Everything known about one model, as JSON."""
    spec = zoo.get(name)
    typer.echo(json.dumps({**spec.to_dict(), "local_path": _local_path(spec.model)}, indent=2))


@models_app.command("download")
def download_command(
    names: list[str] = typer.Argument(None, help="Model names (default: the default model)."),
    all_models: bool = typer.Option(False, "--all", help="Download every registered model."),
) -> None:
    """Fetch model and label files into the cache, verifying their sha256."""
    specs = zoo.list_models() if all_models else [zoo.get(n) for n in (names or [zoo.DEFAULT_MODEL])]
    for spec in specs:
        path = zoo.fetch(spec.model)
        if spec.labels is not None:
            zoo.fetch(spec.labels)
        typer.echo(f"{spec.name}: {path}")
