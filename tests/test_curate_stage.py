"""The curate stage and the issue 14 order generate -> curate -> privacy -> evaluate -> export: the curation
scores reach the curated cohort, the audited cohort and every exported sample's json; evaluate reads what
export ships."""

import json
import tarfile

import numpy as np
import pytest
import yaml

from conftest import REPO, make_medmnist_npz
from synthgen.config import compose
from synthgen.stages.prepare import prepare
from synthgen.data.prepared import load_split
from synthgen.errors import ConfigError
from synthgen.io import save_npz, write_json
from synthgen.stages.curate import curate

SCORES = ("curate_confidence", "curate_nn_synthetic", "curate_realism")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cur")
    src = make_medmnist_npz(tmp / "toy.npz", n=320, channels=3)
    ov = ["data=medmnist", f"data.path={src}", "data.classes=[a,b,c]", f"paths.prepared={tmp / 'prepared'}"]
    prepare(compose(ov), tmp / "prepared")
    val, train = load_split(tmp / "prepared", "val", False), load_split(tmp / "prepared", "train", False)
    good = np.flatnonzero(val.labels != 1)
    cand = np.flatnonzero(val.labels == 1)
    off = np.flatnonzero(train.labels == 2)[:6]                 # bright class-c images labelled a
    images = np.concatenate([val.images[good], train.images[off], val.images[cand]])
    labels = np.concatenate([val.labels[good], np.zeros(len(off), np.int64), val.labels[cand]])
    n_ord = len(good) + len(off)
    gen = tmp / "generated"
    save_npz(gen / "cohort.npz", images=images, labels=labels, seeds=np.arange(len(images), dtype=np.int64),
             guidance=np.r_[np.ones(n_ord), np.full(len(cand), 2.0)].astype(np.float32),
             boost_candidate=np.r_[np.zeros(n_ord, bool), np.ones(len(cand), bool)])
    write_json(gen / "cohort.json", {"generator": "test", "class_names": ["a", "b", "c"]})
    ov += [f"paths.generated={gen}", f"paths.curated={tmp / 'curated'}", f"paths.audited={tmp / 'audited'}",
           f"paths.metrics={tmp / 'metrics'}", f"paths.reports={tmp / 'reports'}", f"paths.export={tmp / 'export'}",
           f"evaluate.cache_dir={tmp / 'cache'}", "evaluate.features.steps=60", "evaluate.classifier.width=8",
           f"privacy.embedding.cache_dir={tmp / 'enc'}", "privacy.embedding.steps=10",
           "privacy.embedding.batch_size=32", "privacy.gates.max_flagged_share=0.2",
           "curate.classes=[b]", "curate.plan.enabled=false"]
    return tmp, ov, {"n": len(images), "off": np.arange(len(good), n_ord), "cand": np.arange(n_ord, len(images))}


def test_curate_drops_off_class_keeps_scores_and_every_key(project):
    tmp, ov, rows = project
    summary = curate(compose(ov))
    with np.load(tmp / "curated" / "cohort.npz") as z:
        out = {k: z[k] for k in z.files}
    assert {"images", "labels", "seeds", "guidance", "boost_candidate", "index", *SCORES} <= set(out)
    assert all(out[k].dtype == np.float32 and len(out[k]) == len(out["index"]) for k in SCORES)
    assert not set(rows["off"].tolist()) & set(out["index"].tolist())          # planted off-class dropped
    assert np.all(np.diff(out["index"]) > 0) and out["index"].dtype == np.int64
    assert (out["curate_confidence"] >= 0.05).all() and (out["curate_nn_synthetic"] < 0.99).all()
    # plan off: every filter-kept candidate ships, with its guidance
    assert summary["per_class"]["b"]["shipped"] == summary["per_class"]["b"]["candidates_kept"] > 0
    assert set(out["guidance"][out["boost_candidate"]].tolist()) == {2.0}
    meta = json.loads((tmp / "curated" / "cohort.json").read_text())
    assert meta["generator"] == "test" and meta["curation"]["n_in"] == rows["n"]
    assert meta["curation"]["dropped"]["confidence"] + meta["curation"]["dropped"]["realism"] >= len(rows["off"])
    boost = json.loads((tmp / "metrics" / "boost.json").read_text())
    assert boost["enabled"] is False and boost["shipped"] == {"b": summary["per_class"]["b"]["shipped"]}
    again = tmp / "again"
    curate(compose(ov + [f"paths.curated={again}"]))
    assert (again / "cohort.npz").read_bytes() == (tmp / "curated" / "cohort.npz").read_bytes()


def test_scores_reach_audited_cohort_and_exported_json(project):
    from synthgen.stages.export import export
    from synthgen.stages.privacy import main as privacy_main

    tmp, ov, _ = project
    if not (tmp / "curated").exists():
        curate(compose(ov))
    assert privacy_main(ov) == 0
    with np.load(tmp / "curated" / "cohort.npz") as c, np.load(tmp / "audited" / "cohort.npz") as a:
        assert set(SCORES) <= set(a.files) and "privacy_pearson" in a.files
        pos = np.searchsorted(c["index"], a["index"])          # audited index = row in the GENERATED cohort
        assert np.array_equal(c["index"][pos], a["index"])
        assert np.array_equal(c["curate_realism"][pos], a["curate_realism"])
        expected = {int(i): float(v) for i, v in zip(a["index"], a["curate_confidence"])}
    out = export(compose(ov))
    seen = 0
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as t:
            for m in t.getmembers():
                if m.name.endswith(".json"):
                    j = json.loads(t.extractfile(m).read())
                    assert set(j["curation"]) == {"confidence", "realism", "nn_synthetic"}
                    assert j["curation"]["confidence"] == pytest.approx(expected[j["index"]], abs=1e-6)
                    assert "pearson" in j["privacy"]
                    seen += 1
    assert seen == len(expected)


def test_unknown_boost_class_is_a_config_error(project):
    _, ov, _ = project
    with pytest.raises(ConfigError, match="curate.classes"):
        curate(compose(ov + ["curate.classes=[nope]"]))


def test_pipeline_order_evaluate_reads_what_export_ships():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["prepare", "autoencoder", "train", "generate", "curate", "privacy", "evaluate", "export"]
    deps = {name: [str(d) for d in s.get("deps", [])] for name, s in stages.items()}
    assert "data/generated" in deps["curate"] and "data/curated" in stages["curate"]["outs"]
    assert "data/curated" in deps["privacy"] and "data/generated" not in deps["privacy"]
    assert "data/audited" in deps["evaluate"] and "data/generated" not in deps["evaluate"]
    cfg = compose(())
    assert cfg.evaluate.cohort == f"{cfg.paths.audited}/cohort.npz"
    assert cfg.curate.input == cfg.paths.generated and cfg.curate.output == cfg.paths.curated
    assert any("boost.json" in str(m) for m in stages["curate"]["metrics"])
