"""DVC stage ``generate``: models/generator.ckpt -> data/generated/cohort.{npz,json} + reports/samples.png.

    python pipelines/generate.py                                   # reads params.yaml
    python pipelines/generate.py generate.per_class=200 +generate.counts.basophil=1000
    python pipelines/generate.py generate.devices=2                # two processes (DDP), same cohort
Same code as ``synthgen generate`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("generate"))
