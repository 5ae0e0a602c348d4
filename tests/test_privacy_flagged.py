"""The flagged-share gate against the flag rate of real unseen reference images (synthgen/privacy/flagged.py)."""

import numpy as np
import pytest

from synthgen.privacy.flagged import allocate, class_counts, flagged_share_test, reference_rows
from synthgen.privacy.gate import cohort_gates, flagged_gate

GATES = {"max_flagged_share": 0.02, "flagged_margin": 0.01, "flagged_alpha": 0.05, "flagged_ref_min_class": 50}


def _counts(n, k):
    return {0: {"n": n, "flagged": k}}


def _stats(syn, ref):
    n = sum(v["n"] for v in syn.values())
    k = sum(v["flagged"] for v in syn.values())
    return {"flagged_share": k / n, "n_flagged": k, "per_class": syn, "flagged_ref": {"per_class": ref}}


def test_limit_is_the_larger_of_the_policy_limit_and_the_reference_rate_plus_margin():
    low = flagged_share_test(_counts(500, 5), _counts(2000, 10), 0.02, 0.01)      # real data: 0.5% flagged
    assert low["limit"] == 0.02 and low["limit_from"] == "max_flagged_share"
    high = flagged_share_test(_counts(500, 5), _counts(2000, 60), 0.02, 0.01)     # real data: 3% flagged
    assert high["limit"] == pytest.approx(0.04) and high["limit_from"] == "reference"
    assert high["share_ref"] == pytest.approx(0.03) and high["share_ref_matched"] == pytest.approx(0.03)
    none = flagged_share_test(_counts(500, 5), {}, 0.02, 0.01)                     # no reference: the policy limit
    assert none["limit"] == 0.02 and np.isnan(none["share_ref_matched"])


def test_real_data_flagged_above_the_policy_limit_passes_and_copies_on_top_of_it_fail():
    # a clean cohort flagged like the reference (3%): the former constant rule fails it, the gate does not
    clean = flagged_gate(_stats(_counts(500, 15), _counts(500, 15)), GATES)
    assert clean["passed"] and not clean["constant_rule_passed"] and clean["p_value"] > 0.5
    assert clean["limit_from"] == "reference" and clean["share_ref_matched"] == pytest.approx(0.03)
    # the same cohort with 5% planted copies (26 more flagged of 526)
    planted = flagged_gate(_stats(_counts(526, 41), _counts(500, 15)), GATES)
    assert not planted["passed"] and planted["p_value"] < 0.01
    # a low reference rate keeps the policy limit: 5% of 2000 flagged fails against 2%
    big = flagged_gate(_stats(_counts(2000, 100), _counts(2000, 2)), GATES)
    assert not big["passed"] and big["limit"] == 0.02 and big["p_value"] < 1e-6


def test_excess_must_be_significant():
    # 3% flagged against a 2% limit: 12 of 400 is noise, 300 of 10,000 is not
    small = flagged_gate(_stats(_counts(400, 12), _counts(2000, 2)), GATES)
    assert small["passed"] and not small["constant_rule_passed"] and 0.05 < small["p_value"] < 0.5
    large = flagged_gate(_stats(_counts(10000, 300), _counts(2000, 2)), GATES)
    assert not large["passed"] and large["p_value"] < 1e-4
    # under the limit never fails, whatever the numbers
    assert flagged_gate(_stats(_counts(100000, 1900), _counts(2000, 2)), GATES)["passed"]
    # the reference's own uncertainty counts when it sets the limit: 18% flagged against 10% of 20 reference
    # images is not a significant excess over 11%; against 10% of 2,000 it is
    few = flagged_share_test(_counts(500, 90), _counts(20, 2), 0.02, 0.01, min_class_n=1)
    many = flagged_share_test(_counts(500, 90), _counts(2000, 200), 0.02, 0.01, min_class_n=1)
    assert few["limit_from"] == many["limit_from"] == "reference" and few["limit"] == pytest.approx(many["limit"])
    assert few["p_value"] > 0.1 and many["p_value"] < 1e-3


def test_reference_rate_is_class_matched_and_small_classes_take_the_pooled_rate():
    # balanced synthetic cohort; reference: class 0 flagged 1% (1000 images), class 1 flagged 5% (1000)
    syn = {0: {"n": 250, "flagged": 2}, 1: {"n": 250, "flagged": 12}}
    ref = {0: {"n": 1000, "flagged": 10}, 1: {"n": 1000, "flagged": 50}}
    t = flagged_share_test(syn, ref, 0.02, 0.01)
    assert t["share_ref_matched"] == pytest.approx(0.03) and t["per_class"][1]["share_ref"] == pytest.approx(0.05)
    # a cohort of class 1 only is compared with class 1's rate
    t1 = flagged_share_test({1: {"n": 500, "flagged": 20}}, ref, 0.02, 0.01)
    assert t1["share_ref_matched"] == pytest.approx(0.05) and t1["limit"] == pytest.approx(0.06)
    # a rare class with 2 reference images, one flagged, does not lift the limit by pi / 2: pooled rate
    syn = {0: {"n": 250, "flagged": 2}, 3: {"n": 250, "flagged": 2}}
    ref = {0: {"n": 1000, "flagged": 10}, 3: {"n": 2, "flagged": 1}}
    t = flagged_share_test(syn, ref, 0.02, 0.01, min_class_n=50)
    assert t["per_class"][3]["pooled"] and t["share_ref_matched"] == pytest.approx(0.5 * 0.01 + 0.5 * 11 / 1002)
    assert flagged_share_test(syn, ref, 0.02, 0.01, min_class_n=1)["share_ref_matched"] == pytest.approx(0.255)
    # string keys (a report read back from JSON) work the same
    assert flagged_share_test({"0": {"n": 10, "flagged": 1}}, {"0": {"n": 100, "flagged": 1}}, 0.02, 0.01,
                              1)["share_ref_matched"] == pytest.approx(0.01)


def test_cohort_gates_report_both_shares_and_the_rule():
    stats = {"exact_copies_after_drop": 0, "n_kept": 500, **_stats(_counts(526, 41), _counts(500, 15)),
             "dcr": {"difference": 0.0, "p_value": 0.5}}
    g = cohort_gates(stats, GATES)["flagged_share"]
    assert not g["passed"] and g["value"] == pytest.approx(41 / 526) and g["share_ref"] == pytest.approx(0.03)
    assert g["limit"] == pytest.approx(0.04) and "max(0.02, share_ref_matched + 0.01)" in g["rule"]
    assert g["n_ref"] == 500 and g["n_flagged_ref"] == 15 and g["alpha"] == 0.05
    # loosening the margin far enough passes the same cohort: the gate's verdict follows its settings
    assert cohort_gates(stats, {**GATES, "flagged_margin": 0.2})["flagged_share"]["passed"]


def test_allocate_and_reference_rows():
    assert allocate(np.array([100, 100]), np.array([0.5, 0.5]), 50).tolist() == [25, 25]
    assert allocate(np.array([10, 100]), np.array([0.5, 0.5]), 50).tolist() == [10, 40]   # short class refilled
    assert allocate(np.array([10, 10]), np.array([0.5, 0.5]), 50).tolist() == [10, 10]
    assert allocate(np.array([100, 100, 100]), np.array([1, 1, 1]) / 3, 10).sum() == 10
    assert allocate(np.array([100, 100]), np.array([1.0, 0.0]), 30).tolist() == [30, 0]
    yr = np.repeat([0, 1, 2], [3000, 500, 100])
    ys = np.repeat([0, 1], [100, 100])
    rows = reference_rows(yr, ys, 2000, seed=0)
    assert len(rows) == 2000 and np.bincount(yr[rows], minlength=3).tolist() == [1500, 500, 0]
    assert np.array_equal(rows, reference_rows(yr, ys, 2000, seed=0))
    assert not np.array_equal(rows, reference_rows(yr, ys, 2000, seed=1))
    assert np.array_equal(reference_rows(yr, ys, 5000, seed=0), np.arange(3600))        # all when <= cap
    assert len(reference_rows(yr, np.array([7, 7]), 100, seed=0)) == 100                  # no shared class
    assert class_counts(np.array([1, 0, 1, 0], bool), np.array([0, 0, 1, 2])) == {
        0: {"n": 2, "flagged": 1}, 1: {"n": 1, "flagged": 1}, 2: {"n": 1, "flagged": 0}}


@pytest.mark.parametrize("n, ref", [(400, (2000, 10)), (526, (500, 15)), (400, (80, 3))])
def test_min_failing_share_is_the_gates_resolution(n, ref):
    g = flagged_gate(_stats(_counts(n, 0), _counts(*ref)), GATES)
    k = int(round(g["min_failing_share"] * n))
    assert not flagged_gate(_stats(_counts(n, k), _counts(*ref)), GATES)["passed"]
    assert flagged_gate(_stats(_counts(n, k - 1), _counts(*ref)), GATES)["passed"]
    # a small reference resolves less: 3 of 80 fails a 400-sample cohort only from 9.5% flagged
    if ref == (80, 3):
        big = flagged_gate(_stats(_counts(n, 0), _counts(2000, 75)), GATES)     # same rate, 2,000 images
        assert g["min_failing_share"] == pytest.approx(0.095) and big["min_failing_share"] < 0.075
