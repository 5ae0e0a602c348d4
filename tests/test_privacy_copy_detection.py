"""Issue 15 detector parts: benchmark edits, border-cut low-res vectors, continuous alignment refinement."""

import numpy as np
import pytest

from synthgen.privacy.edits import LEVELS, affine, edit_copies, rotscale_map
from synthgen.privacy.pixel import aligned_scores, lowres, warp_grid
from synthgen.privacy.refine import RefineSettings, disc_mask, refine_pairs
from synthgen.privacy.scores import score_settings


def _anatomy(n, size=28, seed=0):
    """Smooth look-alike grayscale images: one shared blob layout, per-image jitter + texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    out = np.zeros((n, 1, size, size))
    for i in range(n):
        img = 0.2 + 0.0 * yy
        for cy, cx, s, a in ((9, 9, 4, 0.5), (9, 19, 4, 0.5), (19, 14, 5, 0.3), (14, 14, 2, 0.2)):
            cy, cx = cy + rng.normal(0, 0.8), cx + rng.normal(0, 0.8)
            img = img + a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        tex = rng.normal(0, 1, (size, size))
        tex = np.real(np.fft.ifft2(np.fft.fft2(tex) * np.exp(-((np.fft.fftfreq(size)[:, None] ** 2
                                                                + np.fft.fftfreq(size)[None] ** 2) * 60))))
        out[i, 0] = img + 0.12 * tex / tex.std()
    return np.clip(out, 0, 1).astype(np.float32)


def test_every_edit_family_is_seeded_quantized_and_in_range():
    x = _anatomy(3)
    for fam, levels in LEVELS.items():
        for lv in range(1, len(levels) + 1):
            a, pa = edit_copies(x, np.array([0, 2]), fam, lv, seed=4)
            b, pb = edit_copies(x, np.array([0, 2]), fam, lv, seed=4)
            assert a.shape == (2, 1, 28, 28) and a.dtype == np.float32
            assert np.array_equal(a, b) and pa == pb, fam
            assert a.min() >= 0 and a.max() <= 1 and np.allclose(a * 255, np.rint(a * 255), atol=1e-4)
    e, _ = edit_copies(x, np.array([1]), "exact", 1, 0)
    assert np.abs(e[0] - x[1]).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError):
        edit_copies(x, np.array([0]), "rotscale", 5, 0)


def test_bicubic_path_uses_the_same_geometry_as_scipy():
    """The torch (bicubic) and scipy (spline) resamplers of one pixel map agree: same coordinate convention."""
    x = _anatomy(1)[0]
    a, b = rotscale_map(28, 28, 7.0, 1.06, 0.4, -0.3)
    cub, spl, lin = (affine(x, a, b, m, "edge") for m in ("bicubic", "spline", "bilinear"))
    ident = affine(x, np.eye(2), np.zeros(2), "bicubic", "edge")
    assert np.abs(ident - x).max() < 1e-5
    assert np.abs(cub - spl)[:, 4:-4, 4:-4].mean() < 0.01 and np.abs(lin - spl)[:, 4:-4, 4:-4].mean() < 0.02
    assert np.abs(spl - x).mean() > 0.02      # the map did move the image


def test_lowres_margin_cuts_the_border_before_pooling():
    x = _anatomy(2)
    assert lowres(x, 4).shape == (2, 49) and lowres(x, 4, margin=4).shape == (2, 25)
    y = x.copy()
    y[..., :3, :] = 0.0                           # a zero-padded stripe inside the margin changes nothing
    assert np.allclose(lowres(x, 4, 4).numpy(), lowres(y, 4, 4).numpy())


def test_refinement_recovers_a_composed_copy_the_grid_misses_and_not_a_look_alike():
    x = _anatomy(6, seed=1)
    a, b = rotscale_map(28, 28, 6.5, 0.955, 0.5, -0.5)
    copy = np.clip(np.rint(affine(x[0], a, b, "spline", "constant") * 255) / 255, 0, 1)[None].astype(np.float32)
    cand = np.array([[0, 3]])
    grid = aligned_scores(copy, x, cand, warp_grid([-5, -2.5, 2.5, 5], [0.9, 0.95, 1.05, 1.11], True, (28, 28)))
    ref = refine_pairs(copy, x, cand, RefineSettings(top=2))
    assert ref[0, 0] > 0.98 and ref[0, 0] > grid["pearson"][0] + 0.01
    assert ref[0, 1] < ref[0, 0] - 0.05          # another "patient" with the same layout stays well below
    none = refine_pairs(copy, x, np.array([[-1, -1]]), RefineSettings(top=2))
    assert np.all(none == -1)


def test_refinement_is_bounded_and_masked():
    assert disc_mask(28, 28, 2).sum() == pytest.approx(np.pi * 12**2, rel=0.05)
    x = _anatomy(2, seed=2)
    far = np.rot90(x[:1], 1, (-2, -1)).copy()      # 90 degrees is outside max_angle_deg: stays a poor match
    r = refine_pairs(far, x, np.array([[0]]), RefineSettings(top=1, max_angle_deg=12.0))
    assert r[0, 0] < 0.9


def test_score_settings_read_the_refine_group():
    s = score_settings({"candidates": 4, "refine": {"top": 2, "quantile": 0.3, "start_angles": [0, 5]}}, 8)
    assert s.candidates == 4 and s.ratio_k == 8 and s.refine.top == 2 and s.refine_quantile == 0.3
    assert s.refine.start_angles == (0.0, 5.0)
    assert score_settings({}).refine.top == 0


def _patients(n_pat, slices, seed):
    """``n_pat`` look-alike patients, ``slices`` neighbouring slices each (sub-pixel drift + 1% noise)."""
    base = _anatomy(n_pat, seed=seed)
    rng = np.random.default_rng(seed + 100)
    out, pid = [], []
    for p in range(n_pat):
        d = rng.uniform(-0.4, 0.4, 2)
        for k in range(slices):
            a, b = rotscale_map(28, 28, 0.0, 1.0 + 0.01 * k, *(k * d))
            s = affine(base[p], a, b, "bilinear", "edge") + rng.normal(0, 0.01, (1, 28, 28))
            out.append(np.clip(np.rint(s * 255) / 255, 0, 1))
            pid.append(f"p{seed}-{p}")
    return np.asarray(out, np.float32), np.asarray(pid)


def test_neighbour_slice_policy_is_a_setting(tmp_path):
    """``copy`` flags an unseen neighbouring slice of a training patient, ``allowed`` does not; a near-exact
    copy of a training slice is flagged under both."""
    from synthgen.privacy.audit import run_audit
    from synthgen.privacy.cli import default_privacy_config
    from synthgen.privacy.inputs import ImageSet

    def iset(x, pid, name):
        return ImageSet(x, np.zeros(len(x), np.int64), pid, "uint8", name)

    x, pid = _patients(40, 4, 0)
    last = np.arange(len(x)) % 4 == 3                       # slice 3 of every training patient stays unseen
    train = iset(x[~last], pid[~last], "train")
    hx, hp = _patients(40, 3, 1)
    rx, rp = _patients(20, 3, 2)
    rng = np.random.default_rng(3)
    src = rng.choice(len(train), 20, replace=False)
    near = np.clip(np.rint((train.images[src] + rng.normal(0, 0.005, train.images[src].shape)) * 255) / 255, 0, 1)
    syn = iset(np.concatenate([x[last][:20], near]).astype(np.float32), np.array([f"s{i}" for i in range(40)]), "s")
    flags = {}
    for policy in ("copy", "allowed"):
        cfg = default_privacy_config(["embedding.steps=30", "embedding.batch_size=64", "pixel.prefilter_quantile=0",
                                      f"policy.neighbour_slice={policy}"])
        res = run_audit(train, iset(hx, hp, "h"), syn, cfg, cache_dir=str(tmp_path), reference=iset(rx, rp, "r"))
        flags[policy] = res.flags
        assert res.stats["policy"]["neighbour_slice"] == policy
    assert flags["copy"][:20].mean() >= 0.9 and flags["allowed"][:20].mean() <= 0.3
    assert flags["copy"][20:].all() and flags["allowed"][20:].mean() >= 0.9
