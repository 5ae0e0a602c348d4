"""The DVC stages, one module each: prepare, train, generate, evaluate, privacy, export."""
