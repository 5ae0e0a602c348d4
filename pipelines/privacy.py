"""DVC stage ``privacy``: data/generated + data/prepared -> data/audited, metrics/privacy.json, reports/.

    python pipelines/privacy.py                        # reads params.yaml (what DVC tracks)
    python pipelines/privacy.py privacy.gates.max_flagged_share=0.05 ...   # by hand, Hydra overrides

Exit 0: the cohort passed (flagged samples dropped); 1: a cohort-level gate failed; 2: bad input.
Same code as ``synthgen privacy`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("privacy"))
