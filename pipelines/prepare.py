"""DVC stage ``prepare``: source images -> data/prepared/{train,val,test,holdout}.npz + meta.json.

    python pipelines/prepare.py                      # reads params.yaml (what DVC tracks)
    python pipelines/prepare.py data=medmnist data.path=../shared/data/bloodmnist.npz
"""

import sys

from synthgen.runner import run_stage
from synthgen.config import load_config


def main(overrides):
    cfg = load_config(overrides)  # validated before the heavy imports: a bad config fails fast
    from synthgen.stages.prepare import prepare

    out = prepare(cfg)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
