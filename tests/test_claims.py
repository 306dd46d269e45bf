"""The claim record: a check that a trivial or wrong answer passes is never reported as a pass."""

import math

import numpy as np
import pytest

from simtheory.claims import Claim, held, markdown_table, reported


def at_least(x):
    return x >= 0.9


def test_a_claim_passes_only_when_no_alternative_passes():
    c = held("agreement", 0.95, ">= 0.9", at_least, alternatives={"constant guess": 0.5, "reversed": 0.1})
    assert c.verdict == "pass" and c.also_met_by == []
    assert "constant guess: 0.5" in c.base_rate and "reversed: 0.1" in c.base_rate


def test_an_alternative_that_meets_the_threshold_makes_the_claim_inconclusive():
    c = held("agreement", 0.95, ">= 0.9", at_least, alternatives={"constant guess": 0.925, "reversed": 0.1})
    assert c.verdict == "inconclusive" and c.also_met_by == ["constant guess"]
    assert "does not discriminate" in c.base_rate
    # and a measured value that fails stays a failure
    assert held("a", 0.5, ">= 0.9", at_least, alternatives={"guess": 0.95}).verdict == "fail"


def test_nan_is_undecided_and_inf_is_judged():
    assert held("gap", math.nan, "<= 0.02", lambda x: x <= 0.02).verdict == "inconclusive"
    assert held("gap", math.inf, "<= 0.02", lambda x: x <= 0.02).verdict == "fail"
    # an alternative that is undecidable (nan) does not count as meeting the threshold
    assert held("gap", 0.01, "<= 0.02", lambda x: x <= 0.02, alternatives={"x": math.nan}).verdict == "pass"


def test_a_bool_instead_of_a_predicate_is_refused():
    with pytest.raises(TypeError, match="accepts must be a predicate"):
        held("a", 1.0, ">= 0.9", True)


def test_reported_claims_and_the_table_show_the_alternatives():
    c = reported("fraction", 0.96, "reported: W = 0 scores 1", alternatives={"W = 0": 1.0})
    assert c.verdict == "reported" and c.value == pytest.approx(0.96)
    table = markdown_table([c])
    assert "W = 0: 1" in table and "**reported**" in table
    assert Claim.from_dict(c.to_dict()) == c


def test_balanced_accuracy_by_hand():
    from validation._report import balanced_accuracy, kind_alternatives

    actual = np.array([True, True, False, False, False, False])
    predicted = np.array([True, False, False, False, False, True])
    # true-positive rate 1/2, true-negative rate 3/4
    assert balanced_accuracy(predicted, actual) == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert math.isnan(balanced_accuracy(predicted, np.zeros(6, bool)))  # one class only: undecided
    alt = kind_alternatives(predicted, actual)
    assert alt["always monotone"] == alt["always non-monotone"] == 0.5
    # the right predictions paired with the wrong runs: predicted shifted by one member
    assert alt["another run's prediction"] == pytest.approx(balanced_accuracy(np.roll(predicted, 1), actual))


def test_reversed_rates_swaps_the_concept_axes_only():
    from validation._report import reversed_rates

    A = np.diag([1.0, 2.0, 3.0, 0.5])
    A[0, 1] = A[1, 0] = 0.1
    R = reversed_rates(A, 3)
    np.testing.assert_array_equal(np.diag(R), [3.0, 2.0, 1.0, 0.5])
    assert R[2, 1] == R[1, 2] == 0.1 and R[0, 1] == 0.0
    np.testing.assert_array_equal(reversed_rates(R, 3), A)  # an involution


def test_verdict_and_failed_read_as_they_say():
    from simtheory.claims import verdict

    assert (verdict(None), verdict(True), verdict(False)) == ("inconclusive", "pass", "fail")
    c = Claim("x", "1", ">= 0", "fail")
    assert c.failed and not Claim("x", "1", ">= 0", "pass").failed
    assert not Claim("x", "1", ">= 0", "inconclusive").failed and not Claim("x", "1", "", "reported").failed


def test_a_report_passes_on_a_pass_and_no_failure_never_on_reported_numbers_alone():
    from validation._report import Report

    def report(*verdicts):
        r = Report("r", "claim")
        r.claims.extend(Claim(f"c{k}", "1", "", v) for k, v in enumerate(verdicts))
        return r.passed

    assert report("pass") and report("pass", "reported") and report("pass", "inconclusive")
    assert not report("reported") and not report("inconclusive") and not report()
    assert not report("pass", "fail") and not report("reported", "fail")


def test_claims_are_immutable_and_keep_their_verdict_through_json():
    import dataclasses
    import json

    c = Claim("x", "1", ">= 0", "fail")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.verdict = "pass"
    back = Claim.from_dict(json.loads(json.dumps(c.to_dict())))  # verdict strings made anew by the decoder
    assert back.failed and back == c


def test_the_table_shows_a_claims_figure_and_a_dash_where_none():
    rows = markdown_table([Claim("a", "1", ">= 0", "pass", figure="Fig. 5"), Claim("b", "1", ">= 0", "pass")])
    lines = rows.splitlines()
    assert lines[2].endswith("| Fig. 5 |") and lines[3].endswith("| - |")
