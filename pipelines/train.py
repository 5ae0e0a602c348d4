"""DVC stage ``train``: data/prepared -> models/{last,generator}.ckpt + metrics/train.json.

    python pipelines/train.py                                  # reads params.yaml (what DVC tracks)
    python pipelines/train.py model=cgan trainer.max_time=00:00:05:00
Killing it and running it again continues from models/last.ckpt.
Same code as ``synthgen train`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("train"))
