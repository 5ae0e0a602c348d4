"""DVC stage ``generate``: models/generator.ckpt -> data/generated/cohort.{npz,json} + reports/samples.png.

    python pipelines/generate.py                                   # reads params.yaml
    python pipelines/generate.py generate.per_class=200 +generate.counts.basophil=1000
    python pipelines/generate.py generate.devices=2                # two processes (DDP), same cohort
"""

import sys

from synthgen.runner import run_stage
from synthgen.config import load_config


def main(overrides):
    cfg = load_config(overrides)  # validated before the heavy imports: a bad config fails fast
    from synthgen.stages.generate import generate

    out = generate(cfg)
    if out is not None:
        print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
