"""The README's rare-class sweep recipe runs through `dvc exp run --queue` on a tiny copy of the repo."""

import json
import shutil
import subprocess
import time

import pytest

from conftest import REPO, make_medmnist_npz


def _run(cmd, cwd, timeout=300):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, shell=isinstance(cmd, str))
    assert r.returncode == 0, f"{cmd}: {r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    return r.stdout


@pytest.mark.slow
def test_queued_rare_class_sweep(tmp_path):
    if shutil.which("dvc") is None or shutil.which("git") is None:
        pytest.skip("dvc or git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("conf", "pipelines", "synthgen"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(REPO / name, repo / name)
    make_medmnist_npz(repo / "toy.npz", n=60, size=16, channels=1)
    _run("git init -q && git config user.email t@t && git config user.name t && dvc init -q "
         "&& dvc config core.analytics false && dvc config hydra.enabled true", repo)
    _run("git add -A && git commit -qm init", repo)
    # The whole chain once, tiny: prepare -> train -> generate wired through dvc.yaml and params.yaml.
    tiny = ["model.z_dim=8", "model.g_width=8", "model.d_width=8", "model.embed_dim=4", "model.batch_size=8",
            "model.standing_stats_batches=1", "trainer.max_steps=4", "trainer.enable_progress_bar=false",
            "train.num_threads=1", "generate.per_class=3", "generate.batch_size=8"]
    base = ["model=cgan", "data=medmnist", "data.path=toy.npz", "data.classes=[a,b,c]", "data.image_size=16"]
    _run(["dvc", "exp", "run", "generate", *[a for o in base + tiny for a in ("-S", o)]], repo, timeout=600)
    cohort = json.loads((repo / "data" / "generated" / "cohort.json").read_text())
    assert cohort["counts"] == {"a": 3, "b": 3, "c": 3}
    assert json.loads((repo / "metrics" / "train.json").read_text())["global_step"] == 4
    assert (repo / "reports" / "samples.png").is_file()
    sweep = [*base, "data.rare.classes=[b]", "data.rare.keep=2,4", "++generate.counts.b=10"]
    _run(["dvc", "exp", "run", "prepare", "--queue", *[a for o in sweep for a in ("-S", o)]], repo)
    _run(["dvc", "queue", "start", "-j", "1"], repo)
    deadline = time.time() + 400
    try:
        while time.time() < deadline:
            status = _run(["dvc", "queue", "status"], repo)
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(5)
        assert "Failed" not in status, status
        rows = json.loads(_run(["dvc", "exp", "show", "--json"], repo))
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, capture_output=True)
    seen = set()
    for row in rows:
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                params = rev["data"]["params"]["params.yaml"]["data"]
                if params["data"]["rare"]["classes"] == ["b"]:  # the queued sweep, not the full run above
                    seen.add((params["data"]["rare"]["keep"], params["generate"]["counts"]["b"]))
    assert seen == {(2, 10), (4, 10)}
