"""``synthgen audit``: the standalone privacy audit of any synthetic image set.

    synthgen audit --train T --holdout H --synthetic S [--reference R] --out report.json [--png pairs.png]
                   [overrides...]

``R``: real images the model never saw, from the *training* distribution (e.g. a validation split), sharing
no patient with ``H``: the cohort statistics (DCR share, membership inference) are compared with what these
real images score. Without ``--reference`` a seeded half of ``H``'s patients becomes ``R`` and the other half
``H``, with a warning: that assumes ``H`` holds no near-duplicates across its patients (e.g. adjacent slices of
one scan stored as separate images without patient ids), and a shifted ``H`` makes the gate stricter.

``T``/``H``/``S``/``R``: ``.npz`` (``images`` + ``labels``, or MedMNIST ``{split}_images``; pick a split with
``file.npz#split``) or folders of WebDataset shards (``.npy`` + ``.cls``). Trailing ``key=value`` arguments
override the ``privacy`` config group (e.g. ``gates.max_flagged_share=0.05 embedding.steps=100``).

Exit status: 0 the cohort passes the gate, 1 a cohort-level gate fails, 2 bad input (one line on stderr),
e.g. synthetic labels that are not training classes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, InputError
from ..validation import validate_tree

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


def default_privacy_config(overrides: Sequence[str] = ()) -> dict:
    """``conf/privacy/default.yaml`` of the installed package (``seed`` 0), with ``key=value`` overrides."""
    from omegaconf import OmegaConf

    from ..config import packaged_conf

    path = packaged_conf() / "privacy" / "default.yaml"
    if not path.exists():
        raise InputError(path, "privacy config not found")
    base = OmegaConf.create({"seed": 0, "privacy": OmegaConf.load(path)})
    cfg = base
    for o in overrides:  # one at a time, so that a bad one is named
        key = f"privacy.{o.split('=', 1)[0].strip()}"
        try:
            if "=" not in o:
                raise ValueError("expected key=value")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"privacy.{o}"]))
        except Exception as e:  # omegaconf grammar errors
            raise ConfigError(key, f"bad override {o!r}: {str(e).strip().splitlines()[0]}") from None
    plain = OmegaConf.to_container(cfg, resolve=True)
    validate_tree(plain, OmegaConf.to_container(base, resolve=True))  # types, ranges, unknown keys
    return plain["privacy"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``audit`` subcommand on ``synthgen``'s subparsers."""
    p = sub.add_parser("audit", help="privacy audit of a synthetic image set (exit 0 pass, 1 fail, 2 bad input)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training images (.npz[#split] or WebDataset shard folder)")
    p.add_argument("--holdout", required=True, help="holdout images of patients never used for training")
    p.add_argument("--synthetic", required=True, help="synthetic images to audit")
    p.add_argument("--reference", default=None,
                   help="real unseen images of the training distribution, no patient shared with the holdout "
                        "(default: a seeded half of the holdout, with a warning)")
    p.add_argument("--out", required=True, help="report.json to write")
    p.add_argument("--png", default=None, help="also draw the most similar pairs to this PNG")
    p.add_argument("--cache-dir", default=None, help="copy-detection encoder cache (default: privacy config)")
    p.add_argument("overrides", nargs="*", help="privacy config overrides key=value")
    p.set_defaults(func=run_command)
    return p


def run_command(args: argparse.Namespace) -> int:
    """Run the audit for parsed ``args``; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = default_privacy_config(args.overrides)  # before the heavy imports: a config typo fails fast
        from .audit import run_audit
        from .inputs import check_compatible, check_labels, read_image_set, split_holdout
        from .report import build_report, nearest_pairs_png, write_report

        train = read_image_set(args.train, "train")
        holdout = read_image_set(args.holdout, "holdout")
        synthetic = read_image_set(args.synthetic, "synthetic")
        reference = read_image_set(args.reference, "reference") if args.reference else None
        check_compatible([train, holdout, synthetic] + ([reference] if reference is not None else []))
        check_labels(synthetic, train, "synthetic")
        origin = "given (--reference)"
        if reference is None:
            origin = "holdout half"
            reference, holdout = split_holdout(holdout, int(cfg.get("seed", 0)))
            print(f"warning: no --reference: a seeded half of the holdout ({len(reference)} images) is the "
                  f"reference of real unseen images and the other half ({len(holdout)}) the holdout; this "
                  "assumes the holdout holds no near-duplicates across patients (e.g. adjacent slices) and "
                  "comes from the training distribution (a shifted holdout makes the gate stricter)",
                  file=sys.stderr)
        result = run_audit(train, holdout, synthetic, cfg, cache_dir=args.cache_dir, reference=reference,
                           reference_origin=origin)
        report = build_report(result, train, holdout, synthetic)
        write_report(args.out, report)  # atomic: a full disk is a one-line InputError
        if args.png:
            nearest_pairs_png(args.png, result, train, synthetic, int(cfg.get("report", {}).get("top_pairs", 16)))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    verdict = "PASSED" if result.passed else f"FAILED gates {report['failed_gates']}"
    print(f"privacy audit {verdict}: {report['cohort']['n_flagged']} of {len(synthetic)} samples flagged; "
          f"report {Path(args.out)}")
    return EXIT_PASS if result.passed else EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m synthgen.privacy.cli --train ...`` (same as ``synthgen audit``)."""
    parser = argparse.ArgumentParser(prog="synthgen")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(["audit", *argv])
    except SystemExit as e:  # argparse: usage errors are bad input
        return EXIT_BAD_INPUT if e.code else EXIT_PASS
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
