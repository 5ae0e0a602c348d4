"""The privacy audit at size (working resolution) and for volumes (issue 17): 16^3 fixtures, seconds each."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from synthgen.io import save_npz, write_json
from synthgen.privacy.audit import run_audit
from synthgen.privacy.cli import default_privacy_config
from synthgen.privacy.inputs import ImageSet
from synthgen.privacy.pixel import lowres
from synthgen.privacy.volume import aligned_scores_volume
from synthgen.privacy.working import to_working, working_shape
from synthgen.stages.privacy import main as stage_main


def _volumes(n, rng, s=16):
    """``n`` smooth random volumes ``(n, 1, s, s, s)`` on the uint8 grid, each spanning [0, 1]."""
    x = ndimage.gaussian_filter(rng.standard_normal((n, 1, s, s, s)), (0, 0, 1.5, 1.5, 1.5))
    lo, hi = x.min(axis=(1, 2, 3, 4), keepdims=True), x.max(axis=(1, 2, 3, 4), keepdims=True)
    return (np.rint((x - lo) / (hi - lo) * 255) / 255).astype(np.float32)


def _set(x, tag, labels=None):
    y = np.zeros(len(x), np.int64) if labels is None else labels
    return ImageSet(x, y, np.array([f"{tag}{i}" for i in range(len(x))]), "uint8", tag)


def _shift_edge(v, shift):
    """Shift ``(C, D, H, W)`` by integer voxels per axis, edge padding (no wrap-around)."""
    c, *sp = v.shape
    pad = [(0, 0)] + [(abs(s), abs(s)) for s in shift]
    p = np.pad(v, pad, mode="edge")
    sl = tuple([slice(None)] + [slice(abs(s) - s, abs(s) - s + n) for s, n in zip(shift, sp)])
    return p[sl]


CFG = ["embedding.steps=20", "embedding.batch_size=16", "embedding.cache_dir=null", "threads=1"]


def test_working_resolution_is_an_area_mean_and_never_upsamples():
    assert working_shape((28, 28), 32) == (28, 28) and working_shape((128, 128), 32) == (32, 32)
    assert working_shape((128, 96), 32) == (32, 24) and working_shape((64, 64, 64), 16) == (16, 16, 16)
    assert working_shape((128, 128), None) == (128, 128)
    x = np.random.default_rng(0).random((5, 3, 64, 64)).astype(np.float32)
    w = to_working(x, 32, chunk=2)
    assert w.shape == (5, 3, 32, 32) and w.dtype == np.float32
    np.testing.assert_allclose(w, x.reshape(5, 3, 32, 2, 32, 2).mean((3, 5)), atol=1e-6)
    assert to_working(x, 64) is x
    v = np.random.default_rng(1).random((2, 1, 32, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(to_working(v, 16), v.reshape(2, 1, 16, 2, 16, 2, 16, 2).mean((3, 5, 7)), atol=1e-6)


def test_volume_shift_search_matches_a_plain_loop():
    rng = np.random.default_rng(2)
    base = _volumes(5, rng, 10)
    q = np.stack([_shift_edge(base[1], (1, -2, 0)), _volumes(1, rng, 10)[0]])
    q[0] = np.clip(q[0] * 0.8 + 0.1, 0, 1)                                  # brightness/contrast: Pearson-invariant
    cand = np.array([[0, 1, 2], [3, 4, -1]])
    got = aligned_scores_volume(q, base, cand, max_shift=2, ssim_top=2)
    s, n = 2, 10
    want = np.full(2, -1.0)
    for i in range(2):
        for j in cand[i]:
            if j < 0:
                continue
            t = base[j, :, s:n - s, s:n - s, s:n - s].ravel()
            for dz in range(5):
                for dy in range(5):
                    for dx in range(5):
                        w = q[i, :, dz:dz + n - 2 * s, dy:dy + n - 2 * s, dx:dx + n - 2 * s].ravel()
                        want[i] = max(want[i], np.corrcoef(w, t)[0, 1])
    np.testing.assert_allclose(got["pearson"], want, atol=1e-4)
    assert got["pearson_index"][0] == 1 and got["pearson"][0] > 0.999
    assert got["ssim_index"][0] == 1 and got["ssim"][0] > 0.95       # (SSIM sees the contrast change)
    assert got["top_index"].shape == (2, 2) and got["top_index"][1, 1] in (3, 4)


def test_volume_flips_only_where_declared():
    rng = np.random.default_rng(3)
    base = _volumes(3, rng, 12)
    q = base[[2]][..., ::-1].copy()                                         # mirrored along W
    cand = np.array([[0, 1, 2]])
    assert aligned_scores_volume(q, base, cand)["pearson"][0] < 0.9
    got = aligned_scores_volume(q, base, cand, flips=(2,))
    assert got["pearson"][0] > 0.999 and got["pearson_index"][0] == 2


def test_lowres_of_volumes():
    v = torch.rand(4, 1, 16, 16, 16)
    r = lowres(v, 2, 1)
    assert r.shape == (4, 7 ** 3)
    torch.testing.assert_close(r.norm(dim=1), torch.ones(4))


def _fixture_3d(seed=0):
    rng = np.random.default_rng(seed)
    tr, ho, ref, fresh = _volumes(48, rng), _volumes(40, rng), _volumes(24, rng), _volumes(12, rng)
    shifted = _shift_edge(tr[5], (1, -1, 2))
    edited = np.clip(tr[7] ** 1.2 * 0.9 + 0.03, 0, 1)                      # gamma + window
    edited = (np.rint(edited * 255) / 255).astype(np.float32)
    syn = np.concatenate([fresh, tr[[3]], shifted[None], edited[None]])
    return tr, ho, ref, syn, len(fresh)


def test_volume_audit_flags_copies_not_fresh_volumes():
    tr, ho, ref, syn, nf = _fixture_3d()
    cfg = default_privacy_config(CFG)
    r = run_audit(_set(tr, "t"), _set(ho, "h"), _set(syn, "s"), cfg, reference=_set(ref, "r"))
    assert not r.flags[:nf].any()
    assert r.flags[nf:].all()
    assert r.rule[nf] == "exact" and list(r.matched[nf:]) == [3, 5, 7]
    assert (r.scores["pearson"][nf + 1:] > 0.99).all() and (r.scores["pearson"][:nf] < 0.8).all()
    assert r.stats["working_resolution"]["working_shape"] == [16, 16, 16]
    assert {"exact_copies", "flagged_share", "dcr", "mia_auc"} <= set(r.gates)


def test_volume_audit_at_working_size_downsamples_larger_volumes():
    tr, ho, ref, syn, nf = _fixture_3d(1)
    up = lambda x: np.repeat(np.repeat(np.repeat(x, 2, 2), 2, 3), 2, 4)  # noqa: E731  16^3 -> 32^3
    cfg = default_privacy_config(CFG)
    r = run_audit(_set(up(tr), "t"), _set(up(ho), "h"), _set(up(syn), "s"), cfg, reference=_set(up(ref), "r"))
    assert r.stats["working_resolution"] == {"input_shape": [32, 32, 32], "working_shape": [16, 16, 16],
                                             "working_size": 16}
    assert r.flags[nf:].all() and not r.flags[:nf].any()


def test_2d_audit_at_64px_runs_at_the_working_size_and_finds_copies():
    rng = np.random.default_rng(4)

    def imgs(n):
        x = ndimage.gaussian_filter(rng.standard_normal((n, 1, 64, 64)), (0, 0, 3, 3))
        lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
        return (np.rint((x - lo) / (hi - lo) * 255) / 255).astype(np.float32)

    tr, ho, ref, fresh = imgs(60), imgs(50), imgs(20), imgs(12)
    shifted = np.pad(tr[4], ((0, 0), (3, 0), (0, 3)), mode="edge")[:, :64, 3:]
    syn = np.concatenate([fresh, tr[[2]], shifted[None]])
    cfg = default_privacy_config(CFG + ["pixel.refine.top=0"])
    r = run_audit(_set(tr, "t"), _set(ho, "h"), _set(syn, "s"), cfg, reference=_set(ref, "r"))
    assert r.stats["working_resolution"]["working_shape"] == [32, 32]
    assert r.flags[12:].all() and list(r.matched[12:]) == [2, 4] and not r.flags[:12].any()


def test_privacy_stage_accepts_a_3d_cohort(tmp_path):
    tr, ho, ref, syn, nf = _fixture_3d(2)
    prep, cur = tmp_path / "prepared", tmp_path / "curated"
    q = lambda x: np.rint(x * 255).astype(np.uint8)  # noqa: E731
    for name, x, tag in (("train", tr, "t"), ("holdout", ho, "h"), ("val", ref, "r")):
        save_npz(prep / f"{name}.npz", images=q(x), labels=np.zeros(len(x), np.int64),
                 patient_ids=np.array([f"{tag}{i}" for i in range(len(x))]),
                 sources=np.array([f"{tag}{i}.nii.gz" for i in range(len(x))]))
    write_json(prep / "meta.json", {"class_names": ["a"], "dims": 3, "spacing": [2.0, 2.0, 2.0],
                                    "volume_shape": [16, 16, 16], "privacy_reference_split": "val"})
    save_npz(cur / "cohort.npz", images=q(syn), labels=np.zeros(len(syn), np.int64),
             index=np.arange(len(syn), dtype=np.int64))
    write_json(cur / "cohort.json", {"generator": "test", "class_names": ["a"]})
    ov = [f"paths.prepared={prep}", f"paths.curated={cur}", f"paths.audited={tmp_path / 'audited'}",
          f"paths.metrics={tmp_path / 'metrics'}", f"paths.reports={tmp_path / 'reports'}",
          *(f"privacy.{o}" for o in CFG), "privacy.gates.max_flagged_share=0.5", "privacy.mia_loss.enabled=false"]
    assert stage_main(ov) == 0
    z = np.load(tmp_path / "audited" / "cohort.npz")
    assert z["images"].shape == (nf, 1, 16, 16, 16)
    assert sorted(z["index"].tolist()) == list(range(nf))                 # the three copies are dropped
    rep = json.loads((tmp_path / "reports" / "privacy_report.json").read_text())
    assert rep["cohort"]["n_flagged"] == 3
    assert (tmp_path / "reports" / "privacy_nearest_pairs.png").exists()


def test_volumes_pass_the_input_reader_unchanged():
    from synthgen.errors import InputError
    from synthgen.privacy.inputs import to_nchw

    for shape in ((3, 1, 8, 8, 8), (3, 3, 8, 8, 8)):
        assert to_nchw(np.zeros(shape, np.uint8), "x").shape == shape
    with pytest.raises(InputError, match="volumes"):
        to_nchw(np.zeros((3, 2, 8, 8, 8), np.uint8), "x")


def test_images_at_or_below_the_working_size_are_audited_exactly_as_at_full_resolution():
    rng = np.random.default_rng(5)
    x = ndimage.gaussian_filter(rng.standard_normal((70, 1, 28, 28)), (0, 0, 1.5, 1.5))
    x = (np.rint((x - x.min()) / np.ptp(x) * 255) / 255).astype(np.float32)
    sets = (_set(x[:30], "t"), _set(x[30:50], "h"), _set(np.concatenate([x[50:60], x[:2]]), "s"))
    a = run_audit(*sets, default_privacy_config(CFG), reference=_set(x[60:], "r"))
    b = run_audit(*sets, default_privacy_config(CFG + ["working_size=null"]), reference=_set(x[60:], "r"))
    for k in ("pearson", "ssim", "embedding", "ratio"):
        np.testing.assert_array_equal(a.scores[k], b.scores[k])
    np.testing.assert_array_equal(a.flags, b.flags)
    assert a.stats["working_resolution"]["working_shape"] == [28, 28]
