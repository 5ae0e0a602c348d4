"""The dataset card: Hugging Face front matter, required sections, a runnable 5-line snippet, no local paths."""

from __future__ import annotations

import fnmatch
import re

import yaml

from export_fixture import build_audited, export_cfg, run_without_synthgen
from synthgen.stages.export import export


def _front_matter(text: str) -> dict:
    m = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert m, "no YAML front matter"
    return yaml.safe_load(m.group(1))


def test_card_front_matter_sections_and_snippet(tmp_path):
    build_audited(tmp_path, n=14)
    out = export(export_cfg(tmp_path, **{"shard_size.samples": 4, "license": "cc-by-4.0"}))
    text = (out / "README.md").read_text()
    fm = _front_matter(text)
    assert fm["license"] == "cc-by-4.0" and fm["task_categories"] == ["image-classification"]
    assert {"synthetic", "medical"} <= set(fm["tags"]) and fm["size_categories"] == ["n<1K"]
    pattern = fm["configs"][0]["data_files"][0]["path"]
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(fnmatch.filter([p.name for p in out.iterdir()], pattern))
    for heading in ("## Contents", "### Per-class counts", "## Reading the shards", "## Provenance",
                    "### Source cohort", "### Model", "### Full configuration", "## Evaluation",
                    "## Privacy report", "## Intended use and limitations"):
        assert heading in text, heading
    assert "| 2 | rare.case | 4 |" in text                       # per-class counts
    assert "| fid | 12.5 |" in text and "| downstream.balanced_accuracy | 0.81 |" in text
    assert "| passed | True |" in text and "| thresholds.nn_distance | 0.05 |" in text
    assert "| trainer.max_steps | 120 |" in text                 # training budget
    assert "| source modality | CR |" in text and "not for diagnosis" in text.lower()
    assert "/secret/site" not in text and "<local path>" in text  # config paths are redacted

    snippet = re.search(r"## Reading the shards\n.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(snippet.strip().splitlines()) == 5
    check = snippet + (
        "n = sum(1 for _ in ds)\n"
        "assert x.ndim == 3 and isinstance(y, int) and meta['synthetic'] is True\n"
        "print('read', n)\n")
    r = run_without_synthgen(check, cwd=out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "read 14" in r.stdout


def test_card_without_optional_inputs(tmp_path):
    build_audited(tmp_path, n=6, extras=False)
    text = (export(export_cfg(tmp_path)) / "README.md").read_text()
    assert "No evaluation metrics" in text and "No `data/prepared/meta.json`" in text
    assert "synthetic-000000.tar" in text and _front_matter(text)["license"] == "other"


def test_unreadable_metrics_file_is_named(tmp_path):
    import pytest

    from synthgen.errors import InputError

    build_audited(tmp_path, n=6)
    (tmp_path / "metrics/evaluate.json").write_text("{not json")
    with pytest.raises(InputError, match="evaluate.json: not valid JSON"):
        export(export_cfg(tmp_path))
    assert not (tmp_path / "data/export/synthetic").exists()


def test_card_redacts_absolute_paths_and_lists_only_training_budget(tmp_path):
    """A privacy summary or metrics value holding an absolute path (the privacy stage records where its report
    went) must not reach the card: folder names can carry site or patient names."""
    import json

    build_audited(tmp_path, n=6)
    meta_p = tmp_path / "data/audited/cohort.json"
    meta = json.loads(meta_p.read_text())
    meta["privacy"]["report"] = "/srv/StMungo_Hospital/reports/privacy_report.json"
    meta["config"]["generate"]["batch_size"] = 256
    meta_p.write_text(json.dumps(meta))
    (tmp_path / "metrics/privacy.json").write_text(json.dumps(
        {"passed": True, "report": "C:\\Users\\drsmith\\privacy_report.json", "relative": "reports/x.json"}))
    (tmp_path / "metrics/train.json").write_text(json.dumps({"global_step": 7, "log": "~/runs/MRN123/train.log"}))
    text = (export(export_cfg(tmp_path)) / "README.md").read_text()
    for secret in ("StMungo", "drsmith", "MRN123"):
        assert secret not in text
    assert "| report | <local path> |" in text and "| metrics.report | <local path> |" in text
    assert "| metrics.relative | reports/x.json |" in text           # relative paths are kept
    budget = text.split("Training budget:")[1].split("###")[0]
    assert "| trainer.max_steps | 120 |" in budget and "| train metric global_step | 7 |" in budget
    assert "generate." not in budget                               # sampling settings are not training budget


def test_export_is_byte_identical_when_only_the_run_timings_differ(tmp_path):
    """Two exports of the same cohort whose trainings took different times (and one was resumed) are
    byte-identical, every file: timings and resume bookkeeping stay in metrics/, out of the export."""
    import json

    build_audited(tmp_path, n=12)
    outcome = {"model": "cgan", "target": "synthgen.models.gan.ConditionalGAN", "parameters": 1234,
               "global_step": 400, "batches": 200, "epochs": 3}
    runs = [{"resumed_from_step": 0, "batches_this_run": 200, "train_images_per_s": 812.4, "fit_seconds": 15.8,
             "stage_seconds": 18.2, "final": {"loss_d": 1.2, "loss_g_epoch": 0.7}},
            {"resumed_from_step": 240, "batches_this_run": 80, "train_images_per_s": 377.0, "fit_seconds": 13.6,
             "stage_seconds": 20.9, "final": {"loss_d": 1.2, "loss_g_epoch": 0.9}}]
    evaluate = json.loads((tmp_path / "metrics/evaluate.json").read_text())
    privacy = json.loads((tmp_path / "metrics/privacy.json").read_text())
    outs = []
    for i, run in enumerate(runs):
        (tmp_path / "metrics/train.json").write_text(json.dumps({**outcome, **run}))
        # timings a future metrics writer might add elsewhere must not leak either
        (tmp_path / "metrics/evaluate.json").write_text(json.dumps({**evaluate, "fid_seconds": 3.0 + i}))
        (tmp_path / "metrics/privacy.json").write_text(json.dumps({**privacy, "timings_s": {"total": 9.0 + i}}))
        outs.append(export(export_cfg(tmp_path), out_dir=tmp_path / f"export{i}"))
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    card = (outs[0] / "README.md").read_text()
    assert "| train metric global_step | 400 |" in card and "| train metric epochs | 3 |" in card
    for run_dependent in ("fit_seconds", "images_per_s", "resumed_from_step", "batches_this_run", "loss_g_epoch",
                          "fid_seconds", "timings_s"):
        assert run_dependent not in card, run_dependent
    assert "| fid | 12.5 |" in card  # other metrics are still there
