"""The folder where a server keeps taught models across restarts (``imagerec serve --taught-dir DIR``).

Each kept model is one ``.imagerec`` file holding its examples
(:func:`~imagerec.transfer.examples.save_with_examples`), written atomically
after every change, at ``DIR/<scope>/<model>.imagerec``: ``<scope>`` is
``open`` on a server without API keys, else a digest of the key that taught
the model (:func:`~imagerec.serving.service.key_scope`; the key itself is
never written). At start every file the configured keys can reach is loaded;
one that cannot be read is skipped with a one-line warning and never stops
the server. The files are ordinary ``.imagerec`` files: ``imagerec.load``
opens them anywhere.

>>> import tempfile
>>> store = TaughtStore(tempfile.mkdtemp())
>>> store.path(None, "taught").parts[-2:]
('open', 'taught.imagerec')
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterator

from ..core.errors import OutputError
from ..recognizer import Recognizer
from ..transfer.examples import Example, read_examples, save_with_examples
from ..transfer.learned import load_learned
from .config import ServeConfig
from .service import key_scope

__all__ = ["TaughtStore", "OPEN_SCOPE"]

OPEN_SCOPE = "open"  # the folder of a server without API keys
log = logging.getLogger("imagerec.serving")


class TaughtStore:
    """Kept taught models in a folder, one ``.imagerec`` file each, by scope and name."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot create the taught-model folder ({exc.strerror or exc})") from exc

    def path(self, scope: str | None, name: str) -> Path:
        return self.folder / (scope or OPEN_SCOPE) / f"{name}.imagerec"

    def save(self, recognizer: Recognizer, examples: list[Example], scope: str | None, name: str) -> Path:
        return save_with_examples(recognizer, examples, self.path(scope, name))

    def delete(self, scope: str | None, name: str) -> None:
        self.path(scope, name).unlink(missing_ok=True)

    def load_all(self, config: ServeConfig, names: re.Pattern) -> Iterator[tuple[str | None, str, Recognizer, list[Example]]]:
        """``(scope, name, recognizer, examples)`` of every readable kept model the configured keys reach."""
        scopes = [key_scope(key) for key in config.api_keys] if config.api_keys else [None]
        for scope in scopes:
            for path in sorted((self.folder / (scope or OPEN_SCOPE)).glob("*.imagerec")):
                if not names.match(path.stem):
                    self.skip(path, "its name is not a model name")
                    continue
                try:
                    recognizer = load_learned(path, num_threads=config.num_threads, limits=config.limits)
                    examples = read_examples(path, recognizer)
                except Exception as exc:  # a damaged file must never stop the server
                    self.skip(path, f"{type(exc).__name__}: {exc}")
                    continue
                yield scope, path.stem, recognizer, examples

    def skip(self, what: object, reason: str) -> None:
        lines = str(reason).splitlines() or [""]
        log.warning("skipping the kept taught model %s: %s", what, lines[0])
