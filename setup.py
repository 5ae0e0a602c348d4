"""Only what pyproject.toml cannot say: files of this repository that ship inside the wheel.

* ``conf/`` -> ``synthgen/conf`` (package data): the one source of defaults. DVC's Hydra integration composes
  it into params.yaml here; an installed wheel reads the same files with ``importlib.resources``
  (:func:`synthgen.config.packaged_conf`), so every console command works in any folder.
* ``dvc.yaml`` -> ``synthgen/conf_pipeline/dvc.yaml``: the pipeline that ``synthgen init`` turns into a team's own
  ``dvc.yaml`` (stages call ``synthgen <stage>``; :mod:`synthgen.project`), so the two cannot drift.
"""

import shutil
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PIPELINE = "conf_pipeline"


class BuildWithPipeline(build_py):
    """``build_py`` that also copies the repository's dvc.yaml into the built package."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "synthgen" / PIPELINE / "dvc.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / "dvc.yaml", target)


setup(
    # namespace packages too (synthgen/data has no __init__.py), as pyproject's packages.find did
    packages=find_namespace_packages(include=["synthgen", "synthgen.*"], exclude=["synthgen.conf*"]) + ["synthgen.conf"],
    package_dir={"synthgen.conf": "conf"},
    package_data={"synthgen.conf": ["*.yaml", "*/*.yaml", "*/*/*.yaml"]},
    cmdclass={"build_py": BuildWithPipeline},
)
