"""Stage drivers: one module per DVC stage, called by the thin scripts in ``pipelines/`` (issue 16 moves the
other stages' drivers here)."""
