"""DVC stage ``export``: data/audited -> data/export/<export.name>/ (shards, index.json, README.md card).

    python pipelines/export.py                       # reads params.yaml (what DVC tracks)
    python pipelines/export.py export.format=dicom export.shard_size.samples=500
"""

import sys

from synthgen.runner import run_stage
from synthgen.config import load_config


def main(overrides):
    cfg = load_config(overrides)  # validated before the heavy imports: a bad config fails fast
    from synthgen.stages.export import export

    out = export(cfg)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
