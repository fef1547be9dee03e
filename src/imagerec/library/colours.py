"""The dominant colours of a photo, named the way people name colours.

The eleven basic colour terms of English (Berlin and Kay: black, white, grey,
red, orange, yellow, green, blue, purple, pink, brown) are what people type
in a search box. Each pixel is named in CIELAB, a perceptual colour space
(distances there are roughly how different colours look), by its chroma C*
(how vivid it is: the distance from the grey axis) first:

- a pixel with a chroma under :data:`GREY_CHROMA` (:data:`PALE_CHROMA` when it
  is light: cream and beige are called white) has no hue a person would
  name: it is **black**, **grey** or **white** by its lightness L*;
- any other pixel takes the name of the nearest of the 528 colours that the
  xkcd colour survey's respondents named "… red", "… green", "dusty blue",
  "navy blue", "olive green", "brick red" — every survey name whose head word
  is a chromatic basic colour (``matplotlib.colors.XKCD_COLORS``: the
  survey's published centroids, CC0) — with lightness differences counted
  half (as CIE94 and CMC weigh them for textiles: a dark leaf is still green).
  Only chromatic names compete here, so a muted foliage green or the blue of
  water stays green or blue; the nearest of 33 basic centroids, greys among
  them (the naming before: :data:`COLOURS_VERSION` 1), sent every muted pixel
  to grey.

A colour's **share** is its part of the photo with each pixel counted by its
chroma, at least :data:`WEIGHT_FLOOR` — every grey, white, black or muted
pixel alike, a vivid one up to about five times as much — because a small
vivid patch is what a person notices and names: the macaw on foliage is red
and blue although its red feathers cover a tenth of the picture. A photo's
colours are the names whose share is at least :data:`MIN_SHARE`.

>>> import numpy as np
>>> picture = np.zeros((20, 20, 3), np.uint8)
>>> picture[:, :12] = (220, 20, 30)          # 60 % red (vivid: it counts more)
>>> picture[:, 12:] = (250, 250, 250)        # 40 % white
>>> dominant_colours(picture)
[('red', 0.866), ('white', 0.134)]
>>> colour_names(np.array([[90, 130, 90], [110, 120, 160], [128, 128, 128], [139, 69, 19]], np.uint8))
['green', 'blue', 'grey', 'brown']
>>> colour_name("Gray"), colour_name("teal")
('grey', None)
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = [
    "BASIC_COLOURS", "COLOUR_MIN_SHARE", "COLOURS_VERSION", "GREY_CHROMA", "MIN_SHARE", "PALE_CHROMA", "WEIGHT_FLOOR",
    "colour_name", "colour_names", "dominant_colours", "srgb_to_lab",
]

BASIC_COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
# What the stored colours mean: 1 = the nearest of 33 xkcd basic centroids (greys included) in Lab, by area;
# 2 = greys only under GREY_CHROMA / PALE_CHROMA, other pixels by the survey's chromatic names, shares
# weighted by chroma. A catalog whose colours an older version named has them named again by the next
# index run (library/colour_refresh.py).
COLOURS_VERSION = 2
MIN_SHARE = 0.05  # a colour on less than 5 % of a photo is not one of its colours
# A photo *is* red (a search for "red" finds it, a description names it) when red has at least this share
# of it. Measured on the shared photos: the macaw's red is 18 % (a tenth of its pixels), a tabby cat's
# reddish fur and the rug beside it 10 %, a hot dog's ketchup 10 %.
COLOUR_MIN_SHARE = 0.15
# Chroma (CIELAB C*) under which a pixel is black, grey or white: about where a hue stops being seen
# in photos (overcast sky, concrete, shadows are 2-8; water, foliage and skin 15 and more).
GREY_CHROMA = 10.0
# A light pixel needs more chroma to be seen as coloured: cream, beige, a white dog's fur or sunlit foam are
# called white (C* 10-15 at L* over 75), a pink rose (C* 25) is not.
PALE_CHROMA, _PALE_ABOVE = 15.0, 75.0
WEIGHT_FLOOR = 20.0  # the least a pixel counts towards the shares (see the module docstring)
_BLACK_BELOW, _WHITE_ABOVE = 25.0, 80.0  # achromatic pixels by lightness L*: xkcd's dark grey is 23, light grey 87
_LIGHTNESS_WEIGHT = 2.0  # a lightness difference counts half (CIE94's and CMC's textile weights): a dark leaf is green
_ACHROMATIC = ("black", "white", "grey")
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
    """CIELAB (D65) of sRGB values in 0..255, any shape ending in 3 (the CIE formulas).

    >>> srgb_to_lab(np.array([255, 0, 0])).round(2).tolist()   # the published value of sRGB red
    [53.24, 80.09, 67.2]
    """
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return _xyz_to_lab(linear @ _RGB_TO_XYZ)


def _xyz_to_lab(xyz: np.ndarray) -> np.ndarray:
    xyz = xyz / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@cache
def _linear_table() -> np.ndarray:
    """sRGB's linear value of each 8-bit level (the power law computed 256 times, not once a pixel)."""
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """:func:`srgb_to_lab` of N×3 pixels, the linearisation of uint8 ones read from a table."""
    if rgb.dtype == np.uint8:
        return _xyz_to_lab(_linear_table()[rgb] @ _RGB_TO_XYZ)
    return srgb_to_lab(rgb)


@cache
def _palette() -> tuple[object, np.ndarray]:
    """(a k-d tree of the Lab centroids, L halved; the basic colour index of each): the xkcd survey's colours named
    "… <chromatic basic colour>" (a k-d tree: 5 times faster than comparing each pixel with all 528)."""
    from matplotlib.colors import XKCD_COLORS, to_rgb
    from scipy.spatial import cKDTree

    centres, families = [], []
    for key, value in XKCD_COLORS.items():
        head = key.removeprefix("xkcd:").replace("gray", "grey").split()[-1]  # "navy blue" is a blue, "blue grey" a grey
        if head in BASIC_COLOURS and head not in _ACHROMATIC:
            centres.append(np.array(to_rgb(value)) * 255)
            families.append(BASIC_COLOURS.index(head))
    lab = srgb_to_lab(np.array(centres))
    lab[:, 0] /= _LIGHTNESS_WEIGHT
    return cKDTree(lab), np.array(families)


def _names_and_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The basic colour index and the chroma of each of N×3 sRGB pixels."""
    lab = _lab(rgb)
    lightness, chroma = lab[:, 0], np.hypot(lab[:, 1], lab[:, 2])
    index = BASIC_COLOURS.index
    names = np.where(lightness < _BLACK_BELOW, index("black"), np.where(lightness > _WHITE_ABOVE, index("white"), index("grey")))
    vivid = chroma >= np.where(lightness > _PALE_ABOVE, PALE_CHROMA, GREY_CHROMA)
    if vivid.any():
        tree, families = _palette()
        x = lab[vivid]
        x[:, 0] /= _LIGHTNESS_WEIGHT
        names[vivid] = families[tree.query(x)[1]]
    return names, chroma


def colour_names(rgb: np.ndarray) -> list[str]:
    """The basic colour name of each of N×3 sRGB pixels (0..255)."""
    names, _ = _names_and_chroma(np.asarray(rgb).reshape(-1, 3))
    return [BASIC_COLOURS[i] for i in names]


def dominant_colours(pixels: np.ndarray, *, min_share: float = MIN_SHARE, top: int = 4) -> list[tuple[str, float]]:
    """The basic colours whose share (chroma-weighted) of an H×W×3 uint8 image is at least ``min_share``, largest first."""
    image = np.asarray(pixels)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        return []
    step_y, step_x = max(1, image.shape[0] // _SAMPLE), max(1, image.shape[1] // _SAMPLE)
    names, chroma = _names_and_chroma(image[::step_y, ::step_x].reshape(-1, 3))
    weights = np.maximum(chroma, WEIGHT_FLOOR)
    shares = np.bincount(names, weights=weights, minlength=len(BASIC_COLOURS)) / weights.sum()
    order = sorted(range(len(BASIC_COLOURS)), key=lambda i: (-shares[i], i))
    return [(BASIC_COLOURS[i], round(float(shares[i]), 3)) for i in order[:top] if shares[i] >= min_share]
