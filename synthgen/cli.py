"""The ``synthgen`` console script (``audit``, ``verify``, ``version``); stage scripts use :mod:`synthgen.runner`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


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
