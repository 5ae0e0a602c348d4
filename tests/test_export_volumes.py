"""3D export: every shard sample carries npy (C, D, H, W) + nii.gz (spacing, RAS affine) + 3-plane png preview;
read back with plain webdataset + nibabel (no synthgen) the voxels and affine match; bytes are deterministic;
synthgen verify and shared/tools/check_contracts.py export accept it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export_fixture import build_audited, export_cfg, find_check_contracts
from synthgen.errors import ConfigError
from synthgen.export.verify import verify_export
from synthgen.export.volume import preview_side, volume_preview
from synthgen.io import write_json
from synthgen.stages.export import export

SPACING = [4.0, 2.5, 2.0]  # [sz, sy, sx] mm
SHAPE = (1, 6, 8, 10)  # (C, D, H, W)

READ_BACK = r"""
import io, json, sys, gzip
import numpy as np, nibabel as nib, webdataset as wds
out, spacing = sys.argv[1], json.loads(sys.argv[2])
found = {}
for s in wds.WebDataset(sorted(__import__("glob").glob(out + "/*.tar")), shardshuffle=False):
    x = np.load(io.BytesIO(s["npy"]))
    img = nib.Nifti1Image.from_bytes(gzip.decompress(s["nii.gz"]))
    v = np.asarray(img.dataobj).transpose(2, 1, 0)[None]
    assert v.dtype == x.dtype and np.array_equal(v, x), s["__key__"]
    aff = img.affine
    assert np.allclose(np.diag(aff)[:3], spacing[::-1]) and np.allclose(aff[:3, :3], np.diag(np.diag(aff)[:3]))
    assert nib.aff2axcodes(aff) == ("R", "A", "S")
    found[json.loads(s["json"])["index"]] = x.tolist()
assert "synthgen" not in sys.modules
print(json.dumps(found))
"""


def _build(root: Path, n: int = 9) -> Path:
    rng = np.random.default_rng(5)
    images = rng.integers(0, 65535, size=(n, *SHAPE), dtype=np.uint16)
    images[:, 0, 1, 2, 1] = 65535  # a landmark voxel: low W = the patient's left
    build_audited(root, images=images)
    meta = json.loads((root / "data/prepared/meta.json").read_text())
    meta.update(dims=3, spacing=SPACING, volume_shape=list(SHAPE[1:]), image_size=SHAPE[2])
    write_json(root / "data/prepared/meta.json", meta)
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = _build(tmp_path_factory.mktemp("vol"))
    return export(export_cfg(root, **{"format": "nifti", "shard_size.samples": 4}))


def test_volume_export_reads_back_without_synthgen(exported):
    root = exported.parents[2]
    with np.load(root / "data/audited/cohort.npz") as z:
        images, index = z["images"], z["index"]
    r = subprocess.run([sys.executable, "-c", READ_BACK, str(exported), json.dumps(SPACING)], capture_output=True,
                       text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]
    found = {int(k): np.array(v, dtype=np.uint16) for k, v in json.loads(r.stdout).items()}
    assert sorted(found) == sorted(index.tolist())
    for i, k in enumerate(index):
        assert np.array_equal(found[int(k)], images[i])


def test_volume_export_index_card_and_copies(exported):
    idx = json.loads((exported / "index.json").read_text())
    assert idx["extensions"] == ["cls", "json", "nii.gz", "npy", "png"]
    assert idx["sample"] == {"shape": list(SHAPE), "dtype": "uint16", "dims": 3, "spacing": SPACING}
    card = (exported / "README.md").read_text()
    assert "dims 3" in card and "`[4, 2.5, 2]` mm" in card and "(1, 6, 8, 10)" in card
    snippet = card.split("```python\n")[1].split("```")[0]
    assert "(C, D, H, W)" in snippet and 's["nii.gz"]' in snippet
    assert len(list((exported / "nifti").glob("*.nii.gz"))) == idx["totals"]["samples"]
    problems, stats = verify_export(exported)
    assert problems == [] and stats["samples"] == idx["totals"]["samples"]


def test_verify_catches_a_nifti_member_that_differs_from_its_npy(exported, tmp_path):
    import shutil
    import tarfile

    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    shard = sorted(bad.glob("*.tar"))[0]
    with tarfile.open(shard) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    from synthgen.export.volume import read_volume, volume_nifti_bytes

    with tarfile.open(shard, "w") as tf:
        for m, data in members:
            if m.name.endswith(".nii.gz"):
                vol, _ = read_volume(data)
                data = volume_nifti_bytes(vol[:, ::-1].copy(), SPACING)  # superior/inferior swapped
                m.size = len(data)
            tf.addfile(m, __import__("io").BytesIO(data))
    problems, _ = verify_export(bad)
    assert any("nii.gz voxels" in p for p in problems)


def test_volume_export_is_byte_identical_across_runs(exported, tmp_path):
    root = exported.parents[2]
    again = export(export_cfg(root, **{"format": "nifti", "shard_size.samples": 4}), out_dir=tmp_path / "again")
    for p in sorted(exported.rglob("*")):
        if p.is_file():
            assert (again / p.relative_to(exported)).read_bytes() == p.read_bytes(), p.name


def test_check_contracts_export_accepts_a_volume_export(exported):
    tool = find_check_contracts()
    if tool is None:
        pytest.skip("shared/tools/check_contracts.py not found next to this checkout")
    r = subprocess.run([sys.executable, str(tool), "export", str(exported)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dicom_export_of_volumes_is_refused(tmp_path):
    root = _build(tmp_path, n=3)
    with pytest.raises(ConfigError, match="2D only"):
        export(export_cfg(root, format="dicom"))


def test_preview_shows_three_radiological_planes():
    v = np.zeros((1, 6, 8, 10), dtype=np.uint8)  # (C, D, H, W); central planes d=3, h=4, w=5
    v[0, 3, 4, 1] = 255  # on the axial and coronal planes, in the patient's left (W=1)
    v[0, 5, 1, 5] = 255  # on the sagittal plane: superior (D=5), posterior (H=1)
    p = volume_preview(v)
    assert p.shape == preview_side(v.shape) == (10, 30)
    # axial (H, W) 8x10 at rows 1.., cols 0..: the patient's left on the image right, anterior up;
    # coronal (D, W) 6x10 at rows 2.., cols 10..: superior up; sagittal (D, H) 6x8 at rows 2.., cols 21..:
    # superior up, anterior on the left
    assert sorted(zip(*np.nonzero(p))) == [(2, 27), (4, 8), (4, 18)]
