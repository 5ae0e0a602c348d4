"""Helper of tests/test_ddp.py (not a test module): run the train stage for each override list in a JSON file,
one after the other, in this process.

    python tests/ddp_jobs.py JOBS.json

Launched once per DDP rank by the test with the variables an external launcher (torchrun, SLURM) sets
(``LOCAL_RANK``, ``NODE_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): Lightning then joins those
processes instead of starting its own, and every job's Trainer reuses the one gloo process group.
"""

from __future__ import annotations

import json
import sys

from synthgen.config import compose
from synthgen.stages.train import train

if __name__ == "__main__":
    for overrides in json.loads(open(sys.argv[1], encoding="utf-8").read()):
        train(compose(overrides))
