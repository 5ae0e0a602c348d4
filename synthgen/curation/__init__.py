"""Curation of a generated cohort (issue 14): per-sample scores from the domain classifier trained on the real
training split (:mod:`.scores`), the filter that drops off-class, unrealistic and near-duplicate samples
(:mod:`.filter`), and the boost plan (:mod:`.plan`, chosen on the validation split) that decides how many filter-kept candidates of a rare class ship.

Layering: imports ``synthgen.data``, ``synthgen.metrics`` and ``synthgen.sampling`` only (never the stages,
privacy or export).
"""
