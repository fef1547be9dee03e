"""The Typer app object and the error handling every verb shares."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from ..core.errors import ImagerecError, UnknownModelError, UsageError
from ..core.version import __version__

app = typer.Typer(
    name="imagerec",
    help="Recognise what is in photos: predict, train, learn, serve, search, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _print_version(value: bool) -> None:
    if value:
        print(f"imagerec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """Recognise what is in photos: predict, train, learn, serve, search, compare."""


err_console = Console(stderr=True, highlight=False, soft_wrap=True)

USAGE_EXIT = 2


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print ``error: message`` on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def check_output_file(option: str, path: str) -> None:
    """Refuse an output file that cannot be written, before any work is done.

    ``option`` names the flag in the message (``"--html"``).

    >>> check_output_file("--html", "/no/such/folder/out.html")
    Traceback (most recent call last):
    ...
    imagerec.core.errors.UsageError: --html /no/such/folder/out.html: the folder /no/such/folder does not exist
    """
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if Path(path).is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name such as report.html")


def run_app(argv: list[str] | None = None) -> int:
    """Run the app, turning imagerec errors into one line and an exit status."""
    import warnings

    try:
        # Standalone mode lets click print its own usage errors (exit 2);
        # imagerec's errors pass through to the handlers below.
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # imagerec's own warnings as one line, not a source location
            app(args=argv, prog_name="imagerec")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (UsageError, UnknownModelError) as exc:
        _print_error(str(exc))
        return USAGE_EXIT
    except ImagerecError as exc:
        _print_error(str(exc))
        return 1
    except OSError as exc:
        # The last net for what the file system says (disk full, permission denied,
        # a file where a folder should be): one line, never a traceback.
        _print_error(_os_error_line(exc))
        return 1
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    return 0


def _os_error_line(exc: OSError) -> str:
    """``"out/m.keras: Not a directory"`` from an OSError, whatever raised it.

    >>> _os_error_line(FileExistsError(17, "File exists", "out"))
    'out: File exists'
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from ..data import DatasetWarning

    if issubclass(category, DatasetWarning):
        err_console.print("[bold yellow]warning:[/] ", end="", markup=True)
        err_console.print(str(message), markup=False)
    else:
        import warnings

        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _print_error(message: str) -> None:
    # rich markup must not interpret brackets in file names
    err_console.print("[bold red]error:[/] ", end="", markup=True)
    err_console.print(message, markup=False)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
