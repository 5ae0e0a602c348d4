"""DVC stage ``export``: data/audited -> data/export/<export.name>/ (shards, index.json, README.md card).

    python pipelines/export.py                       # reads params.yaml (what DVC tracks)
    python pipelines/export.py export.format=dicom export.shard_size.samples=500
Same code as ``synthgen export`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("export"))
