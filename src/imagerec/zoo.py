"""Named pretrained models: their specs, where their files live, and downloads.

A model file is looked for, in order, in the folder named by
``IMAGEREC_MODEL_DIR``, then in imagerec's cache folder (``IMAGEREC_CACHE_DIR``
or the platform's user cache), and only then downloaded from its public
address pinned to a commit. Every file is checked against its pinned digest
(sha256; md5 where the publisher gives only that, as Keras does for most of
its Applications' weights) wherever it came from; a download is streamed to a temporary name and renamed
into place only once complete and verified, so a partial or corrupt file is
never used. ``IMAGEREC_OFFLINE=1`` forbids downloads.

>>> from imagerec import zoo
>>> zoo.get("mobilenet_v2").input_size
(224, 224)
>>> "inat_birds" in [spec.name for spec in zoo.list_models()]
True
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import platformdirs

from .core.errors import ChecksumError, DownloadError, ModelFileError, OfflineError, UnknownModelError
from .core.fs import atomic_path
from .core.preprocessing import Preprocessing
from .core.progress import progress as progress_bar

__all__ = [
    "RemoteFile",
    "ModelSpec",
    "register",
    "get",
    "list_models",
    "find_by_sha256",
    "cache_dir",
    "model_dirs",
    "fetch",
    "download",
    "sha256_file",
    "file_digest",
    "read_labels",
    "DEFAULT_MODEL",
]

DEFAULT_MODEL = "mobilenet_v2"

_CORAL = "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
_CORAL_LICENSE = "Apache-2.0 (google-coral/test_data)"


@dataclass(frozen=True)
class RemoteFile:
    """A file with a public address and a pinned digest.

    ``sha256`` holds the file's sha256 (64 hex digits) or, for files whose
    publisher pins only an md5 (Keras Applications' weights), that md5 (32
    hex digits): :attr:`algorithm` says which.

    >>> RemoteFile("a.txt", "https://example.org/a.txt", "0" * 64).filename
    'a.txt'
    >>> RemoteFile("w.h5", "https://example.org/w.h5", "0" * 32).algorithm
    'md5'
    """

    filename: str
    url: str
    sha256: str

    @property
    def algorithm(self) -> str:
        return _algorithm(self.sha256)

    @property
    def identity(self) -> str:
        """64 hex digits naming the file's content: its sha256, or a sha256 derived from its md5.

        What a recognizer's ``sha256`` (and a learned recognizer's backbone) is keyed by.

        >>> len(RemoteFile("w.h5", "https://example.org/w.h5", "0" * 32).identity)
        64
        """
        if self.algorithm == "sha256":
            return self.sha256
        return hashlib.sha256(f"{self.algorithm}:{self.sha256}".encode()).hexdigest()


def _algorithm(digest: str) -> str:
    return "md5" if len(digest) == 32 else "sha256"


@dataclass(frozen=True)
class ModelSpec:
    """Everything imagerec needs to know to fetch, trust and run a model.

    ``embedding_tensor`` names the tensor whose value is the image embedding;
    ``logits_tensor`` the pre-softmax scores when the model exposes them (their
    softmax is finer-grained than a uint8 softmax output). Labels equal to
    ``background_label`` are never returned as predictions; when it is the
    first of the labels (the 1001-output ImageNet models), that output is
    dropped, so label indices are ImageNet-1k's as Keras numbers them.
    """

    name: str
    description: str
    task: Literal["classify", "embed"]
    model: RemoteFile
    license: str
    preprocessing: Preprocessing
    labels: RemoteFile | None = None
    embedding_tensor: str | None = None
    embedding_dim: int | None = None
    logits_tensor: str | None = None
    background_label: str | None = "background"
    label_synonyms: bool = False  # label lines read "name, synonym, ..." (ImageNet)
    backend: str = "litert"  # "litert" (a .tflite file) or "keras" (a Keras application's weights, run as ONNX)
    aliases: tuple[str, ...] = field(default=())
    application: str | None = None  # the keras.applications builder of a "keras" model
    top1: float | None = None  # published ImageNet top-1 accuracy, %
    size_mb: float | None = None  # the model file's size as published

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessing.size

    def to_dict(self) -> dict:
        """A JSON-ready description (used by ``imagerec models info``)."""
        return {
            "name": self.name,
            "description": self.description,
            "task": self.task,
            "backend": self.backend,
            "file": self.model.filename,
            "url": self.model.url,
            "sha256": self.model.sha256,
            "hash": self.model.algorithm,  # "md5" where the publisher pins only that (Keras's weights)
            "license": self.license,
            "input_size": list(self.input_size),
            "preprocessing": self.preprocessing.to_dict(),
            "labels": None
            if self.labels is None
            else {"file": self.labels.filename, "url": self.labels.url, "sha256": self.labels.sha256},
            "embedding_tensor": self.embedding_tensor,
            "embedding_dim": self.embedding_dim,
            "logits_tensor": self.logits_tensor,
            "application": self.application,
            "top1": self.top1,
            "size_mb": self.size_mb,
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry under its name and aliases.

    >>> spec = get("mobilenet_v2")
    >>> register(spec, replace=True) is spec
    True
    """
    for key in (spec.name, *spec.aliases):
        if key in _REGISTRY and not replace and _REGISTRY[key] is not spec:
            raise ValueError(f"a model named {key!r} is already registered")
        _REGISTRY[key] = spec
    return spec


def get(name: str) -> ModelSpec:
    """The spec registered as ``name``; ``UnknownModelError`` lists the names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted({spec.name for spec in _REGISTRY.values()}))
        raise UnknownModelError(
            f"no model named {name!r}; known models: {known} (or pass a model file path)", name=name
        ) from None


def list_models() -> list[ModelSpec]:
    """Registered specs, once each, in registration order."""
    seen: dict[str, ModelSpec] = {}
    for spec in _REGISTRY.values():
        seen.setdefault(spec.name, spec)
    return list(seen.values())


def find_by_sha256(sha256: str) -> ModelSpec | None:
    """The registered model whose file has this sha256, if any.

    >>> find_by_sha256(get("mobilenet_v2").model.sha256).name
    'mobilenet_v2'
    """
    for spec in list_models():
        if spec.model.sha256 == sha256.lower():
            return spec
    return None


def cache_dir() -> Path:
    """Where downloaded files are kept: ``IMAGEREC_CACHE_DIR`` or the user cache."""
    override = os.environ.get("IMAGEREC_CACHE_DIR")
    base = Path(override) if override else Path(platformdirs.user_cache_dir("imagerec"))
    return base / "models"


def model_dirs() -> list[Path]:
    """Folders searched before downloading, in order."""
    dirs = []
    for entry in os.environ.get("IMAGEREC_MODEL_DIR", "").split(os.pathsep):
        if entry:
            dirs.append(Path(entry))
    dirs.append(cache_dir())
    return dirs


def _offline() -> bool:
    return os.environ.get("IMAGEREC_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


_HASH_MEMO: dict[tuple[str, int, int, str], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, remembered per (path, size, mtime) in this process.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    return file_digest(path, "sha256")


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest (``"sha256"`` or ``"md5"``) of a file, remembered per (path, size, mtime, algorithm)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, algorithm)
    if key not in _HASH_MEMO:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASH_MEMO[key] = digest.hexdigest()
    return _HASH_MEMO[key]


def fetch(remote: RemoteFile, *, progress: bool | None = None) -> Path:
    """Path of a verified local copy of ``remote``, downloading it if needed.

    A file in ``IMAGEREC_MODEL_DIR`` with the wrong checksum is an error (it
    is the user's file, so it is left alone); a cached one is deleted and
    fetched again.
    """
    user_dirs = model_dirs()[:-1]
    for folder in user_dirs:
        candidate = folder / remote.filename
        if candidate.is_file():
            actual = file_digest(candidate, remote.algorithm)
            if actual != remote.sha256:
                raise ChecksumError(
                    f"{candidate}: {remote.algorithm} is {actual}, expected {remote.sha256}; "
                    f"replace it with the file from {remote.url}",
                    path=str(candidate),
                )
            return candidate
    cached = cache_dir() / remote.filename
    if cached.is_file():
        if file_digest(cached, remote.algorithm) == remote.sha256:
            return cached
        cached.unlink(missing_ok=True)  # corrupt cache entry: never used, fetched again below
    if _offline():
        places = " or ".join(str(folder) for folder in [*user_dirs, cache_dir()])
        raise OfflineError(
            f"{remote.filename} is needed but IMAGEREC_OFFLINE=1 forbids downloading it; "
            f"put the file from {remote.url} ({remote.algorithm} {remote.sha256}) in {places}",
            url=remote.url,
            path=str(cached),
        )
    return download(remote.url, cached, remote.sha256, progress=progress)


def download(url: str, dest: str | os.PathLike[str], sha256: str, *, progress: bool | None = None) -> Path:
    """Stream ``url`` to ``dest`` through a temporary file; verify; rename.

    Raises ``DownloadError`` on network or HTTP failure and ``ChecksumError``
    when the content is not the pinned one; in both cases nothing is left at
    ``dest`` and the temporary file is removed. ``sha256`` may be an md5
    (32 hex digits) for files pinned that way.
    """
    import httpx

    dest = Path(dest)
    algorithm = _algorithm(sha256)
    digest = hashlib.new(algorithm)
    try:
        # The checksum is checked inside the block: a wrong one raises, so the
        # temporary file is removed and never renamed into place.
        with atomic_path(dest) as temp:
            with open(temp, "wb") as handle, httpx.stream("GET", url, follow_redirects=True, timeout=60.0) as response:
                if response.status_code != 200:
                    raise DownloadError(f"downloading {url} failed: HTTP {response.status_code}", url=url)
                total = int(response.headers.get("content-length") or 0) or None
                with progress_bar(total, f"downloading {dest.name}", enabled=progress, unit="bytes") as advance:
                    for chunk in response.iter_bytes(1 << 16):
                        handle.write(chunk)
                        digest.update(chunk)
                        advance(len(chunk))
            actual = digest.hexdigest()
            if actual != sha256:
                raise ChecksumError(
                    f"downloaded {url} has {algorithm} {actual}, expected {sha256}; the file was discarded "
                    "(a truncated transfer or a changed upstream file)",
                    url=url,
                    path=str(dest),
                )
    except httpx.HTTPError as exc:
        raise DownloadError(f"downloading {url} failed: {exc or type(exc).__name__}", url=url) from exc
    return dest


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Labels from a text file: one per line, or ``index  name`` per line.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "l.txt"; _ = p.write_text("0  cat\\n1  dog\\n")
    >>> read_labels(p)
    ['cat', 'dog']
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read labels ({exc})", path=str(path)) from exc
    while lines and not lines[-1].strip():
        lines.pop()
    split = [line.strip().split(maxsplit=1) for line in lines]
    indexed = bool(split) and all(len(parts) == 2 and parts[0].isdigit() for parts in split)
    if not indexed:
        return [line.strip() for line in lines]
    labels: dict[int, str] = {int(parts[0]): parts[1].strip() for parts in split}
    size = max(labels) + 1
    return [labels.get(index, f"class_{index}") for index in range(size)]


def _coral(filename: str, sha256: str) -> RemoteFile:
    return RemoteFile(filename, _CORAL + filename, sha256)


_IMAGENET_LABELS = _coral("imagenet_labels.txt", "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1")
_UINT8_224 = Preprocessing(size=(224, 224), resize="crop", normalization="uint8")

register(
    ModelSpec(
        name="mobilenet_v2",
        description="MobileNet V2 1.0 224, ImageNet-1k, int8 (uint8 in/out); top-1 70.8 %",
        task="classify",
        model=_coral(
            "mobilenet_v2_1.0_224_quant.tflite", "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
        ),
        license=_CORAL_LICENSE,
        preprocessing=_UINT8_224,
        labels=_IMAGENET_LABELS,
        label_synonyms=True,
        embedding_tensor="MobilenetV2/Logits/AvgPool",
        embedding_dim=1280,
        logits_tensor="MobilenetV2/Logits/Squeeze1",
    )
)
register(
    ModelSpec(
        name="mobilenet_v2_tf2",
        description="MobileNet V2 1.0 224 (TF2, post-training quantised), ImageNet-1k, uint8 in/out",
        task="classify",
        model=_coral(
            "tf2_mobilenet_v2_1.0_224_ptq.tflite", "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c"
        ),
        license=_CORAL_LICENSE,
        preprocessing=_UINT8_224,
        labels=_IMAGENET_LABELS,
        label_synonyms=True,
        embedding_tensor=(
            "MobileNetV2/top/Reshape/Reshape;StatefulPartitionedCall/MobileNetV2/top/Reshape/Reshape;"
            "MobileNetV2/top/GlobalPool/Mean/reduction_indices;"
            "StatefulPartitionedCall/MobileNetV2/top/GlobalPool/Mean/reduction_indices;"
            "MobileNetV2/top/GlobalPool/Mean;StatefulPartitionedCall/MobileNetV2/top/GlobalPool/Mean;"
            "MobileNetV2/top/Reshape/Reshape/shape;StatefulPartitionedCall/MobileNetV2/top/Reshape/Reshape/shape1"
        ),
        embedding_dim=1280,
    )
)
register(
    ModelSpec(
        name="mobilenet_v1_embedder",
        description="MobileNet V1 1.0 224 without its classifier: a 1024-d image embedding (uint8)",
        task="embed",
        model=_coral(
            "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
            "f409ef4f73fcbb9667841965623c5c8524aac33d41b9bf5f3667161fb4a76319",
        ),
        license=_CORAL_LICENSE,
        preprocessing=_UINT8_224,
        embedding_tensor="MobilenetV1/Logits/AvgPool_1a/AvgPool",
        embedding_dim=1024,
    )
)
register(
    ModelSpec(
        name="inat_birds",
        description="MobileNet V2 1.0 224 trained on iNaturalist birds (964 species), uint8",
        task="classify",
        model=_coral(
            "mobilenet_v2_1.0_224_inat_bird_quant.tflite",
            "350fcd8cf1df1560060d464595dfed8b174b05792788052896004848d9ad04f9",
        ),
        license=_CORAL_LICENSE,
        preprocessing=_UINT8_224,
        labels=_coral("inat_bird_labels.txt", "a16108dfe3f8daff015b87a97ab6a17e717b9b1bccd719f6d8f747746d7b9277"),
        embedding_tensor="AvgPool/AvgPool",
        embedding_dim=1280,
        logits_tensor="Logits/MatMul;Logits/BiasAdd",
    )
)

# Keras Applications: the course's VGG16 and ResNet50, and the models a user
# would pick today on a CPU — EfficientNetV2 B0 (best accuracy for its cost)
# and S (the most accurate under ~100 MB), ConvNeXt Tiny (a modern
# convolutional net, 81 %), MobileNetV3 Large (the light one). Weights come
# from the addresses Keras's own code uses, pinned by the hashes Keras
# publishes beside them (keras/src/applications/*.py); top-1 and sizes are
# from the Keras Applications table. They run through ONNX Runtime
# (formats.keras_apps converts each once). The preprocessing is the model's
# own: caffe (BGR minus the ImageNet mean) for VGG16/ResNet50; the others
# rescale raw 0–255 pixels inside the network (include_preprocessing).
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_KERAS_LICENSE = "Apache-2.0 (Keras Applications weights)"


def _keras(name: str, application: str, path: str, digest: str, *, size: int, normalization: str, top1: float,
           size_mb: float, embedding: str, dim: int, what: str, aliases: tuple[str, ...] = ()) -> ModelSpec:
    filename = path.rsplit("/", 1)[-1]
    return ModelSpec(
        name=name,
        description=f"{what} (Keras Applications, float), ImageNet-1k; top-1 {top1} %",
        task="classify",
        model=RemoteFile(filename, _KERAS + path, digest),
        license=_KERAS_LICENSE,
        preprocessing=Preprocessing(size=(size, size), resize="crop", normalization=normalization),
        labels=_IMAGENET_LABELS,
        label_synonyms=True,
        embedding_tensor=embedding,  # a Keras layer name for these
        embedding_dim=dim,
        backend="keras",
        aliases=(f"keras:{application}", *aliases),
        application=application,
        top1=top1,
        size_mb=size_mb,
    )


for _spec in (
    _keras("vgg16", "VGG16", "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b",
           size=224, normalization="caffe", top1=71.3, size_mb=528, embedding="fc2", dim=4096, what="VGG16"),
    _keras("resnet50", "ResNet50", "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
           "2cb95161c43110f7111970584f804107", size=224, normalization="caffe", top1=74.9, size_mb=98,
           embedding="avg_pool", dim=2048, what="ResNet50"),
    _keras("efficientnet_v2_b0", "EfficientNetV2B0", "efficientnet_v2/efficientnetv2-b0.h5",
           "21ecbf6da12460d5c40bb2f29ceb2188", size=224, normalization="uint8", top1=78.7, size_mb=29,
           embedding="avg_pool", dim=1280, what="EfficientNetV2 B0"),
    _keras("efficientnet_v2_s", "EfficientNetV2S", "efficientnet_v2/efficientnetv2-s.h5",
           "e1d88a8495beba45748fedd0cecbe016", size=384, normalization="uint8", top1=83.9, size_mb=88,
           embedding="avg_pool", dim=1280, what="EfficientNetV2 S, 384 px"),
    _keras("convnext_tiny", "ConvNeXtTiny", "convnext/convnext_tiny.h5",
           "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff", size=224, normalization="uint8",
           top1=81.3, size_mb=109.42, embedding="convnext_tiny_head_layernorm", dim=768, what="ConvNeXt Tiny"),
    _keras("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float.h5",
           "59e551e166be033d707958cf9e29a6a7", size=224, normalization="uint8", top1=75.6, size_mb=22,
           embedding="conv_2", dim=1280, what="MobileNetV3 Large 1.0 224"),
):
    register(_spec)
