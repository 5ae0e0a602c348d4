"""How every stage runs: one registry of DVC stages, one-line errors on bad input or a full disk (exit 2).

:data:`STAGES` is the one place that says which function runs which DVC stage. ``synthgen <stage>`` (the
console script, :mod:`synthgen.cli`), this repository's ``pipelines/<stage>.py`` and the ``dvc.yaml`` that
``synthgen init`` writes all go through :func:`run_named`, so they run the same code. Kept apart from the
console script so a stage imports only what it runs (dvc.yaml lists each stage's imports as deps;
``tests/test_dvc_deps.py`` reads this registry).
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import InputError, StageFailed, WriteError, is_disk_error

#: DVC stage name -> ``"module:function"``; the function takes the composed, validated config (``params.yaml``
#: or ``conf/`` + overrides) and returns what :func:`summary` prints. In pipeline order.
STAGES: dict[str, str] = {
    "prepare": "synthgen.stages.prepare:prepare",
    "autoencoder": "synthgen.stages.autoencoder:train_autoencoder",
    "train": "synthgen.stages.train:train",
    "generate": "synthgen.stages.generate:generate",
    "curate": "synthgen.stages.curate:curate",
    "privacy": "synthgen.stages.privacy:run_stage",
    "evaluate": "synthgen.stages.evaluate:run",
    "export": "synthgen.stages.export:export",
}

#: Exit status of a stage whose result fails a gate (:class:`synthgen.errors.StageFailed`), e.g. privacy.
EXIT_GATE_FAILED = 1


def stage_function(name: str) -> Callable[[Any], Any]:
    """The function registered for stage ``name`` (imported on demand: a stage imports only its own code)."""
    if name not in STAGES:
        raise InputError(None, f"unknown stage {name!r}; one of {', '.join(STAGES)}")
    module, _, func = STAGES[name].partition(":")
    return getattr(importlib.import_module(module), func)


def summary(name: str, result: Any) -> str | None:
    """The one line a finished stage prints (``wrote data/prepared``, ``trained ddpm: global step 200 ...``)."""
    if isinstance(result, (str, Path)):
        return f"wrote {result}"
    if name == "train" and isinstance(result, dict):
        return (f"trained {result['model']}: global step {result['global_step']}, "
                f"{result['train_images_per_s']} images/s")
    if name == "autoencoder" and isinstance(result, dict):
        if not result.get("latent"):
            return "autoencoder: latent diffusion off, nothing to train (wrote models_ae/status.json)"
        return (f"autoencoder ({result['cache']}): latent {'x'.join(map(str, result['latent_shape']))}, "
                f"scale {result['latent_scale']:.4g}, validation {result.get('validation')}")
    if name == "curate" and isinstance(result, dict):
        return f"curate: kept {result['n_kept']} of {result['n_in']} generated samples, shipped {result['n_shipped']}"
    if name == "privacy" and isinstance(result, dict):
        return f"privacy gate passed: kept {result['cohort']['n_kept']} of {result['cohort']['n_synthetic']}"
    return None  # e.g. a non-zero DDP rank of generate returns nothing


def run_named(name: str, argv: Sequence[str] | None = None) -> int:
    """Run stage ``name`` with Hydra ``key=value`` overrides ``argv`` (none: ``params.yaml``); the exit status."""

    def main(overrides: Sequence[str]) -> None:
        from .config import load_config

        cfg = load_config(overrides)  # validated before the stage's heavy imports: a bad config fails fast
        line = summary(name, stage_function(name)(cfg))
        if line:
            print(line)

    return run_stage(main, argv)


def run_stage(main: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run a stage's ``main(overrides)``; bad input ends in one line on stderr and exit code 2, a failed gate
    (:class:`StageFailed`) in one line and exit code 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        main(argv)
    except InputError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except StageFailed as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_GATE_FAILED
    except OSError as e:  # a write outside synthgen.io.atomic_path refused by the file system
        if not is_disk_error(e):
            raise
        print(f"error: {WriteError(e.filename, e, cleaned=False)}", file=sys.stderr)
        return 2
    return 0


def one_line(e: BaseException) -> str:
    """``str(e)`` on one line (a message quoting a multi-line value must not break the one-line rule)."""
    return " ".join(str(e).split("\n")).strip()
