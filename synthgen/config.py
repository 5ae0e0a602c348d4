"""Load the pipeline configuration the way DVC does.

DVC's Hydra integration composes ``conf/`` into ``params.yaml`` (only in ``dvc exp run``), and
``dvc repro`` reads ``params.yaml``. Stage scripts therefore read ``params.yaml``; when a person runs
a stage by hand with Hydra overrides (``python pipelines/prepare.py data=medmnist data.path=x.npz``)
we compose ``conf/`` with those overrides exactly as DVC would (``version_base=None``, resolved).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from .errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def compose(overrides: Sequence[str] = (), config_dir: str | os.PathLike | None = None,
            config_name: str = "config") -> DictConfig:
    """Compose ``conf/`` with Hydra overrides, resolved, as ``dvc exp run`` writes it to params.yaml."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config_dir = Path(config_dir or os.environ.get("SYNTHGEN_CONF", Path.cwd() / "conf")).resolve()
    if not (config_dir / f"{config_name}.yaml").exists():
        raise InputError(config_dir / f"{config_name}.yaml", "Hydra config not found")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir), version_base=None):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def to_params_yaml(cfg: DictConfig) -> str:
    """The exact text DVC writes to params.yaml for a composed config."""
    return OmegaConf.to_yaml(cfg)


def load_config(overrides: Sequence[str] = (), params: str | os.PathLike = "params.yaml") -> DictConfig:
    """Stage configuration: ``params.yaml`` (what DVC tracks) or, with overrides, a fresh composition."""
    if overrides:
        return compose(overrides)
    params = Path(params)
    if not params.exists():
        return compose(())
    return OmegaConf.load(params)


def write_params(path: str | os.PathLike = "params.yaml", overrides: Sequence[str] = ()) -> None:
    """Regenerate the committed params.yaml from conf/ (``python -m synthgen.config``)."""
    Path(path).write_text(to_params_yaml(compose(overrides)), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    import sys

    write_params(overrides=sys.argv[1:])
    print("wrote params.yaml")
