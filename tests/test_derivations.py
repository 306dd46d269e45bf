import pytest
import sympy as sp

import derivations
from simtheory.symbolic import NUMERIC, SYMBOLIC, check_true, check_zero


@pytest.mark.parametrize("name", derivations.names())
def test_every_derivation_verifies(name):
    v = derivations.get(name).verify()
    assert v.passed, str(v)
    assert len(v.checks) >= 3


def test_registry_lists_the_required_results():
    assert {"one_layer_flow", "one_layer_gd", "symmetric", "untied"} <= set(derivations.names())
    with pytest.raises(ValueError, match="unknown derivation"):
        derivations.get("nope")


@pytest.mark.parametrize("name", derivations.names())
def test_latex_renders(name):
    tex = derivations.get(name).latex()
    assert tex and all(isinstance(s, str) and "=" in s for s in tex.values())


def test_check_zero_rejects_false_identities():
    x, y = sp.symbols("x y", positive=True)
    assert check_zero("true", (x + y) ** 2 - x**2 - 2 * x * y - y**2).method == SYMBOLIC
    assert not check_zero("false", (x + y) ** 2 - x**2 - y**2).passed
    assert not check_zero("false matrix", sp.Matrix([0, x - y])).passed


def test_check_zero_numeric_fallback_reports_itself():
    x = sp.Symbol("x", positive=True)
    # simplify disabled: the identity holds but is left to the numeric check
    c = check_zero("sin^2 + cos^2 = 1", sp.sin(x) ** 2 + sp.cos(x) ** 2 - 1, simplify=False)
    assert c.passed and c.method == NUMERIC and "random points" in c.detail
    bad = check_zero("sin^2 - cos^2 = 1", sp.sin(x) ** 2 - sp.cos(x) ** 2 - 1, simplify=False)
    assert not bad.passed and bad.method == NUMERIC


def test_check_true_needs_a_decided_claim():
    x = sp.Symbol("x", real=True)
    assert not check_true("undecidable", (x**3).is_positive).passed
    assert check_true("decided", (x**2 + 1).is_positive).passed


@pytest.mark.parametrize(
    "name, formula",
    [("symmetric", "logistic"), ("one_layer_flow", "entry"), ("one_layer_gd", "entry"), ("untied", "mode")],
)
def test_a_wrong_closed_form_fails_verification(name, formula):
    """Doubling the time in a closed form must break at least one of the derivation's checks."""
    deriv = derivations.get(name)
    good = deriv.formulas[formula]
    time = next(s for s in good.args if s.name in ("t", "k"))
    wrong = dict(deriv.formulas)
    wrong[formula] = type(good)(good.lhs, good.rhs.subs(time, 2 * time), args=good.args)
    assert all(c.passed for c in deriv.checks(deriv.formulas))
    assert not all(c.passed for c in deriv.checks(wrong))


def test_an_edited_derivation_is_picked_up_after_clear_caches(tmp_path, monkeypatch):
    """A notebook user edits a derivation file: ``simtheory.clear_caches()`` makes the next compiled formula
    the edited one (before it, the cached one is returned)."""
    import sys

    import simtheory as sim
    from simtheory import derivations

    source = """
import sympy as sp
from simtheory.symbolic import Derivation, Formula, check_zero
t = sp.Symbol("t", nonnegative=True)

class Edited(Derivation):
    name = "edited_for_test"
    def build(self):
        return {"f": Formula(sp.Symbol("f"), RATE * t, args=(t,))}
    def checks(self, f):
        return [check_zero("f(0) = 0", f["f"].rhs.subs(t, 0))]

DERIVATION = Edited()
"""
    pkg = tmp_path / "extra"
    pkg.mkdir()
    monkeypatch.setattr(derivations, "__path__", [*derivations.__path__, str(pkg)])
    monkeypatch.delitem(sys.modules, "simtheory.derivations.edited_for_test", raising=False)
    (pkg / "edited_for_test.py").write_text(source.replace("RATE", "2"))
    sim.clear_caches()
    try:
        assert sim.compiled("edited_for_test", "f")(t=3.0) == 6.0
        (pkg / "edited_for_test.py").write_text(source.replace("RATE", "5"))
        assert sim.compiled("edited_for_test", "f")(t=3.0) == 6.0  # cached until told
        sim.clear_caches()
        assert sim.compiled("edited_for_test", "f")(t=3.0) == 15.0
        assert derivations.get("edited_for_test").verify().passed
    finally:
        monkeypatch.undo()
        sys.modules.pop("simtheory.derivations.edited_for_test", None)
        sim.clear_caches()
    assert "edited_for_test" not in derivations.names()
