"""The ``imagerec`` command: one sub-command per verb, each a thin shell over the API.

Each verb lives in its own module here and registers itself on :data:`app`.
Errors that are the user's to fix print one line on stderr, no traceback:
exit status 2 for usage errors, 1 for everything else.

>>> from typer.testing import CliRunner
>>> from imagerec.cli import app
>>> CliRunner().invoke(app, ["models", "list", "--json"]).exit_code
0
"""

from __future__ import annotations

import sys

from ._app import app, run_app

# Importing a verb module registers its command on the app.
from . import models as _models  # noqa: F401,E402
from . import predict as _predict  # noqa: F401,E402
from . import train as _train  # noqa: F401,E402
from . import evaluate as _evaluate  # noqa: F401,E402
from . import learn as _learn  # noqa: F401,E402
from . import serve as _serve  # noqa: F401,E402
from . import export as _export  # noqa: F401,E402
from . import compare as _compare  # noqa: F401,E402
from . import index as _index  # noqa: F401,E402
from . import search as _search  # noqa: F401,E402
from . import import_ as _import  # noqa: F401,E402
from . import describe as _describe  # noqa: F401,E402
from . import explain as _explain  # noqa: F401,E402

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(run_app(argv))
