"""Shared entry-point plumbing: one-line errors, logging, and the ``synthgen`` console script."""

from __future__ import annotations

import argparse
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


def main(argv: Sequence[str] | None = None) -> int:
    """``synthgen <command>``; commands are added by the stages that own them."""
    parser = argparse.ArgumentParser(prog="synthgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the package version")
    verify = sub.add_parser("verify", help="check an export folder's shards against its index.json")
    verify.add_argument("export_dir", help="e.g. data/export/synthetic")
    verify.add_argument("--no-decode", action="store_true", help="skip decoding the PNG previews")
    from .privacy.cli import add_parser as add_audit_parser

    add_audit_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse usage errors: bad input (2), --help (0)
        return int(e.code or 0)
    if getattr(args, "func", None) is not None:
        return args.func(args)
    if args.command == "verify":
        from .export.verify import main as verify_main

        return verify_main(args.export_dir, decode=not args.no_decode)
    if args.command == "version":
        from . import __version__

        print(__version__)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
