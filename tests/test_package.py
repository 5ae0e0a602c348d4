"""synthgen as a user gets it: the built wheel installed into a fresh venv (no source checkout importable), its
console commands run from a temp folder, and ``synthgen init`` -> ``dvc repro`` on a tiny cohort."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_medmnist_npz


def _env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SYNTHGEN_CONF", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONNOUSERSITE="1")
    return env


def _run(cmd, cwd: Path, env: dict, timeout: int = 300, ok=(0,)) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       shell=isinstance(cmd, str))
    assert r.returncode in ok, f"{cmd} -> {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("src")  # build from a copy: no build/ or egg-info in the checkout
    top = {".git", "data", "models", "reports", ".cache", "build", "dvclive", "benchmarks", "outputs", "tests"}

    def skip(folder: str, names: list[str]) -> set[str]:  # run artefacts at the top, caches everywhere
        return {n for n in names if n == "__pycache__" or n.endswith(".egg-info")
                or (Path(folder) == REPO and n in top)}

    shutil.copytree(REPO, build / "synthgen-src", ignore=skip)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(out), str(build / "synthgen-src")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("synthgen-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (heavy deps from the system site-packages) with only the wheel installed in it."""
    v = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(v)], check=True, timeout=120)
    _run([str(v / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], v, _env(v), 300)
    return v


def test_wheel_ships_every_config_and_the_pipeline(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert conf and [c for c in conf if f"synthgen/conf/{c}" not in names] == []
    assert "synthgen/conf_pipeline/dvc.yaml" in names
    sources = [p.relative_to(REPO).as_posix() for p in (REPO / "synthgen").rglob("*.py") if "__pycache__" not in p.parts]
    assert [s for s in sources if s not in names] == []  # namespace packages (synthgen/data) included
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "synthgen = synthgen.cli:main" in entry


@pytest.mark.slow
def test_installed_wheel_runs_audit_and_verify_anywhere(venv, tmp_path):
    env = _env(venv)
    py = str(venv / "bin" / "python")
    code = ("import importlib, synthgen.config as c, synthgen.runner as r; print(c.packaged_conf()); "
            "[print(importlib.import_module(m.split(':')[0]).__file__) for m in r.STAGES.values()]")
    where = _run([py, "-c", code], tmp_path, env).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where  # the wheel's code and configs, not the checkout
    toy = make_medmnist_npz(tmp_path / "toy.npz", n=60, channels=1)
    r = _run(["synthgen", "audit", "--train", f"{toy}#train", "--holdout", f"{toy}#test", "--synthetic",
              f"{toy}#val", "--out", "report.json", "--cache-dir", "enc", "embedding.steps=5",
              "embedding.batch_size=32"], tmp_path, env, ok=(0, 1))
    assert "privacy audit" in r.stdout
    assert json.loads((tmp_path / "report.json").read_text())["inputs"]["synthetic"].endswith("#val")
    bad = _run(["synthgen", "audit", "--train", str(toy), "--holdout", str(toy), "--synthetic", str(toy),
                "--out", "x.json", "gates.nope=1"], tmp_path, env, ok=(2,))
    assert len(bad.stderr.strip().splitlines()) == 1 and "gates.nope" in bad.stderr

    sys.path.insert(0, str(REPO / "tests"))
    from export_fixture import build_audited, export_overrides

    root = build_audited(tmp_path / "proj")
    _run([py, "-m", "synthgen.cli", "export", *export_overrides(root)], tmp_path, env)
    (export_dir,) = [p for p in (root / "data" / "export").iterdir() if p.is_dir()]
    r = _run(["synthgen", "verify", str(export_dir)], tmp_path, env)
    assert "ok" in (r.stdout + r.stderr).lower()
    (export_dir / "index.json").write_text("{}")
    _run(["synthgen", "verify", str(export_dir)], tmp_path, env, ok=(1, 2))


TINY_BUDGET = """\
# @package _global_
# A smoke-test budget for the end-to-end test of `synthgen init` (seconds on one core).
budget: {name: tiny, sized_for: [demo]}
model: {z_dim: 8, g_width: 8, d_width: 8, embed_dim: 4, batch_size: 8, standing_stats_batches: 1}
trainer: {max_steps: 4, enable_progress_bar: false, limit_val_batches: 1, log_every_n_steps: 1}
train: {num_threads: 1}
generate: {per_class: 4, batch_size: 8}
evaluate: {threads: 1, classifier: {steps: 4, width: 8, batch_size: 16}, features: {steps: 4}, utility: {seeds: [0]}}
# This test checks the wiring (init -> dvc repro through every stage), not the filter or the gates (their own
# tests do): a 4-step generator's samples fail the curation filter almost all, and a DCR verdict on 12 toy
# samples is a coin flip (share 8/12 vs 3/10 gave p = 0.02 on one machine), so both are set so wide here
# that only a wiring fault can stop the run.
privacy: {threads: 1, embedding: {steps: 4, batch_size: 16}, gates: {dcr_alpha: 0.0001}}
curate: {filter: {min_confidence: 0.0, max_realism: null, near_duplicate: null}}
"""


@pytest.mark.slow
def test_init_project_runs_dvc_repro(venv, tmp_path):
    if shutil.which("git") is None or shutil.which("dvc") is None:
        pytest.skip("git or dvc not installed")
    env = _env(venv)
    cohort = make_medmnist_npz(tmp_path / "cohort.npz", n=80, size=16, channels=1)
    r = _run(["synthgen", "init", "proj", "--npz", str(cohort), "--model", "cgan"], tmp_path, env)
    proj = tmp_path / "proj"
    assert "dvc repro" in r.stdout and "dvc repro" in (proj / "README.md").read_text()
    pipeline = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    assert pipeline["prepare"]["cmd"] == "synthgen prepare" and pipeline["prepare"]["deps"] == [str(cohort)]
    assert all(s["cmd"].startswith(f"synthgen {n}") for n, s in pipeline.items())
    params = yaml.safe_load((proj / "params.yaml").read_text())
    assert params["data"]["path"] == str(cohort) and params["model"]["name"] == "cgan"
    assert params["trainer"]["max_steps"] == -1  # a team's own data: the standard budget, not the demo one
    # The team's own edits: a tiny budget and the cohort's class names, then params.yaml recomposed.
    (proj / "conf" / "budget" / "tiny.yaml").write_text(TINY_BUDGET)
    config = proj / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("- budget: standard", "- budget: tiny")
                      + "  classes: [a, b, c]\n  image_size: 16\n")
    _run(["synthgen", "params"], proj, env)
    _run("git init -q && git config user.email t@t && git config user.name t && dvc init -q "
         "&& dvc config core.analytics false && dvc config hydra.enabled true && git add -A && git commit -qm init",
         proj, env)
    _run([str(venv / "bin" / "python"), "-m", "dvc", "repro"], proj, env, timeout=600)
    index = json.loads(next((proj / "data" / "export").glob("*/index.json")).read_text())
    assert sum(s["samples"] for s in index["shards"]) > 0
    trained = json.loads((proj / "metrics" / "train.json").read_text())
    assert trained["global_step"] == 4 and trained["budget"]["name"] == "tiny"
    assert "budget=tiny is sized for data source demo, not medmnist" in trained["budget"]["warning"]
    assert "budget=tiny" in next((proj / "data" / "export").glob("*/README.md")).read_text()
    # dvclive's Lightning logger: per-metric TSVs that `dvc plots` reads (dvc.yaml lists the folder)
    live = proj / "reports" / "live" / "train"
    assert sorted(p.name for p in (live / "plots" / "metrics").glob("*.tsv")) and (live / "metrics.json").is_file()
    shown = json.loads(_run([str(venv / "bin" / "python"), "-m", "dvc", "plots", "show", "--json"], proj, env).stdout)
    assert any(k.startswith("reports/live/train/plots/metrics") for k in shown.get("data", {})), list(shown)
    status = _run([str(venv / "bin" / "python"), "-m", "dvc", "status"], proj, env).stdout
    assert "up to date" in status.lower(), status


#: distribution -> import name, where they differ.
IMPORT_NAMES = {"hydra-core": "hydra", "pyyaml": "yaml", "pillow": "PIL", "scikit-learn": "sklearn",
                "faiss-cpu": "faiss"}
#: distributions used at run time without an import statement of ours -> what in synthgen's source uses them.
USED_THROUGH = {"pylibjpeg": "pylibjpeg", "pylibjpeg-libjpeg": "pylibjpeg",  # pydicom's JPEG decoders (plugins)
                "rich": "RichProgressBar",  # Lightning's rich progress bar (synthgen/models/progress.py)
                "dvc": "dvclive"}  # runs dvc.yaml (`dvc repro`); dvclive's logger writes its plots


def _imported_top_level() -> set[str]:
    import ast

    names = set()
    for f in (REPO / "synthgen").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_runtime_dependencies_are_the_ones_synthgen_imports():
    import re

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    imported = _imported_top_level()
    source = "".join(f.read_text(encoding="utf-8") for f in (REPO / "synthgen").rglob("*.py"))
    unused = sorted(d for d in deps if IMPORT_NAMES.get(d, d.replace("-", "_")) not in imported
                    and not (d in USED_THROUGH and USED_THROUGH[d] in source))
    assert unused == [], f"runtime dependencies synthgen never uses (move them to an extra): {unused}"
    stdlib = set(sys.stdlib_module_names) | {"synthgen", "__future__"}
    declared = {IMPORT_NAMES.get(d, d.replace("-", "_")) for d in deps}
    undeclared = sorted(imported - stdlib - declared)
    assert undeclared == [], f"synthgen imports packages pyproject.toml does not declare: {undeclared}"
    # monai is a runtime dependency since the latent-diffusion autoencoder (synthgen/models/autoencoder.py)
    assert "monai" in deps and "monai" in imported


def test_every_dvc_stage_is_registered_and_its_script_is_the_thin_call():
    from synthgen.project import project_pipeline
    from synthgen.runner import STAGES

    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert list(pipeline["stages"]) == [s for s in STAGES if s in pipeline["stages"]]  # registry in pipeline order
    for name in pipeline["stages"]:
        assert name in STAGES, f"dvc.yaml stage {name} has no entry in synthgen.runner.STAGES"
        assert f'run_named("{name}")' in (REPO / "pipelines" / f"{name}.py").read_text()
    project = project_pipeline(pipeline, ["cohort.npz"])["stages"]
    assert {n: s["cmd"].split(" &&")[0] for n, s in project.items()} == {n: f"synthgen {n}" for n in project}
    assert not [d for s in project.values() for d in s.get("deps", []) if d.startswith(("synthgen/", "pipelines/"))]


def test_init_writes_a_project_for_a_dicom_folder(tmp_path, capsys):
    from synthgen.cli import main

    root = tmp_path / "cxr"
    root.mkdir()
    (root / "labels.csv").write_text("path,label,patient_id\n")
    assert main(["init", str(tmp_path / "p"), "--dicom", str(root), "--labels", str(root / "labels.csv"),
                 "--model", "cgan"]) == 0
    params = yaml.safe_load((tmp_path / "p" / "params.yaml").read_text())
    assert params["data"]["name"] == "dicom" and params["data"]["root"] == str(root)
    assert params["data"]["labels"] == str(root / "labels.csv") and params["model"]["name"] == "cgan"
    assert params["budget"]["name"] == "standard"
    assert yaml.safe_load((tmp_path / "p" / "dvc.yaml").read_text())["stages"]["prepare"]["deps"] == [str(root)]
    assert "/data/*" in (tmp_path / "p" / ".gitignore").read_text()
    capsys.readouterr()
    # bad input: one line, exit 2, nothing written
    for argv, needle in ((["init", str(tmp_path / "p"), "--npz", str(root / "labels.csv")], "not empty"),
                         (["init", str(tmp_path / "q"), "--dicom", str(root)], "--labels"),
                         (["init", str(tmp_path / "q"), "--npz", str(tmp_path / "nope.npz")], "not found"),
                         (["init", str(tmp_path / "q"), "--budget", "huge"], "no conf/budget/huge.yaml")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "q").exists()


def test_rich_progress_bar_only_on_a_terminal():
    import io

    from lightning.pytorch.callbacks import RichProgressBar

    from synthgen.models.progress import progress_bar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert progress_bar(True, io.StringIO()) == ([], False)  # CI, dvc repro > log: no bar, clean logs
    assert progress_bar(False, Tty()) == ([], False)          # trainer.enable_progress_bar=false wins
    bars, enabled = progress_bar(True, Tty())
    assert enabled and len(bars) == 1 and isinstance(bars[0], RichProgressBar)
