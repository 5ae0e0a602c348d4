"""The DVC stages, one module each: prepare, train, generate, curate, privacy, evaluate, export."""
