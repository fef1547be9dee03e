"""Scale-out: run the indexer's read + decode + inference on a Ray cluster.

The driver (``imagerec index --ray ADDRESS``) walks the library, decides what
needs analysing exactly as a local run does, and hands the paths to Ray Data
in batches. A pool of actors, each holding its own copy of every model,
reads, hashes, decodes and recognises the photos (the same
:func:`~imagerec.library.analysis.analyse` a local run uses); the driver
writes what comes back into the catalog, one transaction per batch. So the
catalog has a single writer, and its content is the same as a local run's.

The workers must see the library under the same path as the driver (a
shared or network file system) and be able to load the models (zoo models
from ``IMAGEREC_MODEL_DIR`` or the cache; ``.imagerec`` files by path).

Ray's own logs (start-up, the execution plan, its workers' output, what its
C++ core writes to the driver's stderr, the retries it announces when a node
is lost) go to its session folder (``/tmp/ray/session_latest/logs``), not to
the user's terminal; ``IMAGEREC_RAY_VERBOSE=1`` shows them there too.

Losing a node mid-run loses nothing: Ray Data restarts the actors that ran
there and retries their batches (its defaults: ``max_restarts=-1``,
``max_task_retries=-1``), and each result reaches the catalog once, since only
the driver writes it (``tests/test_library_ray_cluster.py`` kills a node of a
three-node cluster half-way through a run).

>>> from imagerec.library import index_library
>>> index_library("/shared/photos", ray="auto")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from typing import Collection, Iterator, Sequence

import numpy as np

from ..core.errors import ImagerecError, UsageError
from .analysis import Analysed, ModelOutput, analyse
from .facts import Facts
from .walker import Entry

__all__ = ["RayAnalyser", "analyse_on_ray", "from_columns", "ray_output_in_its_logs", "to_columns"]

_TEXT_COLUMNS = ("sha256", "taken_at", "camera", "error")


class RayAnalyser:
    """A Ray Data actor: loads the models once, then analyses batches of paths."""

    def __init__(self, root: str, sources: Sequence[str], known_ref: list, top_k: int, threads: int) -> None:
        import ray

        from ..loading import load

        self.root = root
        self.top_k = top_k
        # The known hashes travel as one object in the object store, wrapped
        # in a list so that Ray hands over the reference, not a copy per call.
        self.known = ray.get(known_ref[0])
        self.recognizers = [load(source, num_threads=threads) for source in sources]
        self.threads = threads

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entries = [
            Entry(str(path), int(size), int(mtime))
            for path, size, mtime in zip(batch["path"], batch["size"], batch["mtime_ns"])
        ]
        results: list[Analysed] = []
        for chunk in analyse(
            entries, self.root, self.recognizers, known=self.known, top_k=self.top_k,
            workers=self.threads, batch_size=max(1, len(entries)),
        ):
            results.extend(chunk)
        return to_columns(results, self.recognizers, self.top_k)


def to_columns(results: Sequence[Analysed], recognizers, top_k: int) -> dict[str, np.ndarray]:
    """Analysed results as fixed-shape numpy columns (what Ray Data moves best)."""
    n = len(results)
    columns: dict[str, np.ndarray] = {
        "path": np.array([r.entry.path for r in results], dtype=object),
        "size": np.array([r.entry.size for r in results], np.int64),
        "mtime_ns": np.array([r.entry.mtime_ns for r in results], np.int64),
        "width": np.array([-1 if r.width is None else r.width for r in results], np.int64),
        "height": np.array([-1 if r.height is None else r.height for r in results], np.int64),
        "known": np.array([r.known for r in results], bool),
        "analysed": np.array([r.outputs is not None for r in results], bool),
    }
    for name in _TEXT_COLUMNS:
        columns[name] = np.array([getattr(r, name) or "" for r in results], dtype=object)
    columns["facts"] = np.array([facts_to_text(r.facts) for r in results], dtype=object)
    for m, recognizer in enumerate(recognizers):
        k = _k(recognizer, top_k)
        labels = np.full((n, k), -1, np.int32)
        scores = np.zeros((n, k), np.float32)
        dim = _embedding_dim(recognizer)
        embeddings = np.zeros((n, dim), np.float32) if dim else None
        for row, result in enumerate(results):
            if result.outputs is None:
                continue
            output = result.outputs[m]
            labels[row, : len(output.labels)] = output.labels
            scores[row, : len(output.scores)] = output.scores
            if embeddings is not None and output.embedding is not None:
                embeddings[row] = output.embedding
        columns[f"labels_{m}"] = labels
        columns[f"scores_{m}"] = scores
        if embeddings is not None:
            columns[f"embedding_{m}"] = embeddings
    return columns


def from_columns(batch: dict[str, np.ndarray], model_count: int) -> list[Analysed]:
    """The inverse of :func:`to_columns`."""
    results = []
    for row in range(len(batch["path"])):
        entry = Entry(str(batch["path"][row]), int(batch["size"][row]), int(batch["mtime_ns"][row]))
        text = {name: (str(batch[name][row]) or None) for name in _TEXT_COLUMNS}
        result = Analysed(
            entry,
            sha256=text["sha256"],
            width=None if batch["width"][row] < 0 else int(batch["width"][row]),
            height=None if batch["height"][row] < 0 else int(batch["height"][row]),
            taken_at=text["taken_at"],
            camera=text["camera"],
            error=text["error"],
            known=bool(batch["known"][row]),
            facts=facts_from_text(str(batch["facts"][row])),
        )
        if bool(batch["analysed"][row]):
            outputs = []
            for m in range(model_count):
                labels = [int(x) for x in batch[f"labels_{m}"][row] if x >= 0]
                scores = [float(x) for x in batch[f"scores_{m}"][row][: len(labels)]]
                key = f"embedding_{m}"
                embedding = np.asarray(batch[key][row], np.float32) if key in batch else None
                outputs.append(ModelOutput(labels, scores, embedding))
            result.outputs = outputs
        results.append(result)
    return results


def facts_to_text(facts: Facts | None) -> str:
    """A photo's facts (colours, GPS position...) as JSON; "" for none. Floats survive exactly.

    >>> facts_from_text(facts_to_text(Facts(width=4, latitude=48.8566, colours=[("red", 0.6)])))
    Facts(width=4, height=None, taken_at=None, camera=None, latitude=48.8566, longitude=None, colours=[('red', 0.6)])
    """
    if facts is None:
        return ""
    return json.dumps(dataclasses.asdict(facts), default=lambda value: value.item())  # numpy scalars


def facts_from_text(text: str) -> Facts | None:
    """The inverse of :func:`facts_to_text`."""
    if not text:
        return None
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(Facts)}
    facts = Facts(**{name: value for name, value in data.items() if name in known})
    facts.colours = [tuple(pair) for pair in facts.colours]  # JSON has no tuples
    return facts


def _k(recognizer, top_k: int) -> int:
    return min(top_k, recognizer.num_classes)


def _embedding_dim(recognizer) -> int | None:
    if not recognizer.can_embed:
        return None
    backend = recognizer.backend
    if hasattr(backend, "output_dim"):
        return int(backend.output_dim("embedding"))
    probe = np.zeros((1, *recognizer.preprocessing.size, 3), np.uint8)
    return int(backend.run(probe, ("embedding",))["embedding"].shape[1])


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.+)$")


def worker_error(exc: BaseException) -> ImagerecError:
    """A Ray task or actor failure as one line naming the worker's own cause.

    The cause is the first imagerec error in the chain (a model a worker
    cannot load, a file it cannot read); failing that, the last exception
    line of the worker's traceback that is not Ray's own; failing that, the
    first line of Ray's message (an actor killed for memory, a node lost).
    """
    return ImagerecError(
        f"a Ray worker failed: {_worker_cause(exc)} (the workers must see the library under the same path "
        "and be able to load the models)"
    )


def _worker_cause(exc: BaseException) -> str:
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    texts: list[str] = []
    while todo:
        error = todo.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        cause = getattr(error, "cause", None)
        if isinstance(cause, BaseException) and cause is not error:
            # A RayTaskError (which may also subclass its cause): look at the cause itself.
            todo.insert(0, cause)
            texts.append(getattr(error, "traceback_str", None) or "")
            continue
        if isinstance(error, ImagerecError):
            return error.message
        texts.append(str(error))
        todo.extend(e for e in (error.__cause__, error.__context__) if e is not None)
    for text in texts:
        lines = [m for m in map(_EXCEPTION_LINE.match, text.splitlines()) if m and not m.group(1).startswith("ray.")]
        if lines:
            name, message = lines[-1].groups()
            return message if name.startswith("imagerec.") else f"{name.rsplit('.', 1)[-1]}: {message}"
    first = next((line.strip() for text in texts for line in text.splitlines() if line.strip()), "")
    return first or type(exc).__name__


def connect(address: str) -> bool:
    """Make sure Ray is initialised; True when this call started it.

    ``"auto"`` joins the cluster this machine belongs to (``ray start``),
    ``"local"`` starts a private one on this machine, anything else is a
    cluster address (``ray://host:10001`` or ``host:6379``). An already
    initialised Ray (a test's ``ray.init(num_cpus=2)``) is used as it is.
    """
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--ray needs Ray: pip install 'imagerec[ray]'") from exc
    if ray.is_initialized():
        return False
    verbose = _verbose()
    try:
        ray.init(address=None if address == "local" else address, log_to_driver=verbose, include_dashboard=False,
                 logging_level=logging.INFO if verbose else logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImagerecError(
            f"cannot reach a Ray cluster at {address!r} ({reason}); start one with `ray start --head`, "
            "pass its address, or use --ray local"
        ) from exc
    return True


def _verbose() -> bool:
    return os.environ.get("IMAGEREC_RAY_VERBOSE", "").lower() in ("1", "true", "yes")


@contextmanager
def ray_output_in_its_logs(active: bool = True) -> Iterator[None]:
    """While active, what Ray writes to this process's terminal goes to Ray's log folder instead.

    Two things reach a driver's terminal whatever ``ray.init`` is told: its
    C++ core worker copies every error-level line to file descriptor 2 (e.g.
    "core_worker.cc: ... has constructor arguments in the object store and
    max_restarts > 0", which every Ray Data actor pool triggers), and the
    thread that relays the cluster's error messages prints "(raylet) Task ...
    will be retried" to ``sys.stdout`` when a node is lost. So descriptor 2
    is pointed at ``imagerec-driver-PID.err`` in Ray's log folder (the C++
    lines are also in its ``python-core-driver-*.log``) while Python's
    ``sys.stderr`` keeps the terminal, and the relayed messages are written
    to that file too. Ray's retries and restarts themselves are untouched.
    """
    if not active:
        yield
        return
    undo = [_descriptor_2_to(_driver_log_path()), _relayed_errors_to_descriptor_2()]
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


def _driver_log_path() -> str:
    try:  # Ray has no public name for its session's log folder
        from ray._private.worker import _global_node

        return os.path.join(_global_node.get_logs_dir_path(), f"imagerec-driver-{os.getpid()}.err")
    except Exception:
        return os.devnull


def _descriptor_2_to(path: str):
    """Point descriptor 2 at ``path``; ``sys.stderr`` (if it wrote there) moves to a copy of the old one."""
    python_stderr = sys.stderr
    try:
        python_stderr.flush()
        writes_to_2 = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # pytest's capture, Jupyter: not descriptor 2
        writes_to_2 = False
    try:
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        target = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    replacement = None
    if writes_to_2:
        replacement = open(os.dup(saved), "w", buffering=1,  # closed by undo()  # noqa: SIM115
                           encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                           errors=getattr(python_stderr, "errors", None) or "backslashreplace")
        sys.stderr = replacement
    os.dup2(target, 2)
    os.close(target)

    def undo() -> None:
        if replacement is not None:
            replacement.flush()
            if sys.stderr is replacement:
                sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        if replacement is not None:
            replacement.close()

    return undo


def _relayed_errors_to_descriptor_2():
    """Write Ray's relayed cluster messages ("(raylet) ...") to descriptor 2 (its log file), not stdout."""
    try:  # the relay thread looks this function up for each message; Ray has no public switch for it
        from ray._private import worker
    except ImportError:
        return lambda: None
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        return lambda: None

    def to_descriptor_2(data, ignore_prefix: bool = False) -> None:
        text = "".join(f"({data.get('pid', 'ray')}) {line}\n" for line in data.get("lines", []))
        os.write(2, text.encode("utf-8", "replace"))

    worker.print_to_stdstream = to_descriptor_2

    def undo() -> None:
        worker.print_to_stdstream = original

    return undo


def _quiet_ray_data(context) -> None:
    """Ray Data's execution logs to its log file only (its console handler is raised to errors)."""
    if _verbose():
        return
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    for handler in logging.getLogger("ray.data").handlers:
        if handler.get_name() == "console":
            handler.setLevel(logging.ERROR)


def analyse_on_ray(
    entries: Sequence[Entry],
    root: str,
    recognizers: Sequence,
    *,
    sources: Sequence[str],
    address: str = "auto",
    known: Collection[str] = frozenset(),
    top_k: int = 5,
    batch_size: int = 16,
    cpus_per_actor: int = 1,
    actors: int | None = None,
) -> Iterator[list[Analysed]]:
    """Analyse ``entries`` on Ray; yields lists of results as batches finish (any order)."""
    if not entries:
        return
    started = connect(address)  # first: its error says how to install Ray
    with ray_output_in_its_logs(started and not _verbose()):
        yield from _analyse(entries, root, recognizers, sources, known, top_k, batch_size, cpus_per_actor, actors,
                            started)


def _analyse(entries, root, recognizers, sources, known, top_k, batch_size, cpus_per_actor, actors,
             started: bool) -> Iterator[list[Analysed]]:
    import ray  # connect() succeeded, so this import does

    try:
        import ray.data
    except ImportError as exc:  # Ray core without its data extra
        if started:
            ray.shutdown()
        raise UsageError(f"--ray needs Ray Data ({exc}): pip install 'imagerec[ray]'") from exc
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        _quiet_ray_data(context)
        # A worker's own exception (not Ray Data's UserCodeException wrapper)
        # travels back, so worker_error() can name it.
        context.raise_original_map_exception = True
        if actors is None:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            actors = max(1, cpus // cpus_per_actor)
        actors = max(1, min(actors, -(-len(entries) // batch_size)))  # no idle actors on small runs
        known_ref = [ray.put(frozenset(known))]
        items = [{"path": e.path, "size": e.size, "mtime_ns": e.mtime_ns} for e in entries]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // batch_size, actors * 8) or 1))
        analysed = dataset.map_batches(
            RayAnalyser,
            fn_constructor_kwargs={
                "root": os.path.abspath(root),
                "sources": list(sources),
                "known_ref": known_ref,
                "top_k": top_k,
                "threads": cpus_per_actor,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
        )
        try:
            for batch in analysed.iter_batches(batch_size=batch_size, batch_format="numpy"):
                yield from_columns(batch, len(recognizers))
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            raise worker_error(exc) from exc
    finally:
        if started:
            ray.shutdown()
