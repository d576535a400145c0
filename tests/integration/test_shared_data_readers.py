"""The real recordings of ../shared/data (skipped when absent): every file opens with the axes its
name gives, and frames equal tifffile's full read."""

import numpy as np
import pytest
import tifffile

from blockreg.io import open_series
from helpers.paths import SHARED_DATA

DATA = SHARED_DATA

# file -> (channel, axes read, how the full array maps to the reader's frames)
CASES = {
    "thunder_fish_zebrafish_tzyx.tif": (None, "tzyx", lambda a: a),
    "thunder_mouse_s1_2p_tyx.tif": (None, "tyx", lambda a: a),
    "sima_ca1_2p_tyx.tif": (None, "tyx", lambda a: a),
    "sima_volume_2p_tzcyx.tif": (1, "tzyx", lambda a: a[:, :, 1]),
    # an ImageJ Z stack (no T): one frame of two planes, as docs/formats.md says
    "ciatah_spinal_ref_template_pair.tif": (None, "tzyx", lambda a: a[None]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_recording(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"needs {path}")
    channel, axes, expected = CASES[name]
    full = expected(tifffile.imread(path))
    reader = open_series(path, channel=channel)
    assert reader.axes == axes and reader.shape == full.shape and reader.dtype == full.dtype
    for t in (0, full.shape[0] // 2, -1):
        np.testing.assert_array_equal(reader[t], full[t])
