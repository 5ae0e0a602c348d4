"""DVC stage ``curate``: data/generated -> data/curated/cohort.{npz,json} + metrics/boost.json.

    python pipelines/curate.py                                     # reads params.yaml
    python pipelines/curate.py curate.filter.min_confidence=0.5 curate.plan.enabled=false
Same code as ``synthgen curate`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("curate"))
