"""The ``.imagerec`` file: a learned recognizer in one zip, no pickled code.

Layout::

    manifest.json      format + version, backbone (name, sha256, preprocessing),
                       labels, head type and settings, threshold, calibration,
                       metrics, training summary, creation time, and the
                       sha256 / shape / dtype of every array
    manifest.sha256    sha256 of manifest.json's bytes
    arrays/<name>.npy  the head's learned state as plain NumPy arrays

Loading refuses, with a one-line error: a file that is not such a zip; a
format version newer than this imagerec reads; a manifest whose bytes do not
match ``manifest.sha256``; an array whose bytes, shape or dtype differ from
the manifest; and a backbone whose sha256 is not the one the head was
learned on. The checksums catch corruption and careless edits; they are not
a signature (anyone can recompute them), so only load files you trust as
much as any model file.

Against a hostile file, everything cheap is checked before anything costly,
in this order: the zip's directory (no two members with one name or one
place in the file, at most 4 GiB unpacked), the manifest (at most 16 MiB,
bounded JSON, its sha256, then :class:`~imagerec.core.metadata.LearnedManifest`),
the memory the arrays will take once loaded (declared shapes, at most 1 GiB
in all, each member's size agreeing with its shape before it is read), each
array's sha256 and ``.npy`` header (read with ``allow_pickle=False``; no NaN
or infinity), the backbone's sha256 as far as it can be known without
building it (zoo and Keras backbones) — and only then is a backbone built.

>>> import imagerec, tempfile, os
>>> photos = "../shared/photos/few-shot"
>>> model = imagerec.learn({"cat": [f"{photos}/cat_train_0.bmp"], "dog": [f"{photos}/dog_train_0.bmp"]},
...                        head="imprint", threshold=None)
>>> path = model.save(os.path.join(tempfile.mkdtemp(), "pets.imagerec"))
>>> imagerec.load(path).labels
['cat', 'dog']
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import ChecksumError, ModelFileError, UnknownModelError, UsageError
from ..core.metadata import LearnedManifest, parse_json, validate_block
from ..core.fs import atomic_path
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.preprocessing import Preprocessing
from ..recognizer import Recognizer
from ..zoo import sha256_file
from .backbones import KINDS, rebuild_backbone
from .heads import head_from_state

__all__ = [
    "FORMAT", "FORMAT_VERSION", "SUFFIX", "LearnedRecognizer", "save_recognizer", "load_learned", "read_manifest",
    "timestamp",
]

FORMAT = "imagerec-learned"
FORMAT_VERSION = 1
SUFFIX = ".imagerec"

# Bounds that keep a hostile file from exhausting memory.
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
_MAX_ARRAY_BYTES = 1024 * 1024 * 1024  # all arrays, as they will sit in memory
_MAX_NPY_HEADER = 64 * 1024


class LearnedRecognizer(Recognizer):
    """A recognizer made by :func:`imagerec.learn`: a frozen backbone and a learned head, savable as ``.imagerec``."""

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this recognizer to a ``.imagerec`` file, atomically; ``imagerec.load`` reads it back."""
        return save_recognizer(self, path)

    # Grad-CAM through a Keras backbone and the head (imagerec.transfer.gradients); None: occlusion.
    @property
    def gives_gradients(self) -> bool:
        return self._gradients() is not None

    def gradients(self):
        source = self._gradients()
        return source() if source is not None else None

    def _gradients(self):
        if "_gradient_source" not in self.__dict__:
            from .gradients import gradient_source

            self._gradient_source = gradient_source(self.metadata.get("backbone"), self.preprocessing.normalization,
                                                    lambda: self.head)
        return self._gradient_source


def timestamp() -> str:
    """Now, in UTC to the second, as the manifest's ``created`` and ``saved`` record it."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_recognizer(recognizer, path: str | os.PathLike[str]) -> Path:
    """Write ``recognizer`` (made by :func:`imagerec.learn`) to ``path``, atomically.

    The file is written under a temporary name and renamed when complete,
    so an interrupted save never leaves a half-written recognizer behind.
    """
    from ..core.version import __version__

    head = recognizer.head
    backbone = recognizer.metadata.get("backbone")
    if head is None or not backbone:
        raise UsageError("only a recognizer made by imagerec.learn (with a head and a backbone) can be saved")
    path = Path(path)
    if path.suffix.lower() != SUFFIX:
        raise UsageError(f"{path}: a learned recognizer file must end in {SUFFIX}")
    arrays = {name: np.asarray(value) for name, value in head.arrays().items()}
    blobs = {name: _npy_bytes(value) for name, value in arrays.items()}
    metadata = recognizer.metadata
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "imagerec_version": __version__,
        "created": metadata.get("created") or timestamp(), "saved": timestamp(), "name": path.stem,
        "backbone": backbone, "preprocessing": recognizer.preprocessing.to_dict(), "labels": list(recognizer.labels),
        "head": {"type": head.kind, "params": head.params()}, "threshold": recognizer.threshold,
        "calibration": metadata.get("calibration"), "metrics": metadata.get("metrics", {}),
        "training": metadata.get("training", {}),
        "arrays": {
            name: {"file": f"arrays/{name}.npy", "sha256": hashlib.sha256(blobs[name]).hexdigest(),
                   "shape": list(arrays[name].shape), "dtype": str(arrays[name].dtype)}
            for name in arrays
        },
    }
    manifest_bytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
    try:
        with atomic_path(path) as temp, zipfile.ZipFile(temp, "w") as archive:
            archive.writestr("manifest.json", manifest_bytes, compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr("manifest.sha256", hashlib.sha256(manifest_bytes).hexdigest() + "\n")
            for name, blob in blobs.items():
                archive.writestr(manifest["arrays"][name]["file"], blob, compress_type=zipfile.ZIP_DEFLATED)
    except OSError as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(
            f"{path}: cannot save the learned recognizer ({exc.strerror or exc}); any previous file there is unchanged",
            path=str(path),
        ) from exc
    return path


def read_manifest(path: str | os.PathLike[str]) -> dict:
    """The verified manifest of a ``.imagerec`` file (arrays are not read)."""
    with _open_zip(Path(path)) as archive:
        return _verified_manifest(archive, Path(path))


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such learned recognizer file", path=str(path))
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(
            f"{path}: not a learned recognizer (expected a {SUFFIX} zip written by imagerec learn)", path=str(path)
        ) from exc
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    problem = None
    if total > _MAX_TOTAL_BYTES:
        problem = f"unpacks to {total:,} bytes, over the {_MAX_TOTAL_BYTES:,} limit"
    elif len({info.filename for info in infos}) != len(infos):
        problem = "holds two members with the same name"
    elif len({info.header_offset for info in infos}) != len(infos):  # one member's bytes under several names
        problem = "lists one member's bytes under several names"
    if problem:
        archive.close()
        raise ModelFileError(f"{path}: {problem}; not a file imagerec wrote", path=str(path))
    return archive


def _read_member(archive: zipfile.ZipFile, name: str, path: Path, limit: int | None = None) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{path}: {name} is missing; the file is incomplete or not a learned recognizer",
                             path=str(path)) from None
    if limit is not None and info.file_size > limit:
        raise ModelFileError(f"{path}: {name} is {info.file_size:,} bytes, over the {limit:,} limit", path=str(path))
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC mismatch, truncation
        raise ModelFileError(f"{path}: {name} is damaged ({exc})", path=str(path)) from exc


def _verified_manifest(archive: zipfile.ZipFile, path: Path) -> dict:
    raw = _read_member(archive, "manifest.json", path, _MAX_MANIFEST_BYTES)
    manifest = parse_json(raw, str(path), "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a learned recognizer (manifest format is not {FORMAT!r})", path=str(path))
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: manifest has no valid format_version (got {version!r})", path=str(path))
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written by a newer imagerec ({manifest.get('imagerec_version', '?')}, file format {version}); "
            f"this imagerec reads format {FORMAT_VERSION} at most — upgrade imagerec to load it",
            path=str(path),
        )
    recorded = _read_member(archive, "manifest.sha256", path, 1024).decode("ascii", "replace").strip()
    actual = hashlib.sha256(raw).hexdigest()
    if recorded != actual:
        raise ChecksumError(
            f"{path}: manifest.json was modified after saving (sha256 {actual[:16]}…, recorded {recorded[:16]}…); "
            "refusing to load it — learn the recognizer again or restore the original file",
            path=str(path),
        )
    validate_block(manifest, LearnedManifest, str(path), "manifest")
    _check_array_sizes(archive, manifest, path)
    return manifest


def _check_array_sizes(archive: zipfile.ZipFile, manifest: dict, path: Path) -> None:
    """Refuse, before reading any array, what they would cost: each name counted as it will be held."""
    entries = manifest["arrays"].values()
    files = [entry["file"] for entry in entries]
    if len(set(files)) != len(files):  # one member read under two names would multiply memory
        raise ModelFileError(f"{path}: the manifest names one array file for two arrays", path=str(path))
    needed = {entry["file"]: math.prod(entry["shape"]) * np.dtype(entry["dtype"]).itemsize for entry in entries}
    if sum(needed.values()) > _MAX_ARRAY_BYTES:
        raise ModelFileError(f"{path}: its arrays would take {sum(needed.values()):,} bytes of memory, over the "
                             f"{_MAX_ARRAY_BYTES:,} limit", path=str(path))
    for file, size in needed.items():
        try:
            stored = archive.getinfo(file).file_size
        except KeyError:
            raise ModelFileError(f"{path}: {file} is missing; the file is incomplete or not a learned recognizer",
                                 path=str(path)) from None
        if not size < stored <= size + _MAX_NPY_HEADER:
            raise ModelFileError(f"{path}: {file} is {stored:,} bytes, which cannot hold the array the manifest "
                                 f"describes ({size:,} bytes of data)", path=str(path))


def _read_arrays(archive: zipfile.ZipFile, manifest: dict, path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for name, entry in manifest["arrays"].items():
        blob = _read_member(archive, entry["file"], path)
        if hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
            raise ChecksumError(
                f"{path}: {entry['file']} does not match the sha256 in the manifest; the file is corrupt or was "
                "modified — learn the recognizer again or restore the original file",
                path=str(path),
            )
        array = _npy_array(blob, entry, path)
        del blob
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ModelFileError(f"{path}: {entry['file']} holds NaN or infinite values; the head is damaged",
                                 path=str(path))
        arrays[name] = array
    return arrays


def _npy_array(blob: bytes, entry: dict, path: Path) -> np.ndarray:
    """The array in ``blob``, once its header agrees with the manifest and with the bytes that follow it."""
    stream = io.BytesIO(blob)
    headers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(stream)
        if version not in headers:  # np.save writes 1.0 (2.0 for huge headers) for plain numeric arrays
            raise ValueError(f"unsupported .npy version {version}")
        shape, _, dtype = headers[version](stream)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {entry['file']} is not a plain .npy array ({exc})", path=str(path)) from exc
    if list(shape) != entry["shape"] or str(dtype) != entry["dtype"]:
        raise ModelFileError(
            f"{path}: {entry['file']} is {dtype} {shape}, the manifest says {entry['dtype']} {tuple(entry['shape'])}",
            path=str(path),
        )
    data = len(blob) - stream.tell()
    if data != math.prod(shape) * dtype.itemsize:  # checked before numpy allocates the array
        raise ModelFileError(f"{path}: {entry['file']} holds {data:,} bytes of data, not a {dtype} {shape} array",
                             path=str(path))
    return np.load(io.BytesIO(blob), allow_pickle=False)


def load_learned(
    path: str | os.PathLike[str], *, num_threads: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> LearnedRecognizer:
    """Open a ``.imagerec`` file as a :class:`~imagerec.Recognizer` (``imagerec.load`` calls this).

    ``imagerec.load(path, threshold=...)`` overrides the calibrated threshold
    (a number, or None to never answer "unknown").
    """
    path = Path(path)
    with _open_zip(path) as archive:
        manifest = _verified_manifest(archive, path)
        arrays = _read_arrays(archive, manifest, path)
    backbone = _backbone(manifest, path, num_threads)
    labels = [str(label) for label in manifest["labels"]]
    head = head_from_state(manifest["head"].get("type"), manifest["head"].get("params") or {}, arrays, labels)
    if head.num_features != backbone.dim:
        raise ModelFileError(
            f"{path}: the head takes {head.num_features}-d embeddings, the backbone gives {backbone.dim}-d",
            path=str(path),
        )
    metadata = {key: manifest.get(key) for key in ("backbone", "created", "calibration", "metrics", "training")}
    metadata["path"] = str(path)
    return LearnedRecognizer(
        backbone.backend, labels, backbone.preprocessing, name=manifest.get("name") or path.stem,
        sha256=sha256_file(path), limits=limits, head=head, threshold=manifest.get("threshold"), metadata=metadata,
    )


def _backbone(manifest: dict, path: Path, num_threads: int | None):
    """The backbone the manifest names, with the weights the head was learned on and the head's preprocessing."""
    described = manifest["backbone"]
    name, expected_sha = described.get("name"), described.get("sha256")
    if not isinstance(name, str) or not isinstance(expected_sha, str):
        raise ModelFileError(f"{path}: the manifest's backbone entry is incomplete (no name or sha256)", path=str(path))
    if (described.get("kind") or "zoo") not in KINDS:  # the first files had no kind: a zoo model
        raise ModelFileError(f"{path}: backbone kind {described['kind']!r} is not one of {', '.join(KINDS)}; "
                             "a newer imagerec may read it", path=str(path))
    known = _backbone_sha256_unbuilt(described, path)  # before building: a Keras backbone takes seconds
    if known is not None and known != expected_sha:
        _wrong_backbone(path, name, expected_sha, known)
    try:
        backbone = rebuild_backbone(described, num_threads=num_threads)
    except UnknownModelError:
        raise
    except (KeyError, TypeError, AttributeError, RecursionError) as exc:  # options that are not the builder's
        raise ModelFileError(f"{path}: the manifest's backbone entry is invalid ({exc})", path=str(path)) from exc
    if backbone.sha256 != expected_sha:
        _wrong_backbone(path, name, expected_sha, backbone.sha256)
    try:
        preprocessing = Preprocessing.from_dict(manifest.get("preprocessing") or described["preprocessing"])
    except (UsageError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the manifest's preprocessing is invalid ({exc})", path=str(path)) from exc
    # The resize policy and the frame are the head's (it was learned on such
    # pictures); the input size and normalisation are the network's and must match.
    if preprocessing.size != backbone.preprocessing.size or preprocessing.normalization != backbone.preprocessing.normalization:
        raise ModelFileError(
            f"{path}: preprocessing {preprocessing.to_dict()} differs from the backbone's "
            f"{backbone.preprocessing.to_dict()}",
            path=str(path),
        )
    return dataclasses.replace(backbone, preprocessing=preprocessing)


def _wrong_backbone(path: Path, name: str, expected: str, actual: str) -> None:
    raise ChecksumError(
        f"{path}: learned on backbone {name!r} with sha256 {expected[:16]}…, but the {name!r} here has "
        f"sha256 {actual[:16]}…; its embeddings would not match — learn the recognizer again with this backbone",
        path=str(path),
    )


def _backbone_sha256_unbuilt(described: dict, path: Path) -> str | None:
    """The sha256 the described backbone will have, where it is known without building it (else None)."""
    from .. import zoo

    kind = described.get("kind") or "zoo"
    if kind == "zoo":
        return zoo.get(described["name"]).model.identity  # UnknownModelError for a name the zoo lacks
    if kind != "keras":
        return None
    from .backbones.keras import APPLICATIONS, backbone_digest

    options = dict(described.get("options") or {})
    application = options.pop("application", None) or str(described["name"]).removeprefix("keras:")
    if application not in APPLICATIONS:
        raise ModelFileError(f"{path}: backbone {application!r} is not a Keras application imagerec knows", path=str(path))
    size = options.get("input_size") or APPLICATIONS[application].default_size
    try:
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return backbone_digest(application, weights=options.get("weights", "imagenet"), pooling=options.get("pooling", "avg"),
                               size=(height, width), seed=int(options.get("seed", 0)))
    except (TypeError, ValueError, IndexError, OSError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: the manifest's backbone options are invalid ({exc})", path=str(path)) from exc
