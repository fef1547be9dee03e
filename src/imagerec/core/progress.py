"""Progress bars for long loops: a transient rich bar on stderr on a terminal, nothing otherwise.

Every long loop in imagerec (decoding a dataset, extracting embeddings,
downloading a model, evaluating) shows its progress through :func:`progress`,
so JSON output and pipes stay clean and all bars look alike.

>>> with progress(3, "counting", enabled=False) as advance:
...     for _ in range(3):
...         advance()
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

__all__ = ["progress"]


@contextlib.contextmanager
def progress(
    total: int | None, description: str, *, enabled: bool | None = None, unit: str = "items"
) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1)``; show a bar only when ``enabled`` (None: when stderr is a terminal).

    ``unit="bytes"`` shows sizes and a transfer speed (downloads); anything
    else shows ``done/total`` and the time remaining.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(), TimeRemainingColumn())
    bar = Progress("[progress.description]{task.description}", BarColumn(), *columns,
                   console=Console(stderr=True), transient=True)
    bar.start()
    try:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
    finally:
        bar.stop()
