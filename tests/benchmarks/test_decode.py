"""bench decode: reduced-scale and full decodes of the same files, compared."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks.decode import measure_folder
from catalogs.errors import MorphcatError
from catalogs.inputs import ImageSpec, model_input


def _galaxy(side: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[:side, :side] - side / 2
    core = 200 * np.exp(-(x**2 + (1.5 * y) ** 2) / (2 * (side / 8) ** 2))
    noise = np.random.default_rng(seed).normal(0, 3, (side, side))
    return np.clip(np.repeat((core + 12 + noise)[..., None], 3, axis=2), 0, 255).astype(np.uint8)


def test_bench_decode_compares_both_decodes_of_every_file(tmp_path):
    for i in range(3):
        Image.fromarray(_galaxy(424, i)).save(tmp_path / f"g{i}.jpeg", quality=90)
    got = measure_folder(tmp_path, 10, ImageSpec())
    assert got["files"] == 3 and got["source_size"] == (424, 424)
    fixed = got["framings"]["fixed"]
    assert fixed["drafted_fraction"] == 1.0  # 212 px crops of 424 px files: decoded at 1/2
    want = max(int(np.abs(model_input(p, ImageSpec(framing="fixed")).pixels.astype(int)
                          - model_input(p, ImageSpec(framing="fixed"), draft=False).pixels.astype(int)).max())
               for p in sorted(tmp_path.glob("*.jpeg")))
    assert fixed["max_abs_diff"] == want and 0 < want <= 12
    assert fixed["speedup"] == pytest.approx(fixed["draft_ips"] / fixed["full_decode_ips"], abs=0.006)


def test_bench_decode_refuses_a_folder_without_jpegs(tmp_path):
    with pytest.raises(MorphcatError, match="no JPEG file"):
        measure_folder(tmp_path, 10, ImageSpec())
