"""DVC stage ``train``: data/prepared -> models/{last,generator}.ckpt + metrics/train.json.

    python pipelines/train.py                                  # reads params.yaml (what DVC tracks)
    python pipelines/train.py model=cgan trainer.max_time=00:00:05:00
Killing it and running it again continues from models/last.ckpt.
"""

import sys

from synthgen.runner import run_stage
from synthgen.config import load_config


def main(overrides):
    cfg = load_config(overrides)  # validated before the heavy imports: a bad config fails fast
    from synthgen.stages.train import train

    metrics = train(cfg)
    print(f"trained {metrics['model']}: global step {metrics['global_step']}, "
          f"{metrics['train_images_per_s']} images/s")


if __name__ == "__main__":
    sys.exit(run_stage(main))
