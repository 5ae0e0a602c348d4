"""DVC stage ``evaluate``: fidelity, diversity and task utility of a synthetic cohort, per class.

    python pipelines/evaluate.py                                   # reads params.yaml (what DVC tracks)
    python pipelines/evaluate.py evaluate.cohort=path/to/cohort.npz # any cohort (file or folder)
    python pipelines/evaluate.py evaluate.utility.seeds=[0] evaluate.classifier.steps=100
"""

import sys

from synthgen.runner import run_stage
from synthgen.config import load_config


def main(overrides):
    cfg = load_config(overrides)  # validated before the heavy imports: a bad config fails fast
    from synthgen.stages.evaluate import run

    out = run(cfg)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
