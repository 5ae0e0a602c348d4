"""The sample grid copes with classes that have fewer images than the grid has slots."""

import numpy as np

from synthgen.reports.grid import sample_grid


def test_grid_with_short_and_empty_classes(tmp_path):
    rng = np.random.default_rng(0)
    real, real_y = rng.random((5, 1, 16, 16), dtype=np.float32), np.array([0, 0, 1, 1, 1])
    syn, syn_y = rng.random((3, 1, 16, 16), dtype=np.float32), np.array([0, 0, 0])
    a = sample_grid(tmp_path / "a.png", ["x", "y", "z"], real, real_y, syn, syn_y, columns=4, rows=2)
    b = sample_grid(tmp_path / "b.png", ["x", "y", "z"], real, real_y, syn, syn_y, columns=4, rows=2)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()
