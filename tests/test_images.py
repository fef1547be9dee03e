"""imagerec.core.images: every input kind and colour mode decodes to the right RGB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagerec.core.errors import ImageDecodeError, ImageTooLargeError, UsageError
from imagerec.core.images import Limits, load_image, load_pil, resize, stack
from imagerec.core.preprocessing import Preprocessing

from conftest import LocalServer

P224 = Preprocessing(size=(224, 224))


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _quadrants(width: int = 64, height: int = 48) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    array = np.zeros((height, width, 3), np.uint8)
    array[: height // 2, : width // 2] = (255, 0, 0)
    array[: height // 2, width // 2 :] = (0, 255, 0)
    array[height // 2 :, : width // 2] = (0, 0, 255)
    array[height // 2 :, width // 2 :] = (255, 255, 255)
    return Image.fromarray(array)


# -- sources -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"])
def test_every_supported_format_decodes_to_rgb(fmt: str) -> None:
    data = _encode(_quadrants(), fmt)
    pixels = load_image(data)
    assert pixels.shape == (48, 64, 3) and pixels.dtype == np.uint8
    # top-left quadrant is red in every format (lossy ones approximately)
    assert np.allclose(pixels[5, 5], (255, 0, 0), atol=40)
    assert np.allclose(pixels[40, 60], (255, 255, 255), atol=40)


def test_path_bytes_fileobj_pil_and_array_agree(tmp_path: Path) -> None:
    image = _quadrants()
    path = tmp_path / "q.png"
    image.save(path)
    data = path.read_bytes()
    expected = np.asarray(image)
    for source in (path, str(path), data, bytearray(data), io.BytesIO(data), image, expected):
        assert np.array_equal(load_image(source), expected), type(source)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert tuple(load_image(buffer.getvalue())[0, 0]) == (255, 0, 0)


def test_urls_from_one_host_are_fetched_over_one_connection() -> None:
    # A new client (and connection) per URL cost 24 ms a photo and halved predict's rate from URLs.
    server = LocalServer(keep_alive=True)
    try:
        server.routes["/q.png"] = (200, {"Content-Type": "image/png"}, _encode(_quadrants(), "PNG"))
        for _ in range(3):
            assert load_image(server.url + "/q.png").shape == (48, 64, 3)
        assert len(server.requests) == 3 and len(set(server.clients)) == 1
    finally:
        server.close()


def test_url_is_fetched(http_server) -> None:
    http_server.routes["/q.png"] = (200, {"Content-Type": "image/png"}, _encode(_quadrants(), "PNG"))
    pixels = load_image(http_server.url + "/q.png")
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    http_server.routes["/missing.png"] = (404, {}, b"nope")
    with pytest.raises(ImageDecodeError, match="HTTP 404"):
        load_image(http_server.url + "/missing.png")


# -- colour modes --------------------------------------------------------------


def test_mode_1_and_l() -> None:
    bilevel = Image.new("1", (4, 4), 1)
    assert tuple(load_image(bilevel)[0, 0]) == (255, 255, 255)
    grey = Image.new("L", (4, 4), 77)
    assert tuple(load_image(_encode(grey, "PNG"))[0, 0]) == (77, 77, 77)


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    pixels = load_image(_encode(rgba, "PNG"))
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # fully transparent -> white
    assert tuple(pixels[1, 1]) == (255, 0, 0)  # opaque keeps its colour
    assert np.allclose(pixels[2, 2], (127, 127, 127), atol=2)  # half black over white


def test_la_mode_and_palette_with_transparency() -> None:
    la = Image.new("LA", (2, 2), (0, 0))
    assert tuple(load_image(_encode(la, "PNG"))[0, 0]) == (255, 255, 255)
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    data = _encode(palette, "PNG", transparency=0)
    pixels = load_image(data)
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # the transparent palette entry
    assert tuple(pixels[1, 1]) == (10, 20, 30)


def test_cmyk_jpeg_and_tiff() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    for fmt in ("JPEG", "TIFF"):
        assert np.allclose(load_image(_encode(cmyk, fmt))[0, 0], (255, 0, 0), atol=12), fmt


def test_16_bit_and_float_images() -> None:
    sixteen = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert sixteen.mode.startswith("I;16")
    assert tuple(load_image(_encode(sixteen, "PNG"))[0, 0]) == (255, 255, 255)
    half = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    assert load_image(half)[0, 0, 0] in (127, 128)
    floats = Image.fromarray(np.full((4, 4), 0.5, np.float32), "F")
    assert floats.mode == "F"
    assert load_image(_encode(floats, "TIFF"))[0, 0, 0] in (127, 128)


def test_arrays_of_other_shapes_and_types() -> None:
    assert load_image(np.full((3, 3), 9, np.uint8)).shape == (3, 3, 3)
    assert tuple(load_image(np.ones((3, 3, 3), np.float32))[0, 0]) == (255, 255, 255)
    with pytest.raises(ImageDecodeError, match="shape"):
        load_image(np.zeros((3, 3, 5), np.uint8))


# -- orientation, draft mode, resizing -----------------------------------------


@pytest.mark.parametrize(
    "orientation, corner",
    [(1, (255, 0, 0)), (3, (255, 255, 255)), (6, (0, 0, 255)), (8, (0, 255, 0))],
)
def test_exif_orientation_is_applied(orientation: int, corner: tuple) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(_quadrants(), "JPEG", exif=exif, quality=95)
    pixels = load_image(data)
    expected_shape = (64, 48, 3) if orientation in (6, 8) else (48, 64, 3)
    assert pixels.shape == expected_shape
    assert np.allclose(pixels[3, 3], corner, atol=40)


def test_large_jpeg_is_decoded_in_draft_mode() -> None:
    big = _quadrants(4000, 3000)
    data = _encode(big, "JPEG", quality=85)
    decoded = load_pil(data, P224)
    # at most about twice what a 224 centre crop needs along the shorter side
    assert 224 <= min(decoded.size) <= 2 * 224
    assert decoded.size == (500, 375)
    assert load_image(data, P224).shape == (224, 224, 3)
    assert load_pil(data).size == (4000, 3000)  # no preprocessing: full size


def test_draft_accounts_for_rotation_with_a_non_square_target() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_quadrants(4000, 1000), "JPEG", exif=exif)
    tall = Preprocessing(size=(400, 100), resize="squash")
    decoded = load_pil(data, tall)
    assert decoded.size[0] >= 100 and decoded.size[1] >= 400  # width, height after turning


def test_resize_policies() -> None:
    wide = Image.new("RGB", (400, 200))
    wide.paste((255, 0, 0), (0, 0, 80, 200))  # red band on the far left
    crop = np.asarray(resize(wide, Preprocessing(size=(100, 100), resize="crop")))
    squash = np.asarray(resize(wide, Preprocessing(size=(100, 100), resize="squash")))
    assert crop.shape == squash.shape == (100, 100, 3)
    assert tuple(crop[50, 0]) == (0, 0, 0)  # the band is cut away by the centre crop
    assert tuple(squash[50, 0]) == (255, 0, 0)  # and kept by squashing
    with pytest.raises(UsageError):
        Preprocessing(resize="stretch")  # type: ignore[arg-type]


def test_frame_puts_the_resized_picture_on_a_grey_canvas() -> None:
    red = Image.new("RGB", (40, 20), (255, 0, 0))
    framed = np.asarray(resize(red, Preprocessing(size=(64, 64), frame=8)))
    assert framed.shape == (64, 64, 3)
    border = np.ones((64, 64), bool)
    border[8:56, 8:56] = False
    assert (framed[border] == 128).all()  # exactly 8 grey pixels on every side
    assert (framed[8:56, 8:56] == (255, 0, 0)).all()  # the centre crop fills the inside
    # Squashing keeps the whole picture inside the frame, too.
    assert (np.asarray(resize(red, Preprocessing(size=(64, 64), resize="squash", frame=8)))[8:56, 8:56] == (255, 0, 0)).all()
    # A model-sized array is framed like any picture (the frame is not in it yet).
    assert load_image(np.zeros((64, 64, 3), np.uint8), Preprocessing(size=(64, 64), frame=8))[0, 0].tolist() == [128] * 3


def test_frame_is_checked_and_round_trips() -> None:
    with pytest.raises(UsageError, match="frame must be between 0 and 56"):
        Preprocessing(size=(224, 224), frame=57)
    with pytest.raises(UsageError, match="frame"):
        Preprocessing(frame=-1)
    framed = Preprocessing(size=(224, 224), frame=16)
    assert Preprocessing.from_dict(framed.to_dict()) == framed
    # Without a frame the description is what it was before frames existed (cache keys, saved files).
    assert Preprocessing().to_dict() == {"size": [224, 224], "resize": "crop", "normalization": "uint8"}
    assert Preprocessing.from_dict({"size": [224, 224]}).frame == 0


def test_stack_makes_a_batch() -> None:
    assert stack([np.zeros((4, 4, 3), np.uint8)] * 2).shape == (2, 4, 4, 3)
    with pytest.raises(UsageError):
        stack([])


# -- bad input -----------------------------------------------------------------


def _png_bomb(path: Path, side: int = 30000) -> Path:
    """A real 30000×30000 greyscale PNG of zeros: tiny on disk, 900 MB decoded."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    rows_per_block = 64
    idat = b"".join(compressor.compress(row * rows_per_block) for _ in range(side // rows_per_block))
    idat += compressor.compress(row * (side % rows_per_block)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    good = _encode(_quadrants(640, 480), "JPEG", quality=90)
    files = {
        "truncated": folder / "truncated.jpg",
        "empty": folder / "empty.jpg",
        "text": folder / "notes.jpg",
        "bomb": folder / "bomb.png",
    }
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a photo\n")
    _png_bomb(files["bomb"])
    return files


@pytest.mark.parametrize(
    "kind, reason",
    [("truncated", "truncated"), ("empty", "empty file"), ("text", "not a recognised image"), ("bomb", "decompression bomb")],
)
def test_bad_files_raise_one_line_errors_naming_the_file(bad_files: dict[str, Path], kind: str, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        load_image(bad_files[kind], P224)
    message = str(caught.value)
    assert reason in message
    assert str(bad_files[kind]) in message
    assert "\n" not in message
    assert caught.value.path == str(bad_files[kind])


def test_bomb_is_refused_before_decoding(bad_files: dict[str, Path]) -> None:
    assert bad_files["bomb"].stat().st_size < 2_000_000
    with pytest.raises(ImageTooLargeError, match="30000×30000"):
        load_image(bad_files["bomb"])


def test_byte_limit_applies_to_paths_bytes_and_streams(tmp_path: Path) -> None:
    data = _encode(_quadrants(), "PNG")
    path = tmp_path / "q.png"
    path.write_bytes(data)
    tight = Limits(max_bytes=len(data) - 1)
    for source in (path, data, io.BytesIO(data)):
        with pytest.raises(ImageTooLargeError, match="over the limit"):
            load_image(source, limits=tight)


def test_pixel_limit_is_configurable() -> None:
    data = _encode(_quadrants(64, 48), "PNG")
    with pytest.raises(ImageTooLargeError):
        load_image(data, limits=Limits(max_pixels=64 * 48 - 1))
    assert load_image(data, limits=Limits(max_pixels=64 * 48)).shape == (48, 64, 3)


def test_unsupported_format_and_missing_file(tmp_path: Path) -> None:
    icon = _encode(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(ImageDecodeError, match="expected JPEG, PNG"):
        load_image(icon)
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageDecodeError, match="cannot read an image from a int"):
        load_image(42)  # type: ignore[arg-type]


def test_corrupt_data_after_a_valid_header() -> None:
    data = bytearray(_encode(_quadrants(256, 256), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64  # breaks the zlib stream / CRC
    with pytest.raises(ImageDecodeError):
        load_image(bytes(data))


def _photo_like_jpeg(width: int, height: int) -> bytes:
    """Smooth gradients plus fixed-seed noise: JPEG detail that scaled decoding really changes."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2)
    noise = rng.integers(-40, 40, (height // 8, width // 8, 3)).repeat(8, 0).repeat(8, 1)
    return _encode(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)), "JPEG", quality=90)


def test_large_jpeg_decodes_at_three_levels_of_detail() -> None:
    from imagerec.core.images import load_model_input

    jpeg = _photo_like_jpeg(3200, 2400)  # draft: 1/8, fine: 1/2, full: every pixel
    levels = {detail: load_model_input(jpeg, P224, detail=detail) for detail in ("draft", "fine", "full")}
    assert [approximate for _, approximate in levels.values()] == [True, True, False]
    full = levels["full"][0].astype(int)
    draft_error = np.abs(levels["draft"][0].astype(int) - full).mean()
    fine_error = np.abs(levels["fine"][0].astype(int) - full).mean()
    assert 0 < fine_error < draft_error  # finer detail is closer to the full decode, yet not it
    np.testing.assert_array_equal(load_image(jpeg, P224, exact=True), levels["full"][0])


def test_fine_detail_of_a_mid_sized_jpeg_is_the_full_decode() -> None:
    from imagerec.core.images import load_model_input

    jpeg = _photo_like_jpeg(1600, 1200)  # 4× the model's size a side needs every pixel
    assert load_model_input(jpeg, P224)[1] is True
    fine, approximate = load_model_input(jpeg, P224, detail="fine")
    assert approximate is False
    np.testing.assert_array_equal(fine, load_image(jpeg, P224, detail="full"))


def test_an_unknown_detail_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="detail must be one of draft, fine, full"):
        load_image(_photo_like_jpeg(64, 48), P224, detail="coarse")


@pytest.mark.parametrize("orientation", [1, 6, 3])
@pytest.mark.parametrize("detail", ["draft", "fine", "full"])
def test_a_colour_jpeg_gives_pillows_own_pixels_at_every_detail(detail: str, orientation: int) -> None:
    """Decoding takes a faster route for colour JPEGs; the pixels are those of Pillow's own decode."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    jpeg = _encode(Image.open(io.BytesIO(_photo_like_jpeg(3200, 2400))), "JPEG", quality=85, exif=exif)
    for pre in (P224, Preprocessing(size=(224, 224), frame=16), Preprocessing(size=(160, 224), resize="squash")):
        got = load_image(jpeg, pre, detail=detail)
        want = np.asarray(_turn(resize(_stored(jpeg, pre, detail, orientation), _swapped(pre, orientation)), orientation))
        np.testing.assert_array_equal(got, want, err_msg=f"{detail}, orientation {orientation}, {pre}")


def _swapped(pre: Preprocessing, orientation: int) -> Preprocessing:
    import dataclasses

    return dataclasses.replace(pre, size=pre.size[::-1]) if orientation in (5, 6, 7, 8) else pre


def _turn(image: Image.Image, orientation: int) -> Image.Image:
    turns = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}
    return image if turns[orientation] is None else image.transpose(turns[orientation])


def _stored(jpeg: bytes, pre: Preprocessing, detail: str, orientation: int) -> Image.Image:
    """The stored picture as Pillow alone decodes it, in draft mode at the size imagerec asks for."""
    import math

    stored = Image.open(io.BytesIO(jpeg))
    if detail != "full":
        height, width = _swapped(pre, orientation).size
        if pre.resize == "crop":
            scale = max(width / stored.width, height / stored.height)
            need = (math.ceil(stored.width * scale), math.ceil(stored.height * scale))
        else:
            need = (width, height)
        times = 1 if detail == "draft" else 4
        stored.draft(None, (need[0] * times, need[1] * times))
    return stored.convert("RGB")


def test_a_truncated_colour_jpeg_still_says_so_in_one_line() -> None:
    jpeg = _photo_like_jpeg(1600, 1200)
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(jpeg[: len(jpeg) // 2], P224)


def test_a_colour_jpeg_smaller_than_the_model_input_is_upscaled() -> None:
    jpeg = _encode(_quadrants(64, 48), "JPEG", quality=95)
    array = load_image(jpeg, P224)
    assert array.shape == (224, 224, 3)
    assert tuple(array[10, 40]) > (200, 0, 0) and array[10, 40, 1] < 60  # red stays top-left
