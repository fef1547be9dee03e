"""Turn files, bytes, URLs, PIL images and arrays into RGB uint8 arrays.

This module owns everything between "something that holds a picture" and the
``H×W×3`` (or batched ``N×H×W×3``) uint8 array that every model in imagerec
consumes: format sniffing, size limits, EXIF orientation, colour-mode
conversion, JPEG draft-mode downscaling and the resize policies.

>>> import numpy as np
>>> from imagerec.core.images import Preprocessing, load_image
>>> pixels = np.zeros((300, 400, 3), np.uint8)
>>> load_image(pixels, Preprocessing(size=(224, 224))).shape
(224, 224, 3)
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Union

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageDecodeError, ImageTooLargeError, UsageError
from .jpeg import decode_turbo, draft_request
from .preprocessing import Preprocessing

__all__ = [
    "DETAILS",
    "Detail",
    "ImageSource",
    "Limits",
    "Preprocessing",
    "SUPPORTED_FORMATS",
    "IMAGE_SUFFIXES",
    "load_image",
    "load_model_input",
    "load_pil",
    "to_rgb",
    "resize",
    "stack",
    "describe_source",
]

# How much of a large JPEG is decoded: "draft" scales by 1/2–1/8 in the decoder
# keeping at least the size the model needs on each side, "fine" keeps at
# least 4× that size (1/2 for a 12-megapixel photo), "full" decodes every pixel.
Detail = Literal["draft", "fine", "full"]
DETAILS: tuple[str, ...] = ("draft", "fine", "full")
# How many times the size the resize policy needs each level keeps per side
# (Pillow's draft() then picks the coarsest 1/2, 1/4 or 1/8 scale at or above it).
# "fine" skips the 2× step: decoding a 12-megapixel photo at 1/4 agreed no better
# with the full decode than 1/8 did (96.5 % vs 97.0 % top-1), at 1/2 it agreed
# on 99 % (bench/predict_throughput.py, docs/speed.md).
_DRAFT_REQUEST = {"draft": 1, "fine": 4}

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]

# Formats Pillow may open for us. Camera JPEGs carrying extra pictures (MPO)
# are opened by the JPEG plugin; DIB is BMP without its file header.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF")
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff"}
)
_FORMAT_NAMES = "JPEG, PNG, BMP, GIF, WebP or TIFF"
_BYTES_PER_PIXEL = 4  # the widest raster Pillow decodes to (F, I, RGBA, CMYK)
_DECODE_SLACK = 32 * 1024 * 1024


# Our own pixel limit is checked before any decoding; Pillow's generic warning
# for large images would only repeat it, so it is silenced for its message.
warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
# Image.open(formats=...) only knows plugins that are already registered.
Image.init()


@dataclass(frozen=True)
class Limits:
    """Upper bounds that protect a process from hostile or accidental input.

    ``max_pixels`` is checked against the size the file declares, before any
    pixel is decoded, so a decompression bomb costs nothing.

    >>> Limits(max_pixels=1_000_000).max_pixels
    1000000
    """

    max_pixels: int = 100_000_000
    max_bytes: int = 200 * 1024 * 1024

    @property
    def decode_bytes(self) -> int:
        """The most memory one decode for a model may take, whatever the pixel format.

        The file's bytes, the stored raster (Pillow keeps at most 4 bytes a
        pixel: float, 32-bit, RGBA and CMYK) and 32 MiB for the strips of
        the reduction and the model-sized result — pictures that need a
        colour conversion are shrunk before it (``bench/decode_memory.py``
        measures it). Decoding without a model size keeps the full picture
        and may take more.

        >>> Limits(max_pixels=50_000_000, max_bytes=20 * 1024 * 1024).decode_bytes // 2**20
        242
        """
        return self.max_bytes + _BYTES_PER_PIXEL * self.max_pixels + _DECODE_SLACK

    def check_bytes(self, size: int, where: str) -> None:
        if size > self.max_bytes:
            raise ImageTooLargeError(
                f"file is {size:,} bytes, over the limit of {self.max_bytes:,} bytes "
                "(raise max_bytes to accept it)",
                path=where,
            )

    def check_pixels(self, width: int, height: int, where: str) -> None:
        if width <= 0 or height <= 0:
            raise ImageDecodeError(f"image declares an empty size {width}×{height}", path=where)
        if width * height > self.max_pixels:
            raise ImageTooLargeError(
                f"image is {width}×{height} = {width * height:,} pixels, over the limit of "
                f"{self.max_pixels:,} (a decompression bomb, or raise max_pixels to accept it)",
                path=where,
            )


DEFAULT_LIMITS = Limits()


def describe_source(source: object) -> str:
    """A short name for error messages: the path, or the kind of object.

    >>> describe_source(b"abc")
    '<bytes>'
    """
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else "<file object>"


def load_image(
    source: ImageSource,
    preprocessing: Preprocessing | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    exact: bool = False,
    detail: Detail = "draft",
) -> np.ndarray:
    """Decode ``source`` into an ``H×W×3`` uint8 RGB array.

    With ``preprocessing`` the result is already resized for the model, and
    large JPEGs are decoded in draft mode (DCT-domain downscaling) at no more
    than twice the size the model needs; ``detail="fine"`` keeps at least
    four times that size, and ``detail="full"`` (or ``exact=True``) decodes
    every pixel. Without ``preprocessing`` the full image is kept.

    >>> from imagerec.core.images import load_image
    >>> load_image(b"not an image")
    Traceback (most recent call last):
    ...
    imagerec.core.errors.ImageDecodeError: <bytes>: not a recognised image (expected JPEG, PNG, BMP, GIF, WebP or TIFF)
    """
    return load_model_input(source, preprocessing, limits=limits, exact=exact, detail=detail)[0]


def load_model_input(
    source: ImageSource,
    preprocessing: Preprocessing | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    exact: bool = False,
    detail: Detail = "draft",
) -> tuple[np.ndarray, bool]:
    """:func:`load_image`, and whether draft mode made it an approximation.

    The flag is True only when the JPEG decoder really scaled the picture
    down, so decoding it again at a finer ``detail`` would give other pixels.
    ``exact=True`` is ``detail="full"``.

    >>> import io
    >>> from PIL import Image
    >>> jpeg = io.BytesIO(); Image.new("RGB", (2000, 1500), "red").save(jpeg, "JPEG")
    >>> array, approximate = load_model_input(jpeg.getvalue(), Preprocessing(size=(224, 224)))
    >>> array.shape, approximate
    ((224, 224, 3), True)
    >>> load_model_input(jpeg.getvalue(), Preprocessing(size=(224, 224)), detail="fine")[1]
    False
    >>> load_model_input(jpeg.getvalue(), Preprocessing(size=(224, 224)), exact=True)[1]
    False
    """
    if detail not in DETAILS:
        raise UsageError(f"detail must be one of {', '.join(DETAILS)}; got {detail!r}")
    if exact:
        detail = "full"
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, preprocessing), False
    where = describe_source(source)
    if isinstance(source, Image.Image):
        image, orientation, drafted = load_pil(source, limits=limits), 1, False
    else:
        data = _read_bytes(source, where, limits)
        image, orientation, drafted = _decode(data, where, preprocessing, limits, detail=detail)
    if preprocessing is None:
        return np.asarray(_upright(image, orientation), dtype=np.uint8), drafted
    resized = _resize_upright(image, orientation, preprocessing)
    return np.asarray(resized if resized.mode == "RGB" else resized.convert("RGB"), dtype=np.uint8), drafted


def load_pil(
    source: ImageSource,
    preprocessing: Preprocessing | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Image.Image:
    """Decode ``source`` into an upright RGB PIL image (not yet resized).

    >>> from PIL import Image
    >>> load_pil(Image.new("LA", (4, 4))).mode
    'RGB'
    """
    where = describe_source(source)
    if isinstance(source, Image.Image):
        limits.check_pixels(source.width, source.height, where)
        return to_rgb(ImageOps.exif_transpose(source), where)
    if isinstance(source, np.ndarray):
        return Image.fromarray(_array_to_rgb(source, None))
    image, orientation, _ = _decode(_read_bytes(source, where, limits), where, preprocessing, limits, detail="draft")
    return to_rgb(_upright(image, orientation), where)  # RGBX from the libjpeg-turbo path


def _read_bytes(source: ImageSource, where: str, limits: Limits) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        limits.check_bytes(len(data), where)
    elif isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str) and text.startswith(("http://", "https://")):
            return _fetch_url(text, limits)
        path = Path(text)
        try:
            size = path.stat().st_size
            limits.check_bytes(size, where)
            data = path.read_bytes()
        except IsADirectoryError as exc:
            raise ImageDecodeError("is a folder, not an image file", path=where) from exc
        except FileNotFoundError as exc:
            raise ImageDecodeError("no such file", path=where) from exc
        except PermissionError as exc:
            raise ImageDecodeError("permission denied", path=where) from exc
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})", path=where) from exc
    elif hasattr(source, "read"):
        # Read one byte past the limit so an oversized stream is detected
        # without ever holding more than the limit in memory.
        data = source.read(limits.max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageDecodeError("file object must be opened in binary mode", path=where)
        limits.check_bytes(len(data), where)
    else:
        raise ImageDecodeError(
            f"cannot read an image from a {type(source).__name__} "
            "(expected a path, bytes, a binary file object, a PIL image or a numpy array)",
            path=where,
        )
    if not data:
        raise ImageDecodeError("empty file (0 bytes)", path=where)
    return bytes(data)


_HTTP_LOCK = threading.Lock()
_HTTP: dict[int, object] = {}  # process id -> its httpx.Client


def _http_client():
    """One ``httpx.Client`` per process, shared by the decode threads (httpx's clients are thread-safe).

    A client per request (``httpx.stream``) built a new SSL context and
    connection each time: 24 ms a URL instead of 1.5, which halved the rate of predicting
    from URLs. Keyed by process id, so a forked worker (Ray, a process pool)
    never reuses its parent's connections.
    """
    import httpx

    with _HTTP_LOCK:
        client = _HTTP.get(os.getpid())
        if client is None:
            client = _HTTP[os.getpid()] = httpx.Client(follow_redirects=True, timeout=30.0)
        return client


def _fetch_url(url: str, limits: Limits) -> bytes:
    import httpx

    chunks: list[bytes] = []
    received = 0
    try:
        with _http_client().stream("GET", url) as response:
            if response.status_code != 200:
                raise ImageDecodeError(f"HTTP {response.status_code} while fetching the image", path=url)
            for chunk in response.iter_bytes():
                received += len(chunk)
                limits.check_bytes(received, url)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ImageDecodeError(f"cannot fetch the image ({exc})", path=url) from exc
    if not received:
        raise ImageDecodeError("empty response (0 bytes)", path=url)
    return b"".join(chunks)


def _decode(
    data: bytes, where: str, preprocessing: Preprocessing | None, limits: Limits, *, detail: Detail
) -> tuple[Image.Image, int, bool]:
    """The RGB image as stored (not yet turned upright), its EXIF orientation,
    and whether draft mode scaled it down."""
    try:
        image = _open_unchecked(data)
    except ValueError as exc:
        if "decompressed data too large" in str(exc).lower():  # a zTXt / iTXt / iCCP bomb
            raise ImageTooLargeError(
                "image metadata decompresses to more than Pillow's safety limit (a decompression bomb)", path=where
            ) from exc
        raise ImageDecodeError(f"not a recognised image (expected {_FORMAT_NAMES})", path=where) from exc
    except Exception as exc:  # Pillow signals bad data with many exception types
        raise ImageDecodeError(f"not a recognised image (expected {_FORMAT_NAMES})", path=where) from exc
    limits.check_pixels(image.width, image.height, where)
    declared = image.size
    try:
        if preprocessing is not None and image.format == "JPEG" and image.mode == "RGB":
            fast = decode_turbo(data, image.size, preprocessing, None if detail == "full" else _DRAFT_REQUEST[detail],
                                turned=_orientation(image) in (5, 6, 7, 8))
            if fast is not None:
                return fast, _orientation(image), fast.size != declared
        if detail != "full" and preprocessing is not None and image.format in ("JPEG", "MPO"):
            _apply_draft(image, preprocessing, _DRAFT_REQUEST[detail])
        image.load()
        drafted = image.size != declared
        orientation = _orientation(image)
        if preprocessing is not None and image.mode != "RGB":
            image = _reduce_before_converting(image, preprocessing, orientation)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image is too large to decode safely ({exc})", path=where) from exc
    except Exception as exc:  # truncated and corrupt data surface as OSError, SyntaxError, ValueError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "decompressed data too large" in reason.lower():  # a text chunk after the pixels
            raise ImageTooLargeError(
                "image metadata decompresses to more than Pillow's safety limit (a decompression bomb)", path=where
            ) from exc
        if "truncated" in reason.lower():
            raise ImageDecodeError(f"truncated image data ({reason})", path=where) from exc
        raise ImageDecodeError(f"corrupt {image.format or 'image'} data ({reason})", path=where) from exc
    return to_rgb(image, where), orientation, drafted


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened picture (1, upright, when absent or invalid)."""
    orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    return orientation if orientation in _UPRIGHT else 1


_ORIENTATION_TAG = 0x0112
# How to turn a picture stored with each EXIF orientation upright.
_UPRIGHT: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT[orientation]
    return image if method is None else image.transpose(method)


def _resize_upright(image: Image.Image, orientation: int, preprocessing: Preprocessing) -> Image.Image:
    """Resize a stored picture for the model, then turn it upright.

    Turning the small result instead of the full picture saves a copy of
    every pixel (40 ms for 12 megapixels); the centre crop is symmetric, so
    the same pixels are kept. Only the rounding order differs (±1 in some
    channel values).
    """
    if orientation in (5, 6, 7, 8):  # stored a quarter turn away: crop and scale the other way round
        preprocessing = dataclasses.replace(preprocessing, size=preprocessing.size[::-1])
    return _upright(resize(image, preprocessing), orientation)


_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_unchecked(data: bytes) -> Image.Image:
    """Open (read the header of) an image with Pillow's own pixel cap lifted.

    imagerec enforces :class:`Limits` itself, right after this and before
    any pixel is decoded, so the caller's limit is the one that applies (and
    its message names the declared size). Opening only parses the header.
    """
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError:
        with _PILLOW_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _apply_draft(image: Image.Image, preprocessing: Preprocessing, times: int = 1) -> None:
    """Ask the JPEG decoder to scale by 1/2, 1/4 or 1/8 while decoding.

    The requested size keeps the result at least ``times`` as large as the
    resize policy needs, so quality is kept and at most 2×``times`` the
    needed pixels are decoded along each side.
    """
    image.draft(None, draft_request(image.size, preprocessing, times, turned=_orientation(image) in (5, 6, 7, 8)))


# Modes Image.reduce() averages correctly; the others (palette indices,
# 1-bit, 16-bit) are subsampled with NEAREST, which never mixes their values.
_STRIP_PIXELS = 4_000_000  # reduced a strip at a time: ~16 MB of a 4-byte mode
_REDUCIBLE = frozenset({"L", "LA", "La", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F", "LAB", "HSV"})


def _reduce_before_converting(image: Image.Image, preprocessing: Preprocessing, orientation: int) -> Image.Image:
    """Shrink a decoded non-RGB picture by a whole factor before its mode is converted.

    Converting a 16-bit, float or transparent picture to RGB takes several
    full-size copies (a 7000×7000 float TIFF took 1.5 GB); shrinking first
    makes the conversion cost little, so a decode holds about one stored
    raster (at most 4 bytes a pixel, within ``max_pixels``). At least twice
    the size the resize policy needs is kept on each side, as draft mode does
    for JPEG, so quality is unchanged.
    """
    target_h, target_w = preprocessing.size
    if orientation in (5, 6, 7, 8):
        target_h, target_w = target_w, target_h
    width, height = image.size
    if preprocessing.resize == "crop":
        scale = max(target_w / width, target_h / height)
        need_w, need_h = math.ceil(width * scale), math.ceil(height * scale)
    else:
        need_w, need_h = target_w, target_h
    factor = min(width // (2 * need_w), height // (2 * need_h))
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE:
        return image.resize((width // factor, height // factor), Image.Resampling.NEAREST)
    # Strip by strip: reduce() copies a transparent picture whole (to
    # premultiply its alpha) and would double the peak.
    rows = max(1, _STRIP_PIXELS // (width * factor)) * factor
    reduced = Image.new(image.mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).reduce(factor)
        reduced.paste(strip, (0, top // factor))
    return reduced


def to_rgb(image: Image.Image, where: str = "<image>") -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white.

    16-bit and 32-bit integer images are scaled from the 0–65535 range;
    float images in [0, 1] are scaled to 0–255, others are clipped.

    >>> from PIL import Image
    >>> to_rgb(Image.new("RGBA", (1, 1), (0, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    mode = image.mode
    try:
        if mode == "RGB":
            return image
        if mode in ("1", "L", "YCbCr", "CMYK", "RGBX"):
            return image.convert("RGB")
        if mode == "P":
            if "transparency" in image.info or image.palette is not None and image.palette.mode == "RGBA":
                return _composite_on_white(image.convert("RGBA"))
            return image.convert("RGB")
        if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            return _composite_on_white(image.convert("RGBA"))
        if mode.startswith("I") or mode == "F":
            return Image.fromarray(_scale_to_uint8(np.asarray(image)), "L").convert("RGB")
        return image.convert("RGB")
    except Exception as exc:
        raise ImageDecodeError(f"cannot convert colour mode {mode} to RGB ({exc})", path=where) from exc


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map integer (16/32-bit) or float pixel values onto 0–255."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if np.issubdtype(values.dtype, np.floating):
        finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            finite = finite * 255.0
        return np.clip(np.rint(finite), 0, 255).astype(np.uint8)
    wide = values.astype(np.int64)
    # 16-bit sources (PNG, TIFF) are the only integer images Pillow produces
    # beyond 8 bits in practice, so 0–65535 is the range to map.
    return (np.clip(wide, 0, 65535) * 255 // 65535).astype(np.uint8)


def _array_to_rgb(array: np.ndarray, preprocessing: Preprocessing | None) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(_scale_to_uint8(array)[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        array = _scale_to_uint8(array)
        if array.shape[2] == 4:
            array = np.asarray(_composite_on_white(Image.fromarray(np.ascontiguousarray(array), "RGBA")))
    else:
        raise ImageDecodeError(
            f"expected an H×W, H×W×1, H×W×3 or H×W×4 array, got shape {array.shape}", path="<array>"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageDecodeError(f"array has an empty side: shape {array.shape}", path="<array>")
    if preprocessing is None:
        return np.ascontiguousarray(array)
    return np.asarray(resize(Image.fromarray(np.ascontiguousarray(array)), preprocessing))


def resize(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """Resize by the policy in ``preprocessing`` (bilinear or Lanczos, antialiased), inside its frame if it has one.

    >>> from PIL import Image
    >>> resize(Image.new("RGB", (640, 480)), Preprocessing(size=(224, 224))).size
    (224, 224)
    >>> framed = resize(Image.new("RGB", (32, 32), "red"), Preprocessing(size=(224, 224), frame=16))
    >>> framed.size, framed.getpixel((8, 8)), framed.getpixel((112, 112))
    ((224, 224), (128, 128, 128), (255, 0, 0))
    """
    if preprocessing.frame:
        inner = dataclasses.replace(preprocessing, size=preprocessing.inner_size, frame=0)
        canvas = Image.new("RGB", (preprocessing.size[1], preprocessing.size[0]), (128, 128, 128))
        canvas.paste(resize(image, inner), (preprocessing.frame, preprocessing.frame))
        return canvas
    target_h, target_w = preprocessing.size
    width, height = image.size
    if (width, height) == (target_w, target_h):
        return image
    resample = Image.Resampling.LANCZOS if preprocessing.resample == "lanczos" else Image.Resampling.BILINEAR
    if preprocessing.resize == "squash":
        return image.resize((target_w, target_h), resample)
    scale = max(target_w / width, target_h / height)
    # Crop in source coordinates first so only the kept pixels are resampled.
    # min/max: float rounding can put the box 1e-14 outside the image, which Pillow refuses.
    crop_w, crop_h = min(width, target_w / scale), min(height, target_h / scale)
    left, top = max(0.0, (width - crop_w) / 2), max(0.0, (height - crop_h) / 2)
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize((target_w, target_h), resample, box=box)


def stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack equally sized H×W×3 arrays into an N×H×W×3 batch.

    >>> stack([np.zeros((2, 2, 3), np.uint8)] * 3).shape
    (3, 2, 2, 3)
    """
    if not arrays:
        raise UsageError("cannot make a batch of zero images")
    return np.ascontiguousarray(np.stack(arrays).astype(np.uint8, copy=False))

