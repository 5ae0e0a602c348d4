"""DVC stage ``evaluate``: fidelity, diversity and task utility of a synthetic cohort, per class.

    python pipelines/evaluate.py                                   # reads params.yaml (what DVC tracks)
    python pipelines/evaluate.py evaluate.cohort=path/to/cohort.npz # any cohort (file or folder)
    python pipelines/evaluate.py evaluate.utility.seeds=[0] evaluate.classifier.steps=100
Same code as ``synthgen evaluate`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("evaluate"))
