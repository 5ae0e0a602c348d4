"""The vectorised aligned pixel search equals a plain loop over (query, candidate, warp, shift).

The fast path (colour warps computed once, shift correlations as row-slab matmuls, separable window sums,
compacted candidate lists, SSIM through banded matmuls) is an optimisation only: this reference spells out
the definition one Pearson correlation at a time (numpy), and SSIM with the 7x7 ``conv2d`` window.
"""

import numpy as np
import torch
import torch.nn.functional as F

from synthgen.privacy.pixel import aligned_scores, ssim, warp_grid


def _images(n, c=3, size=20, seed=0):
    """Smooth random images in [0, 1]: a few Gaussian blobs per channel (no exact ties between pairs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = np.zeros((n, c, size, size), np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx, s = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(1.5, 4)
            out[i] += rng.uniform(0.2, 0.6, size=(c, 1, 1)) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(out + rng.uniform(0, 0.02, out.shape), 0, 1).astype(np.float32)


def _ssim_conv(a, b):
    """SSIM with the 2-D 7x7 Gaussian window as a depthwise ``conv2d`` (the textbook form)."""
    g = torch.exp(-((torch.arange(7, dtype=torch.float32) - 3) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    c = a.shape[1]
    win = (g[:, None] * g[None, :])[None, None].expand(c, 1, 7, 7)

    def f(x):
        return F.conv2d(x, win, groups=c)

    mu_a, mu_b = f(a), f(b)
    saa, sbb, sab = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))).flatten(1).mean(1)


def _pearson(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _reference(q, base, cand, mats, s, ssim_top):
    n, c, h, w = q.shape
    hh, ww = h - 2 * s, w - 2 * s
    grid = F.affine_grid(mats, [len(mats), c, h, w], align_corners=False)
    out = {"pearson": [], "pearson_index": [], "ssim": [], "ssim_index": []}
    for i in range(n):
        warped = F.grid_sample(torch.as_tensor(q[i:i + 1]).expand(len(mats), -1, -1, -1), grid, mode="bilinear",
                               padding_mode="border", align_corners=False).numpy()      # (T, C, H, W)
        rows = []                                                 # (colour Pearson, training index, windows)
        for j in cand[i]:
            if j < 0:
                continue
            bwin = base[j][:, s:h - s, s:w - s]
            best = (-np.inf, None)
            for t in range(len(mats)):
                gq = warped[t].mean(0)
                for dy in range(2 * s + 1):
                    for dx in range(2 * s + 1):
                        r = _pearson(gq[dy:dy + hh, dx:dx + ww], bwin.mean(0))
                        if r > best[0]:
                            best = (r, warped[t][:, dy:dy + hh, dx:dx + ww])
            rows.append((_pearson(best[1], bwin), int(j), best[1], bwin))
        if not rows:
            for key, v in (("pearson", -1.0), ("pearson_index", -1), ("ssim", -1.0), ("ssim_index", -1)):
                out[key].append(v)
            continue
        rows.sort(key=lambda r: -r[0])
        out["pearson"].append(rows[0][0])
        out["pearson_index"].append(rows[0][1])
        top = rows[:ssim_top]
        sv = _ssim_conv(torch.as_tensor(np.stack([r[2] for r in top])), torch.as_tensor(np.stack([r[3] for r in top])))
        k = int(sv.argmax())
        out["ssim"].append(float(sv[k]))
        out["ssim_index"].append(top[k][1])
    return {k: np.asarray(v) for k, v in out.items()}


def test_ssim_banded_matmul_equals_conv2d_window():
    a = torch.as_tensor(_images(6, seed=1))
    b = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert torch.allclose(ssim(a, b), _ssim_conv(a, b), atol=2e-6)
    assert torch.allclose(ssim(a[:, :, 2:-2, 2:-2], b[:, :, 2:-2, 2:-2]),
                          _ssim_conv(a[:, :, 2:-2, 2:-2], b[:, :, 2:-2, 2:-2]), atol=2e-6)


def test_aligned_scores_equal_the_loop_definition():
    base = _images(12, seed=2)
    rng = np.random.default_rng(3)
    # queries: edited training images (shifted, rotated) and unrelated images
    q = np.concatenate([np.roll(base[:3], (1, -2), axis=(2, 3)),
                        F.grid_sample(torch.as_tensor(base[3:5]), F.affine_grid(
                            torch.tensor([[[0.996, -0.087, 0.0], [0.087, 0.996, 0.0]]]).expand(2, -1, -1),
                            [2, 3, 20, 20], align_corners=False), align_corners=False).numpy(),
                        _images(3, seed=4)]).astype(np.float32)
    cand = rng.integers(0, 12, size=(len(q), 5))
    cand[:5, 0] = np.arange(5)                                    # the true source is always a candidate
    cand[1, 2:] = -1                                              # uneven candidate lists ...
    cand[6, :] = -1                                               # ... and a query without any
    mats = warp_grid([-5.0, 5.0], [0.95, 1.05], True, (20, 20))
    ref = _reference(q, base, cand, mats, 2, 3)
    for batch in (3, 64):                                         # batching and compaction do not matter
        got = aligned_scores(q, base, cand, mats, max_shift=2, ssim_top=3, batch=batch)
        assert np.array_equal(got["pearson_index"], ref["pearson_index"])
        assert np.array_equal(got["ssim_index"], ref["ssim_index"])
        np.testing.assert_allclose(got["pearson"], ref["pearson"], atol=2e-5)
        np.testing.assert_allclose(got["ssim"], ref["ssim"], atol=2e-5)
    assert ref["pearson_index"][6] == -1 and (ref["pearson"][:5] > 0.97).all()
