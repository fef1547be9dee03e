"""Labelled image datasets: class folders, CSV files, archives; splits and a decode cache.

A :class:`Dataset` is a list of image paths with an integer class per path
and the class names. It is cheap to build (nothing is decoded) and to split;
:meth:`Dataset.arrays` decodes the images in parallel into one ``N×H×W×3``
uint8 array and caches that array on disk, keyed by the files' content and
the preprocessing, so the next run starts at once. Files that cannot be
decoded are dropped from the dataset, listed in :attr:`Dataset.skipped` and
warned about; they never stop a run.

>>> from imagerec.data.datasets import load_dataset
>>> data = load_dataset({"cat": ["../shared/photos/cat_720p.jpg"], "bird": ["../shared/photos/bird.bmp"]})
>>> data.classes, len(data)
(['bird', 'cat'], 2)
>>> from imagerec.core.images import Preprocessing
>>> data.arrays(Preprocessing(size=(32, 32))).shape
(2, 32, 32, 3)
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from .. import zoo
from ..core.errors import DatasetError
from ..core.fs import atomic_path, atomic_write_text
from ..core.images import IMAGE_SUFFIXES
from .archives import extract_archive
from ..core.pipeline import decode_ordered, expand_paths
from ..core.preprocessing import Preprocessing
from ..core.progress import progress as progress_bar

__all__ = ["Dataset", "DatasetSource", "DatasetWarning", "load_dataset", "read_class_folders", "datasets_dir"]

DatasetSource = Union[str, os.PathLike, Mapping[str, Sequence[Union[str, os.PathLike]]], "Dataset"]

# Bump when the cache layout changes so old entries are never misread.
_CACHE_VERSION = 1
# A class this many times larger than the smallest one is reported.
IMBALANCE_WARNING_RATIO = 1.5
# Decodes of at least this many images show a progress bar on a terminal (unless told to be quiet).
PROGRESS_MIN_IMAGES = 2000


class DatasetWarning(UserWarning):
    """Something about a dataset the user should know: skipped files, class imbalance."""


def datasets_dir() -> Path:
    """Where extracted archives and decoded arrays are cached (beside the model cache)."""
    return zoo.cache_dir().parent / "datasets"


@dataclass
class Dataset:
    """Image paths, their class indices and the class names.

    ``targets[i]`` is the index into ``classes`` of ``paths[i]``. ``skipped``
    lists ``(path, reason)`` for every file left out (unreadable, missing).

    >>> data = Dataset(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], np.array([0, 0, 1, 1]), ["cat", "dog"])
    >>> train, val = data.split(0.5, seed=0)
    >>> len(train), len(val), sorted(val.class_counts().values())
    (2, 2, [1, 1])
    """

    paths: list[str]
    targets: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = "<dataset>"

    def __post_init__(self) -> None:
        self.paths = [os.fspath(p) for p in self.paths]
        self.targets = np.asarray(self.targets, dtype=np.int64).reshape(-1)
        self.classes = [str(c) for c in self.classes]
        if len(self.paths) != len(self.targets):
            raise DatasetError(f"{len(self.paths)} paths but {len(self.targets)} targets", path=self.source)
        if len(self.targets) and (self.targets.min() < 0 or self.targets.max() >= len(self.classes)):
            raise DatasetError(
                f"targets must lie in 0..{len(self.classes) - 1} for {len(self.classes)} classes", path=self.source
            )

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"Dataset({self.source!r}, images={len(self)}, classes={len(self.classes)}, skipped={len(self.skipped)})"

    # -- statistics -------------------------------------------------------

    def class_counts(self) -> dict[str, int]:
        """Images per class, in class order.

        >>> Dataset(["a", "b", "c"], np.array([1, 1, 0]), ["x", "y"]).class_counts()
        {'x': 1, 'y': 2}
        """
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    @property
    def imbalance(self) -> float:
        """Largest class size over smallest (1.0 = balanced; inf if a class is empty)."""
        counts = np.bincount(self.targets, minlength=len(self.classes))
        if not len(counts) or counts.max() == 0:
            return 1.0
        return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())

    # -- subsets ----------------------------------------------------------

    def take(self, indices: Sequence[int] | np.ndarray) -> "Dataset":
        """A new dataset with the images at ``indices`` (same classes)."""
        indices = np.asarray(indices, dtype=np.int64)
        return Dataset(
            [self.paths[i] for i in indices], self.targets[indices], list(self.classes), list(self.skipped), self.source
        )

    def split_indices(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified ``(train, val)`` index arrays; the same seed gives the same split.

        Every class with at least two images puts at least one in each part.
        """
        if not 0.0 < val_fraction < 1.0:
            raise DatasetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        rng = np.random.default_rng(seed)
        train, val = [], []
        for label in range(len(self.classes)):
            members = np.flatnonzero(self.targets == label)
            members = members[rng.permutation(len(members))]
            n_val = int(round(len(members) * val_fraction))
            if len(members) >= 2:
                n_val = min(max(n_val, 1), len(members) - 1)
            else:
                n_val = 0
            val.append(members[:n_val])
            train.append(members[n_val:])
        return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """A deterministic, stratified ``(train, val)`` split."""
        train, val = self.split_indices(val_fraction, seed)
        return self.take(train), self.take(val)

    def subset(self, per_class: int, seed: int = 0) -> "Dataset":
        """At most ``per_class`` images of every class, chosen at random from ``seed``.

        >>> data = Dataset(list("abcdef"), np.array([0, 0, 0, 1, 1, 1]), ["x", "y"])
        >>> data.subset(2).class_counts()
        {'x': 2, 'y': 2}
        """
        if per_class < 1:
            raise DatasetError(f"per_class must be at least 1, got {per_class}")
        rng = np.random.default_rng(seed)
        keep = []
        for label in range(len(self.classes)):
            members = np.flatnonzero(self.targets == label)
            keep.append(np.sort(rng.permutation(members)[:per_class]))
        return self.take(np.sort(np.concatenate(keep)))

    # -- pixels -----------------------------------------------------------

    def arrays(
        self,
        preprocessing: Preprocessing,
        *,
        workers: int | None = None,
        cache: bool = True,
        progress: bool | None = None,
        require_every_class: bool = False,
    ) -> np.ndarray:
        """All images as one ``N×H×W×3`` uint8 array, decoded once and cached on disk.

        Files that cannot be decoded are removed from this dataset (``paths``
        and ``targets`` shrink to match the returned array), appended to
        ``skipped`` and reported with a :class:`DatasetWarning`. The result is
        a read-only memory map of the cache file when ``cache`` is on.
        ``progress`` shows a bar (default: on a terminal, for large decodes;
        ``False`` keeps quiet). With ``require_every_class`` a class left
        with no readable image raises :class:`~imagerec.core.errors.DatasetError`
        naming it (what a training set needs).
        """
        if not len(self):
            raise DatasetError("the dataset has no images to decode", path=self.source)
        pixels, bad = self._decoded(preprocessing, workers, cache, progress)
        paths, targets = self.paths, self.targets  # _drop replaces both, these stay as they were
        self._drop(bad)
        if require_every_class:
            self._require_every_class(paths, targets, bad)
        return pixels

    def _decoded(
        self, preprocessing: Preprocessing, workers: int | None, cache: bool, progress: bool | None
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        key = _cache_key(self.paths, preprocessing) if cache else None
        folder = datasets_dir() / "arrays"
        if key is not None and (folder / f"{key}.npy").is_file() and (folder / f"{key}.json").is_file():
            try:
                bad = json.loads((folder / f"{key}.json").read_text())["skipped"]
                pixels = np.load(folder / f"{key}.npy", mmap_mode="r")
                if pixels.shape[0] == len(self) - len(bad):
                    return pixels, [(int(i), str(reason)) for i, reason in bad]
            except (OSError, ValueError, KeyError):
                pass  # an unreadable cache entry is rebuilt below
        return _decode_all(self.paths, preprocessing, workers, progress, folder if key else None, key)

    def _require_every_class(self, paths: list[str], targets: np.ndarray, bad: list[tuple[int, str]]) -> None:
        """Raise for the classes with no image left; ``paths``/``targets`` as before the decode's ``bad``."""
        counts = np.bincount(self.targets, minlength=len(self.classes))
        empty = [label for label in range(len(self.classes)) if counts[label] == 0]
        if not empty:
            return
        if len(empty) == len(self.classes) and len(self.classes) > 1:
            example = f" (e.g. {paths[bad[0][0]]}: {bad[0][1]})" if bad else ""
            raise DatasetError(
                f"{self.source}: none of the {len(paths)} images could be read{example}; "
                "check that the files are images",
                path=self.source,
            )
        label = empty[0]
        failed = [(i, reason) for i, reason in bad if targets[i] == label]
        name = self.classes[label]
        if failed:
            raise DatasetError(
                f"{self.source}: no readable image of class {name!r} is left ({len(failed)} unreadable file(s) skipped, "
                f"e.g. {paths[failed[0][0]]}: {failed[0][1]}); "
                "fix or replace them, or remove the class folder",
                path=self.source,
            )
        raise DatasetError(f"{self.source}: class {name!r} has no images; add images or remove the class",
                           path=self.source)

    def _drop(self, bad: list[tuple[int, str]]) -> None:
        if not bad:
            return
        positions = {i for i, _ in bad}
        newly = [(self.paths[i], reason) for i, reason in bad]
        keep = np.array([i not in positions for i in range(len(self.paths))], dtype=bool)
        self.paths = [p for p, k in zip(self.paths, keep) if k]
        self.targets = self.targets[keep]
        self.skipped.extend(newly)
        _warn_skipped(newly)


# -- loading --------------------------------------------------------------


def load_dataset(source: DatasetSource, *, min_per_class: int = 1) -> Dataset:
    """Read a labelled dataset from a class folder, a CSV, a ``.tar.gz`` or a dict.

    * a folder with one sub-folder per class (``root/<class>/*.jpg``; a
      folder holding a single folder is descended into, so ``cifar10/train/``
      inside an archive works);
    * a CSV of ``path,label`` rows (a header row is optional; paths are
      relative to the CSV's folder);
    * a ``.tar.gz`` / ``.tgz`` / ``.tar`` of such a folder, extracted once into the cache;
    * a dict ``{label: [image paths]}``.

    Classes are sorted by name. Raises :class:`~imagerec.core.errors.DatasetError`
    for an empty class, fewer than two classes or fewer than ``min_per_class``
    images in a class; warns (:class:`DatasetWarning`) when classes are
    imbalanced or files were skipped.
    """
    if isinstance(source, Dataset):
        dataset = source
    elif isinstance(source, Mapping):
        dataset = _from_mapping(source)
    else:
        path = Path(os.fspath(source))
        if not path.exists():
            raise DatasetError(
                f"{path}: no such folder or file (expected a folder with one sub-folder per class, a CSV or a .tar.gz)",
                path=str(path),
            )
        name = path.name.lower()
        if path.is_dir():
            dataset = _from_folder(path)
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            dataset = _from_folder(extract_archive(path, datasets_dir() / "extracted"), source_name=str(path))
        elif name.endswith(".csv"):
            dataset = _from_csv(path)
        else:
            raise DatasetError(
                f"{path}: not a dataset (expected a folder with one sub-folder per class, a .csv or a .tar.gz)",
                path=str(path),
            )
    _check(dataset, min_per_class)
    return dataset


def _from_mapping(mapping: Mapping[str, Sequence]) -> Dataset:
    classes = sorted(str(label) for label in mapping)
    index = {label: i for i, label in enumerate(classes)}
    paths, targets = [], []
    for label, files in mapping.items():
        if isinstance(files, (str, os.PathLike)):
            raise DatasetError(f"class {label!r}: expected a list of image paths, got a single path {os.fspath(files)!r}")
        for file in files:
            paths.append(os.fspath(file))
            targets.append(index[str(label)])
    order = sorted(range(len(paths)), key=lambda i: (targets[i], paths[i]))
    return Dataset([paths[i] for i in order], np.array([targets[i] for i in order], dtype=np.int64), classes, source="<dict>")


def _descend(root: Path) -> Path:
    """Skip wrapper folders: while a folder holds exactly one folder and no images, go inside."""
    current = root
    for _ in range(8):
        entries = [e for e in current.iterdir() if not e.name.startswith(".")]
        folders = [e for e in entries if e.is_dir()]
        images = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES]
        if len(folders) == 1 and not images and any(folders[0].iterdir()):
            inner = folders[0]
            # Stop when the single folder is itself a class (it holds images).
            if any(e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES for e in inner.iterdir()):
                break
            current = inner
        else:
            break
    return current


def read_class_folders(root: str | os.PathLike[str]) -> Dataset:
    """The images of a folder with one sub-folder per class, without :func:`load_dataset`'s checks.

    A folder holding a single folder is descended into (``wrap/train/cat``
    reads as classes under ``train``); an empty class folder raises
    :class:`~imagerec.core.errors.DatasetError`. Unlike :func:`load_dataset` one
    class is allowed and imbalance is not reported, for callers that add
    classes to something already learned.
    """
    return _from_folder(Path(os.fspath(root)))


def _from_folder(root: Path, source_name: str | None = None) -> Dataset:
    source = source_name or str(root)
    root = _descend(root)
    class_dirs = sorted(
        (e for e in root.iterdir() if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name
    )
    if not class_dirs:
        raise DatasetError(
            f"{source}: no class folders found (expected one sub-folder per class, e.g. {source}/cat/*.jpg)",
            path=source,
        )
    paths: list[str] = []
    targets: list[int] = []
    for label, folder in enumerate(class_dirs):
        files = expand_paths([folder], recursive=True)
        if not files:
            raise DatasetError(
                f"{folder}: class folder {folder.name!r} has no images "
                f"(expected {', '.join(sorted(IMAGE_SUFFIXES)[:4])}... files; add images or remove the folder)",
                path=str(folder),
            )
        paths.extend(files)
        targets.extend([label] * len(files))
    return Dataset(paths, np.array(targets, dtype=np.int64), [d.name for d in class_dirs], source=source)


def _from_csv(path: Path) -> Dataset:
    base = path.parent
    rows: list[tuple[str, str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) < 2:
                    raise DatasetError(
                        f"{path}:{number}: expected 'path,label', got {','.join(row)!r}", path=str(path)
                    )
                file, label = row[0].strip(), row[1].strip()
                if number == 1 and file.lower() in ("path", "file", "filename", "image") and label.lower() in (
                    "label", "class", "category"
                ):
                    continue  # header row
                if not label:
                    raise DatasetError(f"{path}:{number}: empty label for {file!r}", path=str(path))
                rows.append((file, label))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text CSV ({exc.reason})", path=str(path)) from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})", path=str(path)) from exc
    if not rows:
        raise DatasetError(f"{path}: no 'path,label' rows", path=str(path))
    classes = sorted({label for _, label in rows})
    index = {label: i for i, label in enumerate(classes)}
    paths, targets, skipped = [], [], []
    for file, label in rows:
        full = file if os.path.isabs(file) else str(base / file)
        if not os.path.isfile(full):
            skipped.append((full, "no such file"))
            continue
        paths.append(full)
        targets.append(index[label])
    if skipped:
        _warn_skipped(skipped)
    return Dataset(paths, np.array(targets, dtype=np.int64), classes, skipped, source=str(path))


def _check(dataset: Dataset, min_per_class: int) -> None:
    if len(dataset.classes) < 2:
        found = f"only {dataset.classes[0]!r}" if dataset.classes else "none"
        raise DatasetError(
            f"{dataset.source}: a classifier needs at least 2 classes, found {found} "
            "(add a sub-folder per class)",
            path=dataset.source,
        )
    counts = dataset.class_counts()
    small = {name: n for name, n in counts.items() if n < max(1, min_per_class)}
    if small:
        listed = ", ".join(f"{name!r} ({n})" for name, n in list(small.items())[:5])
        raise DatasetError(
            f"{dataset.source}: every class needs at least {max(1, min_per_class)} images; too few in {listed}",
            path=dataset.source,
        )
    if dataset.imbalance > IMBALANCE_WARNING_RATIO:
        largest = max(counts, key=counts.get)
        smallest = min(counts, key=counts.get)
        warnings.warn(
            f"{dataset.source}: classes are imbalanced ({largest!r} has {counts[largest]} images, "
            f"{smallest!r} {counts[smallest]}; ratio {dataset.imbalance:.1f})",
            DatasetWarning,
            stacklevel=3,
        )


def _warn_skipped(skipped: list[tuple[str, str]]) -> None:
    shown = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
    more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
    warnings.warn(f"skipped {len(skipped)} unreadable file(s): {shown}{more}", DatasetWarning, stacklevel=3)


# -- decoding and the cache -----------------------------------------------


def _cache_key(paths: Sequence[str], preprocessing: Preprocessing) -> str:
    """A digest of every file's bytes (in order) and the preprocessing.

    Hashing the bytes of every file on each run would cost as much as a
    small decode, so the content digest is memoised under a digest of the
    files' (path, size, mtime): an unchanged tree is recognised from ``stat``.
    """
    recipe = json.dumps({"v": _CACHE_VERSION, "pre": preprocessing.to_dict()}, sort_keys=True).encode()
    stat_digest = hashlib.sha256(recipe)
    for path in paths:
        try:
            info = os.stat(path)
            stat_digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            stat_digest.update(f"{path}\0missing\n".encode())
    memo = datasets_dir() / "keys" / stat_digest.hexdigest()
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    content = hashlib.sha256(recipe)
    for path in paths:
        try:
            with open(path, "rb") as handle:
                content.update(hashlib.sha256(handle.read()).digest())
        except OSError:
            content.update(b"missing")
    key = content.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo, key)
    except OSError:
        pass  # no memo: the next run hashes again, nothing worse
    return key


def _decode_all(
    paths: Sequence[str],
    preprocessing: Preprocessing,
    workers: int | None,
    progress: bool | None,
    folder: Path | None,
    key: str | None,
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode in parallel into a (memory-mapped) array; return it and the failures.

    With a cache ``folder`` the array is written to ``<key>.npy`` there
    (atomically, so a reader never maps a half-decoded cache) and
    ``<key>.json`` records the files that could not be decoded.
    """
    height, width = preprocessing.size
    shape = (len(paths), height, width, 3)
    if folder is None:
        out = np.empty(shape, np.uint8)
        count, bad = _decode_into(out, paths, preprocessing, workers, progress)
        return out[:count], bad
    final = folder / f"{key}.npy"
    with atomic_path(final) as staged:
        out = np.lib.format.open_memmap(staged, mode="w+", dtype=np.uint8, shape=shape)
        count, bad = _decode_into(out, paths, preprocessing, workers, progress)
        out.flush()
        del out  # unmapped before the file is replaced (Windows cannot replace a mapped file)
        if count < len(paths):
            _keep_first_rows(staged, count)
    atomic_write_text(folder / f"{key}.json", json.dumps({"skipped": bad, "count": count}))
    return np.load(final, mmap_mode="r"), bad


def _decode_into(
    out: np.ndarray, paths: Sequence[str], preprocessing: Preprocessing, workers: int | None, progress: bool | None
) -> tuple[int, list[tuple[int, str]]]:
    """Decode ``paths`` into the first rows of ``out``, in order; return the count and the failures."""
    bad: list[tuple[int, str]] = []
    count = 0
    # By default only a large decode on a terminal shows a bar.
    enabled = progress if progress is not None else (None if len(paths) >= PROGRESS_MIN_IMAGES else False)
    with progress_bar(len(paths), "decoding", enabled=enabled) as advance:
        for item in decode_ordered(paths, preprocessing, workers=workers):
            if item.error is not None:
                bad.append((item.position, getattr(item.error, "reason", str(item.error))))
            else:
                out[count] = item.array
                count += 1
            advance()
    return count, bad


def _keep_first_rows(path: Path, count: int) -> None:
    """Replace the ``.npy`` file at ``path`` by one holding only its first ``count`` rows."""
    full = np.load(path, mmap_mode="r")
    with atomic_path(path) as compact_path:
        compact = np.lib.format.open_memmap(compact_path, mode="w+", dtype=full.dtype, shape=(count, *full.shape[1:]))
        for start in range(0, count, 4096):  # bounded copies, not the whole array in memory
            compact[start : start + 4096] = full[start : min(start + 4096, count)]
        compact.flush()
        del compact, full  # unmapped before the file is replaced
