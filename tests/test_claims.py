"""The claim record: a check that a trivial or wrong answer passes is never reported as a pass."""

import math

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
