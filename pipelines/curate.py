"""DVC stage ``curate``: data/generated -> data/curated/cohort.{npz,json} + metrics/boost.json.

    python pipelines/curate.py                                     # reads params.yaml
    python pipelines/curate.py curate.filter.min_confidence=0.5 curate.plan.enabled=false
"""

import sys

from synthgen.runner import run_stage
from synthgen.config import load_config


def main(overrides):
    cfg = load_config(overrides)  # validated before the heavy imports: a bad config fails fast
    from synthgen.stages.curate import curate

    summary = curate(cfg)
    print(f"curate: kept {summary['n_kept']} of {summary['n_in']}, shipped {summary['n_shipped']} "
          f"-> {cfg.curate.output}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
