"""Curation of a generated cohort: per-sample scores, filters and the validation-chosen boost plan."""
