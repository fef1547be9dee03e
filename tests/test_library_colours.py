"""imagerec.library.colours: colours named as a person names them (generated pixels of known colours, real photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagerec.core.images import load_image
from imagerec.core.preprocessing import Preprocessing
from imagerec.library.colours import colour_names, dominant_colours
from imagerec.library.combined import COLOUR_MIN_SHARE

# sRGB colours whose basic name nobody disputes (CSS / X11 names in brackets).
KNOWN = {
    "red": [(255, 0, 0), (220, 20, 60), (128, 0, 0)],          # red, crimson, maroon
    "orange": [(255, 165, 0), (255, 140, 0)],                   # orange, dark orange
    "yellow": [(255, 255, 0), (255, 215, 0)],                   # yellow, gold
    "green": [(0, 128, 0), (0, 100, 0), (0, 255, 0)],           # green, dark green, lime
    "blue": [(0, 0, 255), (0, 0, 128), (135, 206, 235)],        # blue, navy, sky blue
    "purple": [(128, 0, 128), (75, 0, 130)],                    # purple, indigo
    "pink": [(255, 192, 203), (255, 105, 180)],                 # pink, hot pink
    "brown": [(139, 69, 19), (210, 180, 140)],                  # saddle brown, tan
    "grey": [(128, 128, 128), (100, 102, 98)],
    "white": [(255, 255, 255), (235, 236, 233)],
    "black": [(0, 0, 0), (30, 28, 32)],
}
# Muted colours of photos (foliage in shade, water, brick): the old naming called them all grey.
MUTED = {"green": (90, 130, 90), "blue": (100, 120, 160), "red": (150, 60, 60), "brown": (120, 100, 80)}


def test_known_colours_get_their_basic_names():
    pixels = np.array([rgb for rgbs in KNOWN.values() for rgb in rgbs], np.uint8)
    expected = [name for name, rgbs in KNOWN.items() for _ in rgbs]
    assert colour_names(pixels) == expected


def test_muted_colours_are_named_by_their_hue_and_only_unsaturated_ones_are_grey():
    assert colour_names(np.array(list(MUTED.values()), np.uint8)) == list(MUTED)
    # A pale tint on a light pixel is white: beige, cream (a pink rose is not).
    assert colour_names(np.array([(245, 245, 220), (250, 240, 222), (255, 182, 193)], np.uint8)) == ["white", "white", "pink"]


def test_a_small_vivid_region_counts_as_a_person_notices_it():
    picture = np.full((100, 100, 3), (110, 112, 108), np.uint8)  # a grey wall
    picture[:12] = (200, 20, 30)  # a red stripe on 12 % of it
    shares = dict(dominant_colours(picture))
    assert set(shares) == {"grey", "red"} and shares["red"] >= COLOUR_MIN_SHARE  # "red" finds it


def test_the_macaw_on_foliage_is_red_blue_and_green_not_grey(photos_dir: Path):
    view = load_image(str(photos_dir / "parrot.jpg"), Preprocessing(size=(224, 224), resize="crop"))
    shares = dict(dominant_colours(view))
    assert {"red", "blue", "green"} <= set(shares) and "grey" not in shares
    assert shares["red"] >= COLOUR_MIN_SHARE


@pytest.mark.parametrize("shape", [(0, 0, 3), (4, 4), (4, 4, 4)])
def test_no_pixels_no_colours(shape):
    assert dominant_colours(np.zeros(shape, np.uint8)) == []
