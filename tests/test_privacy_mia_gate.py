"""Small-sample honesty of the membership-inference gates (synthgen/privacy/mia_gate.py, gate.mia_gates)."""

import numpy as np
import pytest
from scipy.stats import binom, nhypergeom

from synthgen.privacy.gate import cohort_gates, mia_gates
from synthgen.privacy.membership import attack_metrics
from synthgen.privacy.mia_gate import auc_test, rank_tpr, tpr_rank_p_value

GATES = {"mia_max_auc": 0.6, "mia_max_tpr_at_1pct_fpr": 0.03, "mia_alpha": 0.05}


def _fail_rates(m: int, n: int, seeds: int, shift: float = 0.0, exposed: float = 0.0):
    """Per-gate fail rates over ``seeds`` simulated audits, and the former rule's TPR fail rate."""
    auc_f = tpr_f = old_f = 0
    for s in range(seeds):
        rng = np.random.default_rng(s)
        mem, non = rng.normal(shift, 1, m), rng.normal(0, 1, n)
        mem[rng.random(m) < exposed] = 10.0
        a = attack_metrics(mem, non)
        g = mia_gates("mia", a, GATES, None)
        auc_f += not g["mia_auc"]["passed"]
        tpr_f += not g["mia_tpr_at_1pct_fpr"]["passed"]
        k = int(round(a["tpr_at_fpr"] * m))   # former rule: binomial on the interpolated TPR
        old_f += bool(a["tpr_at_fpr"] > 0.03 and k > 0 and binom.sf(k - 1, m, 0.03) < 0.05)
    return auc_f / seeds, tpr_f / seeds, old_f / seeds


def test_rank_null_is_the_negative_hypergeometric_and_tends_to_the_binomial():
    # limit 0: members exchangeable with non-members, X = members ranked above the j-th non-member
    for m, n, j, x in ((84, 12, 1, 10), (12, 12, 1, 3), (500, 5000, 50, 12)):
        assert tpr_rank_p_value(x, m, n, j, 0.0) == pytest.approx(nhypergeom(m + n, m, j).sf(x - 1), rel=1e-4)
    # a million non-members: the threshold's FPR is 1%, the test is the binomial at the limit; with 5000 the
    # threshold's own sampling error still makes it more conservative
    assert tpr_rank_p_value(90, 2000, 10 ** 6, 10000, 0.03) == pytest.approx(binom.sf(89, 2000, 0.03), rel=0.1)
    assert tpr_rank_p_value(90, 2000, 5000, 50, 0.03) > 2 * binom.sf(89, 2000, 0.03)
    # a few non-members: far more conservative than the binomial, never below the exchangeable tail
    p = tpr_rank_p_value(14, 84, 12, 1, 0.03)
    assert p > 0.1 > binom.sf(13, 84, 0.03) and p >= tpr_rank_p_value(14, 84, 12, 1, 0.0)
    r = rank_tpr(np.array([5.0, 0.5, 3.0]), np.array([1.0, 2.0, 0.0]))
    assert (r["threshold_rank"], r["n_above"], r["fpr_threshold"], r["fpr_empirical"]) == (1, 2, 0.25, 0.0)


def test_non_memorizing_model_passes_at_12_reference_images():
    # the lead's 3D demo sizes: 84 members, 12 non-members, one score distribution
    auc_rate, tpr_rate, old_rate = _fail_rates(84, 12, 200)
    assert auc_rate <= 0.05 and tpr_rate <= 0.07
    assert old_rate > 0.3          # the former binomial rule failed such a model nearly half the time
    auc_rate, tpr_rate, _ = _fail_rates(12, 12, 200)
    assert auc_rate <= 0.05 and tpr_rate <= 0.07


def test_leak_at_the_limit_fails_at_most_alpha_and_a_larger_leak_fails():
    e0 = 0.02 / 0.99               # exposed share giving TPR 3% at FPR 1% exactly
    _, tpr_rate, _ = _fail_rates(1000, 1000, 100, exposed=e0)
    assert tpr_rate <= 0.1
    _, tpr_rate, _ = _fail_rates(1000, 1000, 20, exposed=0.08)
    assert tpr_rate >= 0.9


def test_memorizer_still_fails_at_small_and_large_sizes():
    for m, n in ((84, 12), (2000, 2000)):
        rng = np.random.default_rng(1)
        g = mia_gates("mia_loss", attack_metrics(rng.normal(3, 1, m), rng.normal(0, 1, n)), GATES, None)
        assert not g["mia_loss_auc"]["passed"] and not g["mia_loss_tpr_at_1pct_fpr"]["passed"]
        t = g["mia_loss_tpr_at_1pct_fpr"]
        assert t["fpr_resolvable"] is (n >= 100) and t["fpr_threshold"] == pytest.approx(
            1 / 13 if n == 12 else 20 / 2001)
    auc_rate, tpr_rate, _ = _fail_rates(84, 12, 50, shift=2.0)
    assert auc_rate >= 0.9 and tpr_rate >= 0.9


def test_auc_gate_tests_the_excess_and_reports_its_resolution():
    small = auc_test(0.625, 84, 12, 0.6, 0.05)     # the lead's failing 3D demo value
    assert small["p_value"] > 0.3 and 0.7 < small["min_failing_auc"] < 0.78
    big = auc_test(0.625, 2000, 2000, 0.6, 0.05)
    assert big["p_value"] < 0.01 and big["min_failing_auc"] < 0.62
    stats = {"exact_copies_after_drop": 0, "flagged_share": 0.0, "n_flagged": 0, "n_kept": 10,
             "per_class": {0: {"n": 10, "flagged": 0}}, "dcr": {"difference": 0.0, "p_value": 0.5}}
    g = cohort_gates({**stats, "mia": {"auc": 0.625, "tpr_at_fpr": 0.0, "n_members": 84, "n_nonmembers": 12}},
                     GATES)["mia_auc"]
    assert g["passed"] and g["min_failing_auc"] == pytest.approx(small["min_failing_auc"])
    g = cohort_gates({**stats, "mia": {"auc": 0.625, "tpr_at_fpr": 0.0, "n_members": 2000,
                                       "n_nonmembers": 2000}}, GATES)["mia_auc"]
    assert not g["passed"]
    # under the limit never fails; without counts the bare limit applies
    assert cohort_gates({**stats, "mia": {"auc": 0.59, "tpr_at_fpr": 0.0, "n_members": 10 ** 6,
                                          "n_nonmembers": 10 ** 6}}, GATES)["mia_auc"]["passed"]
    assert not cohort_gates({**stats, "mia": {"auc": 0.61, "tpr_at_fpr": 0.0}}, GATES)["mia_auc"]["passed"]
