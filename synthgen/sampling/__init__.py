"""Sampling: generation plans (which (label, seed) pairs a cohort holds) and samplers."""
