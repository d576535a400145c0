"""The dashboard's grey PNGs (coordinator.images): decodable, scaled, NaN black, subsampled."""
from __future__ import annotations

import io

import numpy as np
import pytest

from blockreg_services.coordinator import images

Image = pytest.importorskip("PIL.Image")


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_png_maps_the_limits_to_black_and_white_and_nan_to_black():
    img = np.array([[0.0, 5.0, 10.0], [np.nan, 2.5, 20.0]], dtype=np.float32)
    pixels = decode(images.to_png(img, limits=(0.0, 10.0)))
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 3)
    np.testing.assert_array_equal(pixels, [[0, 127, 255], [0, 63, 255]])


def test_a_volume_is_shown_as_its_maximum_projection_and_large_pictures_are_subsampled():
    vol = np.zeros((3, 4, 5), dtype=np.float32)
    vol[1, 2, 3] = 7.0
    vol[2, 0, 0] = np.nan
    assert images.plane(vol)[2, 3] == 7.0 and images.plane(vol)[0, 0] == 0.0
    big = np.random.default_rng(0).random((1100, 700)).astype(np.float32)
    assert decode(images.to_png(big)).shape == (367, 234)  # every 3rd pixel: at most 512 a side


def test_limits_ignore_nan_and_never_collapse():
    assert images.display_limits(np.full((4, 4), np.nan)) == (0.0, 1.0)
    lo, hi = images.display_limits(np.full((4, 4), 3.0))
    assert hi > lo
    assert images.png_data_url(np.ones((2, 2))).startswith("data:image/png;base64,iVBOR")
