"""The privacy audit end to end: planted copies in real BloodMNIST images, the CLI's exit codes, the stage."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, make_medmnist_npz
from synthgen.cli import main as synthgen_main
from synthgen.privacy.audit import run_audit
from synthgen.privacy.cli import default_privacy_config
from synthgen.privacy.inputs import ImageSet, read_image_set
from synthgen.privacy.plant import STRENGTHS, plant_copies

# Small and fast: a briefly trained encoder, every query searched (no prefilter at this size).
FAST = ["embedding.steps=30", "embedding.batch_size=64", "pixel.prefilter_quantile=0"]


def _set(x, y, name):
    return ImageSet(x.astype(np.float32), y.astype(np.int64), np.array([f"{name}{i}" for i in range(len(x))]),
                    "uint8", name)


@pytest.fixture(scope="module")
def enc_cache(tmp_path_factory):
    """One copy-encoder cache for the module: audits of the same training images reuse the encoder."""
    return str(tmp_path_factory.mktemp("encoder"))


@pytest.fixture(scope="module")
def blood_small(request):
    from conftest import shared_npz

    path = shared_npz("bloodmnist.npz")
    z = np.load(path)
    f = lambda k: z[k].transpose(0, 3, 1, 2).astype(np.float32) / 255  # noqa: E731
    rng = np.random.default_rng(0)
    tr = np.sort(rng.choice(len(z["train_labels"]), 600, replace=False))
    va = np.sort(rng.choice(len(z["val_labels"]), 300, replace=False))
    te = np.sort(rng.choice(len(z["test_labels"]), 200, replace=False))
    train = _set(f("train_images")[tr], z["train_labels"][tr, 0], "t")
    hold = _set(f("val_images")[va], z["val_labels"][va, 0], "h")
    neg = _set(f("test_images")[te], z["test_labels"][te, 0], "n")
    return path, train, hold, neg


def test_planted_copies_are_caught_on_real_images(blood_small, enc_cache):
    _, train, hold, neg = blood_small
    rng = np.random.default_rng(1)
    imgs, labels, kind, src = [neg.images], [neg.labels], ["neg"] * len(neg), [-1] * len(neg)
    for k, s in enumerate(STRENGTHS):
        idx = np.sort(rng.choice(len(train), 40, replace=False))
        imgs.append(plant_copies(train.images, idx, s, 10 + k)[0])
        labels.append(train.labels[idx])
        kind += [s] * 40
        src += idx.tolist()
    syn = _set(np.concatenate(imgs), np.concatenate(labels), "s")
    cfg = default_privacy_config(FAST)
    res = run_audit(train, hold, syn, cfg, cache_dir=enc_cache)
    kind, src = np.array(kind), np.array(src)
    recall = {s: res.flags[kind == s].mean() for s in STRENGTHS}
    assert recall["exact"] == 1.0
    assert recall["mild"] >= 0.95, recall
    assert recall["moderate"] >= 0.85, recall
    assert res.flags[kind == "neg"].mean() <= 0.02
    hit = res.flags & (kind != "neg")
    assert (res.matched[hit] == src[hit]).mean() >= 0.95      # the matched training index is the source
    assert not res.passed and "flagged_share" in [k for k, g in res.gates.items() if not g["passed"]]
    # (the same negatives without copies pass: test_cli_exit_codes_and_report, exit 0)


def _npz(path, x, y):
    np.savez(path, images=(x * 255).round().astype(np.uint8), labels=y)
    return str(path)


def test_cli_exit_codes_and_report(blood_small, enc_cache, tmp_path, capsys):
    _, train, hold, neg = blood_small
    T = _npz(tmp_path / "t.npz", train.images, train.labels)
    H = _npz(tmp_path / "h.npz", hold.images, hold.labels)
    S_ok = _npz(tmp_path / "ok.npz", neg.images[:150], neg.labels[:150])
    copies = np.concatenate([neg.images[:150], train.images[:50]])
    S_bad = _npz(tmp_path / "bad.npz", copies, np.concatenate([neg.labels[:150], train.labels[:50]]))
    args = ["--train", T, "--holdout", H, "--cache-dir", enc_cache]
    assert synthgen_main(["audit", *args, "--synthetic", S_ok, "--out", str(tmp_path / "ok.json"), *FAST]) == 0
    rep = json.loads((tmp_path / "ok.json").read_text())
    assert rep["passed"] is True and {"pearson", "ssim", "embedding", "ratio"} <= set(rep["thresholds"])
    assert rep["thresholds"]["pearson"]["overall"] >= 0.95 and "quantile" in rep["thresholds"]["pearson"]["method"]
    assert synthgen_main(["audit", *args, "--synthetic", S_bad, "--out", str(tmp_path / "bad.json"),
                          "--png", str(tmp_path / "pairs.png"), *FAST]) == 1
    rep = json.loads((tmp_path / "bad.json").read_text())
    exact = [f for f in rep["flagged"] if f["rule"] == "exact"]
    assert rep["passed"] is False and len(exact) == 50
    assert sorted(f["matched_train_index"] for f in exact) == list(range(50))
    assert {f["index"] for f in exact} == set(range(150, 200))
    assert (tmp_path / "pairs.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    # bad input: one line naming the file, exit 2
    rgb_vs_grey = _npz(tmp_path / "grey.npz", neg.images[:10, :1], neg.labels[:10])
    assert synthgen_main(["audit", *args, "--synthetic", rgb_vs_grey, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "grey.npz" in err[0]
    assert synthgen_main(["audit", *args, "--synthetic", str(tmp_path / "nope.npz"), "--out", "x.json"]) == 2
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    assert synthgen_main(["audit", *args, "--synthetic", str(tmp_path / "trunc.npz"), "--out", "x.json"]) == 2
    assert not (tmp_path / "x.json").exists()


def test_console_script_and_medmnist_keys(tmp_path, capsys):
    toy = make_medmnist_npz(tmp_path / "toy.npz", n=60, channels=3)
    r = subprocess.run([sys.executable, "-m", "synthgen.cli", "audit", "--train", f"{toy}#train",
                        "--holdout", f"{toy}#test", "--synthetic", f"{toy}#val", "--out", str(tmp_path / "r.json"),
                        "--cache-dir", str(tmp_path / "c"), *FAST, "embedding.steps=5"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode in (0, 1) and "privacy audit" in r.stdout, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["inputs"]["synthetic"].endswith("#val")
    assert synthgen_main(["audit", "--train", str(toy), "--holdout", str(toy), "--synthetic", str(toy),
                          "--out", str(tmp_path / "r2.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "several splits" in err[0]


def test_webdataset_shards_are_read(tmp_path):
    import webdataset as wds

    x = (np.random.default_rng(0).uniform(size=(7, 3, 8, 8)) * 255).astype(np.uint8)
    (tmp_path / "shards").mkdir()
    with wds.ShardWriter(str(tmp_path / "shards" / "s-%03d.tar"), maxcount=4, mtime=0) as w:
        for i in range(7):
            buf = io.BytesIO()
            np.save(buf, x[i])
            w.write({"__key__": f"syn-{i:04d}", "npy": buf.getvalue(), "cls": str(i % 2).encode()})
    s = read_image_set(tmp_path / "shards")
    assert s.images.shape == (7, 3, 8, 8) and s.labels.tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert np.allclose(s.images * 255, x)
