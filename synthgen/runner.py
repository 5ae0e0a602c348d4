"""How every stage script runs: one-line errors on bad input or a full disk (exit 2), logging set up.

Kept apart from the ``synthgen`` console script (:mod:`synthgen.cli`) so a stage imports only what it runs
(dvc.yaml lists each stage's imports as deps; ``tests/test_dvc_deps.py``).
"""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from .errors import InputError, WriteError, is_disk_error


def run_stage(main: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run a stage's ``main(overrides)``; bad input ends in one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        main(argv)
    except InputError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a write outside synthgen.io.atomic_path refused by the file system
        if not is_disk_error(e):
            raise
        print(f"error: {WriteError(e.filename, e, cleaned=False)}", file=sys.stderr)
        return 2
    return 0


def one_line(e: BaseException) -> str:
    """``str(e)`` on one line (a message quoting a multi-line value must not break the one-line rule)."""
    return " ".join(str(e).split("\n")).strip()
