"""``synthgen init DIR``: a ready DVC project for a team's own cohort, outside synthgen's source tree.

The project holds only the team's things: ``conf/`` (a copy of synthgen's packaged configs with the data source
pre-filled), ``params.yaml`` (their composition), ``dvc.yaml`` (synthgen's own pipeline with every stage calling
the ``synthgen <stage>`` console command), ``.gitignore``, ``.dvc/``-ready settings and a short README. Upgrading
synthgen (``pip install -U synthgen``) changes the code underneath without touching the project.

Both sources of the project are synthgen's: the packaged ``conf/`` (:func:`synthgen.config.packaged_conf`) and
the repository's ``dvc.yaml`` shipped in the wheel (:func:`packaged_pipeline`), so a project and this
repository run the same stages with the same parameters, outputs, metrics and plots.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from .config import PROJECT_ROOT, packaged_conf, write_params
from .errors import InputError

#: --flag -> (data config option, what the flag's value fills in). ``--labels`` goes with the folder sources.
SOURCES = {"npz": "medmnist", "dicom": "dicom", "nifti": "nifti", "images": "imagefolder"}

GITIGNORE = """\
# DVC outputs and run artefacts (parent rules: DVC accepts them even when a failed run left no .gitignore)
/data/*
/models/
/metrics/*.tmp*
/reports/
/dvclive/
/outputs/
/.cache/
"""

README = """\
# {name}: synthetic cohort with synthgen

Data source: `{source}` ({where}); budget: `{budget}` (conf/budget/). Configs live in `conf/`; `params.yaml` is
their composition (`dvc exp run` rewrites it; after editing conf/ by hand run `synthgen params`).

    git init && dvc init && dvc config hydra.enabled true && git add -A && git commit -m "synthgen project"
    dvc repro                      # prepare -> train -> ... -> export (data/export/, metrics/, reports/)

Sweeps and variants: `dvc exp run -S budget=standard -S model=cgan`; results: `dvc exp show`, `dvc plots show`.
Each stage also runs by hand: `synthgen prepare data.image_size=64`, `synthgen train`, ... (`synthgen --help`).
After upgrading synthgen, `dvc repro -f` re-runs every stage with the new code.
"""


def packaged_pipeline() -> Path:
    """synthgen's ``dvc.yaml``: the wheel's ``synthgen/conf_pipeline/dvc.yaml``, else this checkout's."""
    from importlib.resources import files

    shipped = Path(str(files("synthgen") / "conf_pipeline" / "dvc.yaml"))
    return shipped if shipped.is_file() else PROJECT_ROOT / "dvc.yaml"


def project_pipeline(pipeline: dict[str, Any], data_deps: list[str]) -> dict[str, Any]:
    """synthgen's dvc.yaml turned into a project's: ``python pipelines/<s>.py`` -> ``synthgen <s>``,
    ``python -m synthgen.cli`` -> ``synthgen``, source-code deps (``synthgen/``, ``pipelines/``) dropped, and
    ``data_deps`` (the cohort's files) added to the first stage."""
    stages = {}
    for i, (name, stage) in enumerate(pipeline["stages"].items()):
        stage = dict(stage)
        cmd = re.sub(r"python (-m )?pipelines/(\w+)\.py", r"synthgen \2", str(stage["cmd"]))
        cmd = cmd.replace("python -m synthgen.cli", "synthgen")
        if "python" in cmd or "pipelines/" in cmd:
            raise InputError(packaged_pipeline(), f"stage {name}: cannot turn {stage['cmd']!r} into a synthgen command")
        stage["cmd"] = cmd
        deps = [d for d in stage.get("deps", []) if not str(d).startswith(("synthgen/", "pipelines/"))]
        if i == 0:
            deps = data_deps + deps
        if deps:
            stage["deps"] = deps
        else:
            stage.pop("deps", None)
        stages[name] = stage
    return {"stages": stages, **{k: v for k, v in pipeline.items() if k != "stages"}}


def _where(value: str, project: Path) -> str:
    """A path as the project's config holds it: relative when inside the project, else absolute."""
    p = Path(value).expanduser().resolve()
    if not p.exists():
        raise InputError(p, "not found")
    return os.path.relpath(p, project) if p.is_relative_to(project) else str(p)


def _data_block(source: str, value: str | None, labels: str | None, project: Path) -> tuple[str, dict, list[str]]:
    """(data option, keys for conf/config.yaml's ``data:``, DVC deps) for the chosen source."""
    if source == "demo":
        return "demo", {}, []
    option = SOURCES[source]
    if option == "medmnist":
        path = _where(value, project)
        return option, {"path": path}, [path]
    if labels is None:
        raise InputError(None, f"--{source} needs --labels CSV (path,label,patient_id; paths relative to the folder)")
    root, csv = _where(value, project), _where(labels, project)
    if not Path(project, root).is_dir():
        raise InputError(root, "not a folder")
    return option, {"root": root, "labels": csv}, [root] + ([csv] if not Path(project, csv).is_relative_to(
        Path(project, root).resolve()) else [])


def init_project(directory: str | os.PathLike, source: str = "demo", value: str | None = None,
                 labels: str | None = None, budget: str | None = None, model: str | None = None) -> Path:
    """Write a synthgen project into ``directory`` (new or empty); returns its path.

    ``source``: ``demo`` (the embedded phantom cohort) or a key of :data:`SOURCES` with ``value`` its file or
    folder (and ``labels`` the CSV for folder sources). ``budget``: ``conf/budget/<name>.yaml``; default
    ``demo`` for the demo cohort and ``standard`` (each group's real recipe) for a team's own data.
    """
    project = Path(directory).expanduser().resolve()
    if project.exists() and any(project.iterdir()):
        raise InputError(project, "exists and is not empty; synthgen init writes a new project")
    option, data, data_deps = _data_block(source, value, labels, project)
    budget = budget or ("demo" if option == "demo" else "standard")
    conf_src = packaged_conf()
    for group, choice in (("budget", budget), ("model", model)):
        if choice is not None and not (conf_src / group / f"{choice}.yaml").is_file():
            options = sorted(p.stem for p in (conf_src / group).glob("*.yaml") if not p.stem.startswith("_"))
            raise InputError(None, f"--{group} {choice}: no conf/{group}/{choice}.yaml; one of {', '.join(options)}")
    pipeline = project_pipeline(yaml.safe_load(packaged_pipeline().read_text(encoding="utf-8")), data_deps)

    project.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(conf_src, project / "conf", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        config = project / "conf" / "config.yaml"
        text = config.read_text(encoding="utf-8")
        for group, choice in (("data", option), ("budget", budget), ("model", model)):
            if choice is None:
                continue
            text, n = re.subn(rf"^(\s*-\s*{group}:\s*)\S+\s*$", rf"\g<1>{choice}", text, count=1, flags=re.M)
            if n != 1:
                raise InputError(config, f"no `- {group}: ...` line in the defaults list")
        if data:
            text += "\n# The cohort (synthgen init); more data.* keys: conf/data/" + option + ".yaml\n"
            text += yaml.safe_dump({"data": data}, sort_keys=False)
        config.write_text(text, encoding="utf-8")
        header = ("# synthgen's pipeline (synthgen init): every stage runs `synthgen <stage>`, parameters from "
                  "params.yaml.\n")
        (project / "dvc.yaml").write_text(header + yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
        (project / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        where = data.get("path") or data.get("root") or "embedded phantom chest radiographs"
        (project / "README.md").write_text(README.format(name=project.name, source=option, where=where,
                                                         budget=budget), encoding="utf-8")
        cwd = Path.cwd()
        os.chdir(project)  # relative data paths resolve from the project, as they will in its stages
        try:
            write_params(project / "params.yaml", config_dir=project / "conf")
        finally:
            os.chdir(cwd)
    except BaseException:
        shutil.rmtree(project, ignore_errors=True)  # nothing partial left behind
        raise
    return project
