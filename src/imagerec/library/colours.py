"""The dominant colours of a photo, named the way people name colours.

The eleven basic colour terms of English (Berlin and Kay: black, white, grey,
red, orange, yellow, green, blue, purple, pink, brown) are what people type
in a search box. Each pixel is compared in CIELAB — a perceptual colour
space, where a distance is roughly how different two colours look — with the
colours the xkcd colour survey's respondents gave those names, and its
"light …" and "dark …" variants (``matplotlib.colors.XKCD_COLORS``: the
survey's published centroids, CC0); the pixel takes the name of the nearest.
A photo's colours are the names covering at least :data:`MIN_SHARE` of it.

>>> import numpy as np
>>> picture = np.zeros((20, 20, 3), np.uint8)
>>> picture[:, :12] = (220, 20, 30)          # 60 % red
>>> picture[:, 12:] = (250, 250, 250)        # 40 % white
>>> dominant_colours(picture)
[('red', 0.6), ('white', 0.4)]
>>> colour_name("Gray"), colour_name("teal")
('grey', None)
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = ["BASIC_COLOURS", "MIN_SHARE", "colour_name", "dominant_colours", "srgb_to_lab"]

BASIC_COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
MIN_SHARE = 0.05  # a colour on less than 5 % of a photo is not one of its colours
_SAMPLE = 64  # pixels per side looked at: colour shares do not need more
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.2126729, 0.0193339], [0.3575761, 0.7151522, 0.1191920], [0.1804375, 0.0721750, 0.9503041]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])  # the white point


def colour_name(word: str) -> str | None:
    """The basic colour a word names (``gray`` is the American ``grey``), or None."""
    word = word.strip().lower()
    word = "grey" if word == "gray" else word
    return word if word in BASIC_COLOURS else None


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0..255, any shape ending in 3 (the CIE formulas)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ
    xyz /= _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@cache
def _linear_table() -> np.ndarray:
    """sRGB's linear value of each 8-bit level (the power law computed 256 times, not once a pixel)."""
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab_of_uint8(rgb: np.ndarray) -> np.ndarray:
    """:func:`srgb_to_lab` of N×3 uint8 pixels, its linearisation read from a table."""
    xyz = _linear_table()[rgb] @ _RGB_TO_XYZ
    xyz /= _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@cache
def _palette() -> tuple[np.ndarray, np.ndarray]:
    """(N×3 Lab centroids, the basic colour index of each) from the xkcd survey."""
    from matplotlib.colors import XKCD_COLORS, to_rgb

    centres, families = [], []
    for family, name in enumerate(BASIC_COLOURS):
        for variant in (name, f"light {name}", f"dark {name}"):
            value = XKCD_COLORS.get(f"xkcd:{variant}")
            if value is not None:
                centres.append(np.array(to_rgb(value)) * 255)
                families.append(family)
    return srgb_to_lab(np.array(centres)), np.array(families)


def dominant_colours(pixels: np.ndarray, *, min_share: float = MIN_SHARE, top: int = 4) -> list[tuple[str, float]]:
    """The basic colours covering at least ``min_share`` of an H×W×3 uint8 image, largest first."""
    image = np.asarray(pixels)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        return []
    step_y, step_x = max(1, image.shape[0] // _SAMPLE), max(1, image.shape[1] // _SAMPLE)
    sample = image[::step_y, ::step_x].reshape(-1, 3)
    lab = _lab_of_uint8(sample) if sample.dtype == np.uint8 else srgb_to_lab(sample)
    centres, families = _palette()
    # |x - c|² = |x|² - 2 x·c + |c|²: one small matrix product instead of an N×33×3 array (5 ms → 0.5 ms a photo).
    distances = (lab * lab).sum(axis=1)[:, None] - 2 * lab @ centres.T + (centres * centres).sum(axis=1)[None, :]
    nearest = distances.argmin(axis=1)
    shares = np.bincount(families[nearest], minlength=len(BASIC_COLOURS)) / len(lab)
    order = sorted(range(len(BASIC_COLOURS)), key=lambda i: (-shares[i], i))
    return [(BASIC_COLOURS[i], round(float(shares[i]), 3)) for i in order[:top] if shares[i] >= min_share]
