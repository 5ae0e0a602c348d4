"""The ``synthgen`` console script.

    synthgen init DIR [--npz FILE | --dicom ROOT --labels CSV | --nifti ROOT --labels CSV | --images ROOT --labels CSV]
    synthgen prepare|train|generate|evaluate|privacy|export [key=value ...]   # one DVC stage (params.yaml + overrides)
    synthgen params [key=value ...]     # compose conf/ into params.yaml
    synthgen audit ...                  # standalone privacy audit of any image set
    synthgen verify DIR                 # check an export against its index.json
    synthgen version

Stage commands run the same code as this repository's ``pipelines/<stage>.py`` (:data:`synthgen.runner.STAGES`).
Exit status: 0 success, 1 a gate failed (privacy, audit), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .runner import STAGES

STAGE_HELP = {
    "prepare": "source images -> data/prepared/{train,val,test,holdout}.npz + meta.json",
    "train": "data/prepared -> models/{last,generator}.ckpt + metrics/train.json (resumable)",
    "generate": "models/generator.ckpt -> data/generated/cohort.{npz,json}",
    "evaluate": "fidelity, diversity and task utility per class -> metrics/evaluate.json",
    "privacy": "privacy gate: data/generated -> data/audited (exit 1 when a cohort-level gate fails)",
    "export": "data/audited -> data/export/<export.name>/ (WebDataset shards, index.json, dataset card)",
}


def _add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write a ready DVC project for your own cohort into DIR",
                       description="Write conf/ (data source pre-filled), params.yaml, dvc.yaml (stages call "
                                   "`synthgen <stage>`), .gitignore and a README into DIR. Then: git init && "
                                   "dvc init && dvc repro.")
    p.add_argument("directory", metavar="DIR", help="new or empty folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--npz", metavar="FILE", help="MedMNIST-style .npz ({train,val,test}_{images,labels})")
    src.add_argument("--dicom", metavar="ROOT", help="folder of DICOM files (with --labels)")
    src.add_argument("--nifti", metavar="ROOT", help="folder of NIfTI volumes (with --labels: path,slice,label,...)")
    src.add_argument("--images", metavar="ROOT", help="folder of PNG/JPEG/TIFF images (with --labels)")
    p.add_argument("--labels", metavar="CSV", help="labels CSV path,label,patient_id (paths relative to ROOT)")
    p.add_argument("--budget", help="conf/budget option (default: demo for the demo cohort, else standard)")
    p.add_argument("--model", help="conf/model option (default: the packaged default)")


def _init(args: argparse.Namespace) -> None:
    from .project import SOURCES, init_project

    source = next((s for s in SOURCES if getattr(args, s)), "demo")
    if args.labels and source in ("demo", "npz"):
        from .errors import InputError

        raise InputError(None, "--labels goes with --dicom, --nifti or --images")
    out = init_project(args.directory, source, getattr(args, source, None) if source != "demo" else None,
                       args.labels, args.budget, args.model)
    print(f"wrote {out}\nnext: cd {out} && git init && dvc init && dvc repro")


def main(argv: Sequence[str] | None = None) -> int:
    """``synthgen <command>``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="synthgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the package version")
    _add_init(sub)
    for name in STAGES:
        s = sub.add_parser(name, help=STAGE_HELP.get(name, f"the {name} stage"),
                           description=f"DVC stage {name}: {STAGE_HELP.get(name, '')}. Reads params.yaml, or "
                                       "composes conf/ with the given Hydra overrides.")
        s.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.image_size=64 model=cgan")
    params = sub.add_parser("params", help="compose conf/ (+ overrides) into params.yaml")
    params.add_argument("overrides", nargs="*", help="Hydra overrides")
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
    if args.command in STAGES:
        from .runner import run_named

        return run_named(args.command, args.overrides)
    if args.command in ("init", "params"):
        from .runner import run_stage

        if args.command == "init":
            return run_stage(lambda _: _init(args), [])
        from .config import write_params

        return run_stage(lambda ov: (write_params(overrides=ov), print("wrote params.yaml")), args.overrides)
    if args.command == "verify":
        from .export.verify import main as verify_main

        return verify_main(args.export_dir, decode=not args.no_decode)
    if args.command == "version":
        from . import __version__

        print(__version__)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
