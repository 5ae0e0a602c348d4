"""synthgen: labeled, privacy-checked synthetic cohorts from a hospital's own medical images."""

__version__ = "0.1.0"
