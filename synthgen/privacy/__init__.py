"""Privacy gate: memorization and membership-inference checks before export (see README, issue 5)."""
