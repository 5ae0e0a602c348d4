"""Load the pipeline configuration the way DVC does, and refuse a bad one in one line.

DVC's Hydra integration composes ``conf/`` into ``params.yaml`` (only in ``dvc exp run``), and
``dvc repro`` reads ``params.yaml``. Stage scripts therefore read ``params.yaml``; when a person runs
a stage by hand with Hydra overrides (``python pipelines/prepare.py data=medmnist data.path=x.npz``)
we compose ``conf/`` with those overrides exactly as DVC would (``version_base=None``, resolved).

Either way :func:`load_config` validates the result (:mod:`synthgen.validation`) before the stage does any
work: a wrong type, an out-of-range value or an unknown key is a :class:`ConfigError` naming the key and
what it expects (``error: config data.image_size: expected an integer >= 1 ..., got 0``, exit 2). Hydra's
own errors (unknown key, bad override syntax, unknown group option) become the same kind of line.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def packaged_conf() -> Path:
    """synthgen's default configs: the installed wheel's package data ``synthgen/conf``, else (a source checkout
    or an editable install) the checkout's ``conf/``, which is the one source of both (``setup.py`` ships it)."""
    from importlib.resources import files

    shipped = Path(str(files("synthgen") / "conf"))
    return shipped if (shipped / "config.yaml").is_file() else PROJECT_ROOT / "conf"


def conf_dir(config_dir: str | os.PathLike | None = None) -> Path:
    """``config_dir``, else ``$SYNTHGEN_CONF``, else ``./conf`` (a project's own), else :func:`packaged_conf`."""
    if config_dir is not None:
        return Path(config_dir).resolve()
    if os.environ.get("SYNTHGEN_CONF"):
        return Path(os.environ["SYNTHGEN_CONF"]).resolve()
    here = Path.cwd() / "conf"
    return here.resolve() if here.is_dir() else packaged_conf()


def compose(overrides: Sequence[str] = (), config_dir: str | os.PathLike | None = None,
            config_name: str = "config", validate: bool = False) -> DictConfig:
    """Compose ``conf/`` with Hydra overrides, resolved, as ``dvc exp run`` writes it to params.yaml.

    Hydra's and OmegaConf's errors become a one-line :class:`ConfigError` naming the key; with ``validate``
    the result is also checked against conf/'s defaults and :mod:`synthgen.config_rules`.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config_dir = conf_dir(config_dir)
    if not (config_dir / f"{config_name}.yaml").exists():
        raise InputError(config_dir / f"{config_name}.yaml", "Hydra config not found")
    overrides = [str(o) for o in overrides]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
        OmegaConf.resolve(cfg)
    except Exception as e:  # hydra.errors.*, omegaconf.errors.*: multi-line messages, tracebacks
        raise _composition_error(e, overrides, config_dir, config_name) from None
    finally:
        GlobalHydra.instance().clear()
    if validate:
        from .validation import validate_config

        validate_config(OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False), config_dir, config_name)
    return cfg


def to_params_yaml(cfg: DictConfig) -> str:
    """The exact text DVC writes to params.yaml for a composed config."""
    return OmegaConf.to_yaml(cfg)


def load_config(overrides: Sequence[str] = (), params: str | os.PathLike = "params.yaml") -> DictConfig:
    """Stage configuration: ``params.yaml`` (what DVC tracks) or, with overrides, a fresh composition.

    Both are validated before they are returned (one-line :class:`ConfigError`, the key named).
    """
    if overrides:
        return compose(overrides, validate=True)
    params = Path(params)
    if not params.exists():
        return compose((), validate=True)
    cfg = read_params(params)
    schema = conf_dir()
    if (schema / "config.yaml").exists():
        from .validation import validate_config

        validate_config(_plain(cfg), schema)
    else:
        log.warning("no conf/ at %s: %s is not validated", schema, params)
    return cfg


def read_params(path: str | os.PathLike) -> DictConfig:
    """``params.yaml`` as a DictConfig; unreadable YAML or a non-mapping is an :class:`InputError`."""
    import yaml

    path = Path(path)
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InputError(path, f"not valid YAML{where}: {_first_line(getattr(e, 'problem', None) or e)}") from None
    except Exception as e:  # omegaconf refuses some YAML (e.g. non-string keys)
        raise InputError(path, f"not a readable config: {_first_line(e)}") from None
    if not isinstance(cfg, DictConfig):
        raise InputError(path, "expected a mapping of config groups (data:, model:, ...) at the top")
    return cfg


def _plain(cfg: DictConfig) -> Any:
    """Resolved plain containers (``???`` kept); an interpolation that fails names its key."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception as e:
        raise _composition_error(e, [], None, "config") from None


def write_params(path: str | os.PathLike = "params.yaml", overrides: Sequence[str] = (),
                 config_dir: str | os.PathLike | None = None) -> None:
    """Regenerate params.yaml from conf/ (``python -m synthgen.config``, ``synthgen params``)."""
    from .io import atomic_path

    text = to_params_yaml(compose(overrides, config_dir, validate=True))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------ Hydra's errors
def _first_line(e: Any) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0].strip() or override


def _composition_error(e: Exception, overrides: Sequence[str], config_dir: Path | None,
                       config_name: str) -> ConfigError:
    """One line naming the key for an exception raised while composing or resolving."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(e)
    if isinstance(e, MissingConfigException):
        m = re.search(r"Could not find '([^']+)'", text)
        missing = m.group(1) if m else ""
        group, _, option = missing.rpartition("/")
        options = [o for o in (getattr(e, "options", None) or []) if not o.startswith("_")]
        if group and options:
            return ConfigError(group.replace("/", "."), f"no option {option!r} in conf/{group}/; "
                                                        f"choose one of {', '.join(options)}")
        return ConfigError(group or config_name, f"config file {missing or '?'}.yaml not found")
    if isinstance(e, OverrideParseException):
        bad = _unparsable(overrides)
        lines = [ln.strip() for ln in text.splitlines()
                 if ln.strip() and not ln.startswith(("Error parsing override", "See https://"))]
        return ConfigError(_override_key(bad) if bad else "override",
                           f"cannot parse override {bad!r}: {lines[0] if lines else 'bad syntax'} "
                           "(syntax: key=value, lists [a,b], quote values with special characters)")
    cause_key = getattr(e.__cause__, "full_key", None)
    m = re.search(r"Could not (override|append to config|delete from config)[^']*'([^']+)'", text)
    if m:
        key, what = m.group(2), m.group(1)
        if what == "append to config":
            return ConfigError(key, f"already exists: set it with {key}=... (not +{key}=...)")
        if what == "delete from config":
            return ConfigError(key, "cannot delete it: no such key")
        if cause_key and str(cause_key).startswith(key + "."):
            from .config_rules import RULES
            from .validation import MapOf, Open, _rule_for

            if isinstance(_rule_for(key, RULES), (MapOf, Open)):
                return ConfigError(str(cause_key), f"a new entry of {key}: add it with +{cause_key}=...")
        return ConfigError(key, _unknown_key(key, overrides, config_dir, config_name))
    key = getattr(e, "full_key", None) or cause_key
    named = [o for o in overrides if o and o in text]  # Hydra quotes the override it refuses
    if not key:
        key = (_override_key(named[0]) if named else
               _override_key(overrides[0]) if len(overrides) == 1 else "overrides")
    if text.startswith("Ambiguous value"):
        return ConfigError(str(key), f"{_first_line(e)}: a comma asks for a sweep; quote the value "
                                     f"(key='a,b') or use a list (key=[a,b])")
    msg = getattr(e, "msg", None) or text
    if str(msg).startswith("Error merging override") and e.__cause__ is not None:
        msg = getattr(e.__cause__, "msg", None) or str(e.__cause__)
    return ConfigError(str(key), _first_line(msg))


def _unparsable(overrides: Sequence[str]) -> str | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except Exception:
            return o
    return None


def _unknown_key(key: str, overrides: Sequence[str], config_dir: Path | None, config_name: str) -> str:
    """``unknown key; did you mean ...?`` from the composition with only the group choices of ``overrides``."""
    from .validation import _unknown

    groups = [o for o in overrides if config_dir is not None and "=" in o and "." not in _override_key(o)
              and (config_dir / _override_key(o)).is_dir()]
    try:
        ref = OmegaConf.to_container(compose(groups, config_dir, config_name), throw_on_missing=False)
    except Exception:
        return "unknown key"
    node: Any = ref
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return f"unknown key: {'.'.join(parts[:i])} is a value, not a mapping"
        if part not in node:
            return _unknown(".".join(parts[:i + 1]), [str(k) for k in node])
        node = node[part]
    return "unknown key"


if __name__ == "__main__":  # pragma: no cover
    import sys

    from .runner import run_stage

    def _main(argv: Sequence[str]) -> None:
        write_params(overrides=argv)
        print("wrote params.yaml")

    sys.exit(run_stage(_main))
