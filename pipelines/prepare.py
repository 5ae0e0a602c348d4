"""DVC stage ``prepare``: source images -> data/prepared/{train,val,test,holdout}.npz + meta.json.

    python pipelines/prepare.py                      # reads params.yaml (what DVC tracks)
    python pipelines/prepare.py data=medmnist data.path=../shared/data/bloodmnist.npz
Same code as ``synthgen prepare`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("prepare"))
