"""Cohort gates calibrated on real unseen data (issue 13).

A shifted split built from real PneumoniaMNIST images: train ``T``, a holdout ``H`` with a scanner-like
intensity shift (gamma 1.3: darker mid-tones), a reference ``R`` and a "clean cohort" of other real unseen,
unshifted images of the training distribution. Real unseen images themselves sit closer to ``T`` than to the
shifted ``H`` (share ~0.6), so the former constant-0.5 DCR null fails them; against ``R`` they pass every gate,
while the same cohort with 5% planted copies and an overtrained generator's output fail.
"""

import json

import numpy as np
import pytest

from conftest import make_medmnist_npz
from synthgen.cli import main as synthgen_main
from synthgen.privacy.audit import run_audit
from synthgen.privacy.cli import default_privacy_config
from synthgen.privacy.exact import image_hashes, quantize01
from synthgen.privacy.inputs import ImageSet, read_image_set, split_holdout
from synthgen.privacy.plant import memorized_samples, memorizing_generator, plant_copies

FAST = ["embedding.steps=30", "embedding.batch_size=64", "pixel.prefilter_quantile=0"]
N_TRAIN, N_HOLD, N_REF, N_CLEAN = 1200, 1000, 500, 500


def _set(x, y, name):
    return ImageSet(np.ascontiguousarray(x, np.float32), np.asarray(y, np.int64),
                    np.array([f"{name}{i}" for i in range(len(x))]), "uint8", name)


def _requant(x):
    return (np.rint(np.clip(x, 0, 1) * 255) / 255).astype(np.float32)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """(train, shifted holdout, reference, clean cohort, encoder cache) from PneumoniaMNIST's train split,
    images with an exact duplicate inside the split left out (native duplicates would sit on both sides)."""
    from conftest import shared_npz

    z = np.load(shared_npz("pneumoniamnist_imbalanced.npz"))
    x = z["train_images"][:, None].astype(np.float32) / 255
    y = z["train_labels"][:, 0].astype(np.int64)
    _, inv, cnt = np.unique(image_hashes(quantize01(x)), return_inverse=True, return_counts=True)
    p = np.random.default_rng(0).permutation(np.flatnonzero(cnt[inv] == 1))
    cut = np.cumsum([N_TRAIN, N_HOLD, N_REF, N_CLEAN])
    t, h, r, c = np.split(p, cut)[:4]
    sets = (_set(x[t], y[t], "t"), _set(_requant(x[h] ** 1.3), y[h], "h"), _set(x[r], y[r], "r"),
            _set(x[c], y[c], "c"))
    return (*sets, str(tmp_path_factory.mktemp("enc")))


def _audit(shifted, syn):
    train, hold, ref, _, cache = shifted
    return run_audit(train, hold, syn, default_privacy_config(FAST), cache_dir=cache, reference=ref)


def _failed(res):
    return [k for k, g in res.gates.items() if not g["passed"]]


def test_clean_cohort_passes_where_the_constant_null_failed(shifted):
    res = _audit(shifted, shifted[3])
    d = res.stats["dcr"]
    assert res.passed, _failed(res)
    # the former rule (fail if share > 0.55 with binomial p < 0.05 against 0.5) fails real unseen data:
    assert d["share_syn"] > 0.55 and d["p_value_vs_half"] < 1e-4
    assert d["share_ref"] > 0.55 and d["ref_p_value_vs_half"] < 1e-4          # ... the reference too
    assert abs(d["difference"]) < 0.1 and d["p_value"] > 0.2
    assert res.gates["dcr"]["share_ref"] == d["share_ref"] and res.gates["dcr"]["limit"] == 0.05
    # in-distribution non-members: membership AUC at chance, and the real-data control agrees
    assert abs(res.stats["mia"]["auc"] - 0.5) < 0.06 and abs(res.stats["mia_control"]["auc"] - 0.5) < 0.06
    assert res.stats["mia"]["n_members"] == res.stats["mia"]["n_nonmembers"] >= 400
    assert res.stats["reference"]["origin"] == "given" and res.stats["flagged_share"] < 0.015


def test_planted_copies_fail(shifted):
    train, _, _, clean, _ = shifted
    idx = np.sort(np.random.default_rng(1).choice(len(train), 26, replace=False))   # 26 / 526 ~ 5%
    planted = np.concatenate([plant_copies(train.images, idx[:13], "exact", 1)[0],
                              plant_copies(train.images, idx[13:], "mild", 2)[0]])
    syn = _set(np.concatenate([clean.images, planted]), np.r_[clean.labels, train.labels[idx]], "p")
    res = _audit(shifted, syn)
    assert not res.passed and "flagged_share" in _failed(res)
    assert res.flags[len(clean):].sum() >= 24 and res.stats["flagged_share"] > 0.04


def test_overtrained_generator_fails_on_dcr(shifted, one_thread):
    train = shifted[0]
    # a conditional autoencoder overfit on 200 training images (MSE ~0.003): its samples are blurred,
    # noisy-latent reconstructions, mostly not flagged one by one
    model, mse = memorizing_generator(train.images[:200], train.labels[:200], epochs=40, seed=0)
    syn = _set(memorized_samples(model, train.images[:200], train.labels[:200], 0.3, 5), train.labels[:200], "m")
    res = _audit(shifted, syn)
    d = res.stats["dcr"]
    assert mse < 0.01 and not res.passed and "dcr" in _failed(res), _failed(res)
    assert d["difference"] > 0.1 and d["p_value"] < 0.02 and res.stats["flagged_share"] < 0.5


def _npz(path, s):
    np.savez(path, images=(s.images * 255).round().astype(np.uint8), labels=s.labels)
    return str(path)


def test_cli_reference_and_holdout_halves(tmp_path, capsys):
    toy = make_medmnist_npz(tmp_path / "toy.npz", n=80, channels=1)
    base = ["audit", "--train", f"{toy}#train", "--holdout", f"{toy}#test", "--synthetic", f"{toy}#val",
            "--cache-dir", str(tmp_path / "c"), *FAST, "embedding.steps=5"]
    assert synthgen_main([*base, "--reference", f"{toy}#val", "--out", str(tmp_path / "r.json")]) in (0, 1)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["inputs"]["reference"].endswith("#val") and rep["cohort"]["reference"]["origin"].startswith("given")
    assert "warning" not in capsys.readouterr().err
    assert synthgen_main([*base, "--out", str(tmp_path / "h.json")]) in (0, 1)
    err = capsys.readouterr().err
    assert "warning: no --reference" in err and "near-duplicates" in err
    rep = json.loads((tmp_path / "h.json").read_text())
    assert rep["cohort"]["reference"]["origin"] == "holdout half"
    assert rep["cohort"]["n_reference"] + rep["cohort"]["n_holdout"] == 40
    # the same file as holdout and reference: shared patients are bad input
    assert synthgen_main([*base, "--reference", f"{toy}#test", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "patient ids with the holdout" in err[0] and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("bad", [[99], [-1], [-1, 99]])
def test_cli_synthetic_labels_outside_training_classes_are_bad_input(tmp_path, capsys, bad):
    toy = make_medmnist_npz(tmp_path / "toy.npz", n=40, channels=1, n_classes=3)
    s = read_image_set(f"{toy}#val", "synthetic")
    labels = s.labels.copy()
    labels[: len(bad)] = bad
    syn = _npz(tmp_path / "syn.npz", _set(s.images, labels, "s"))
    rc = synthgen_main(["audit", "--train", f"{toy}#train", "--holdout", f"{toy}#test", "--synthetic", syn,
                        "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "syn.npz" in err[0], err
    assert f"labels [{', '.join(map(str, sorted(bad)))}] are not training classes" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_holdout_halves_split_by_patient():
    x = np.zeros((10, 1, 4, 4), np.float32)
    h = ImageSet(x, np.zeros(10, np.int64), np.repeat(np.array(["a", "b", "c", "d", "e"]), 2), "uint8", "h.npz")
    ref, rest = split_holdout(h, seed=0)
    assert len(ref) + len(rest) == 10 and not set(ref.patient_ids) & set(rest.patient_ids)
    assert len(set(ref.patient_ids)) == 2 and len(set(rest.patient_ids)) == 3
    again, _ = split_holdout(h, seed=0)
    assert again.patient_ids.tolist() == ref.patient_ids.tolist()
