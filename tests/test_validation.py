"""The quick, seeded versions of every validation module must pass (the full ones are marked slow)."""

import importlib

import pytest

import validation


@pytest.mark.parametrize("name", validation.MODULES)
def test_quick_validation_passes(name, tmp_path):
    module = importlib.import_module(f"validation.{name}")
    report = module.run(quick=True, out=tmp_path)
    assert report.passed, str(report)
    assert report.claims
    assert report.figures and set(report.figures) == set(report.captions)  # every figure states its agreement
    assert_claims_discriminate(report)


def assert_claims_discriminate(report):
    """Every claim states what trivial or wrong answers score, and none of them meets its threshold."""
    for c in report.claims:
        assert c.base_rate or c.alternatives, f"{report.name}: {c.name!r} has no base rate"
        assert not c.also_met_by, f"{report.name}: {c.name!r} is also met by {c.also_met_by}"
        assert c.verdict in ("pass", "reported"), f"{report.name}: {c.name!r} is {c.verdict}"


@pytest.mark.slow
@pytest.mark.parametrize("name", validation.MODULES)
def test_full_validation_passes(name, tmp_path):
    module = importlib.import_module(f"validation.{name}")
    report = module.run(quick=False, out=tmp_path)
    assert report.passed, str(report)
    assert_claims_discriminate(report)


def test_cli_runner_exit_code(capsys):
    from validation import linear
    from validation._report import main

    assert main(linear.run, []) == 0
    assert "linear: PASS" in capsys.readouterr().out
