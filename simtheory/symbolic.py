"""The symbolic toolkit that every module in ``derivations/`` builds on.

A derivation is a subclass of :class:`Derivation`. It builds its SymPy expressions from the
model and the loss in :meth:`Derivation.build`, states its assumptions, and checks itself in
:meth:`Derivation.checks`. Each check is a claim ``expr == 0``; :func:`check_zero` first
tries to prove it symbolically (``expand``, ``cancel``, ``simplify``: cheapest first) and only when
SymPy cannot, falls back to evaluating the expression at random points with 40-digit arithmetic, and
says so.

SymPy is imported by this module, so import it lazily from code that must start fast.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field

import sympy as sp

SYMBOLIC = "symbolic"
NUMERIC = "numeric"


@dataclass(frozen=True)
class Check:
    """One verified (or failed) claim of a derivation."""

    name: str
    passed: bool
    method: str  # SYMBOLIC or NUMERIC
    detail: str = ""


@dataclass(frozen=True)
class Verification:
    """The result of :meth:`Derivation.verify`."""

    derivation: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def status(self) -> str:
        if not self.passed:
            failed = [c.name for c in self.checks if not c.passed]
            return "FAILED: " + ", ".join(failed) if failed else "FAILED: no checks"
        n_num = sum(c.method == NUMERIC for c in self.checks)
        if n_num == 0:
            return f"verified ({len(self.checks)} symbolic checks)"
        return f"verified ({len(self.checks) - n_num} symbolic, {n_num} numeric at random points)"

    def __str__(self) -> str:
        lines = [f"{self.derivation}: {self.status}"]
        for c in self.checks:
            mark = "ok " if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.name} ({c.method}){': ' + c.detail if c.detail else ''}")
        return "\n".join(lines)


def _sample_value(sym: sp.Symbol, rng: random.Random) -> sp.Expr:
    """A random rational value respecting the symbol's assumptions."""
    if sym.is_integer:
        lo = 0 if sym.is_nonnegative else -5
        return sp.Integer(rng.randint(max(lo, 1 if sym.is_positive else lo), 7))
    if sym.is_positive:
        return sp.Rational(rng.randint(1, 10**6), 10**5) + sp.Rational(1, 10**3)
    if sym.is_nonnegative:
        return sp.Rational(rng.randint(0, 10**6), 10**5)
    return sp.Rational(rng.randint(-(10**6), 10**6), 10**5)


def _proved_zero(e, simplify: bool):
    """``(residual, how)``: the entry reduced by the cheapest means that proves it zero (``expand``, then
    ``cancel(together(.))`` for rational and exponential expressions, then ``simplify``), or what is left."""
    r = sp.expand(e)
    if r == 0:
        return 0, "expand"
    r2 = sp.cancel(sp.together(e))
    if r2 == 0:
        return 0, "cancel"
    if simplify:
        r = sp.simplify(r)
        if r == 0:
            return 0, "simplify"
    return r, ""


def _magnitude(x) -> float:
    return abs(complex(sp.N(x, 20)))


def check_zero(
    name: str,
    expr,
    *,
    points: int = 12,
    seed: int = 0,
    simplify: bool = True,
    constraint=None,
) -> Check:
    """Check that ``expr`` (a scalar or a Matrix) is identically zero; never raises.

    Symbolic first, cheapest proof first (``expand``; ``cancel(together(.))``; then, optionally,
    ``simplify``) on every entry. When an entry does not reduce to 0 symbolically, evaluate it at
    ``points`` random points (40 digits; values drawn from each symbol's assumptions, optionally filtered
    by ``constraint``, a callable ``subs -> bool``) and pass if every value is below ``1e-25`` relative
    to the entry's scale. The method used and the time taken are recorded in the returned
    :class:`Check`; a failure names the residual and the point where it is largest, and an expression
    that cannot be evaluated (a complex value, a division by zero, an exception inside SymPy) is a
    failed check, not an exception.
    """
    start = time.perf_counter()
    try:
        check = _check_zero(name, expr, points, seed, simplify, constraint)
    except Exception as exc:  # a wrong expression must fail its check, not abort the verification
        check = Check(name, False, NUMERIC, f"could not be evaluated ({type(exc).__name__}: {exc})")
    took = time.perf_counter() - start
    detail = f"{check.detail}; " if check.detail else ""
    return Check(check.name, check.passed, check.method, f"{detail}{took:.2f} s")


def _check_zero(name, expr, points, seed, simplify, constraint) -> Check:
    entries = list(expr) if isinstance(expr, sp.MatrixBase) else [sp.sympify(expr)]
    residual = []
    for e in entries:
        r, _ = _proved_zero(e, simplify)
        if r != 0:
            residual.append(r)
    if not residual:
        return Check(name, True, SYMBOLIC)
    rng = random.Random(seed)
    worst, where, worst_expr = 0.0, None, None
    for e in residual:
        syms = sorted(e.free_symbols, key=lambda s: s.name)
        done = 0
        tries = 0
        while done < points and tries < 50 * points:
            tries += 1
            subs = {s: _sample_value(s, rng) for s in syms}
            if constraint is not None and not constraint(subs):
                continue
            val = sp.N(e.subs(subs), 40)
            if not val.is_number or val.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
                return Check(
                    name, False, NUMERIC, f"residual {_short(e)} is not a finite number at {subs}: {val}"
                )
            scale = max(
                1.0, max((_magnitude(a.subs(subs)) for a in sp.Add.make_args(sp.expand(e))), default=1.0)
            )
            rel = abs(complex(val)) / scale
            if rel > worst or where is None:
                worst, where, worst_expr = max(worst, rel), subs, e
            done += 1
        if done < points:
            return Check(name, False, NUMERIC, f"only {done} admissible random points found")
    if worst < 1e-25:
        return Check(
            name, True, NUMERIC, f"{points} random points per entry, max relative residual {worst:.1e}"
        )
    return Check(
        name,
        False,
        NUMERIC,
        f"max relative residual {worst:.1e} at {where}; residual {_short(worst_expr)}",
    )


def _short(e, n: int = 200) -> str:
    text = str(e)
    return text if len(text) <= n else text[: n - 3] + "..."


def check_true(name: str, claim, detail: str = "") -> Check:
    """A symbolic claim that SymPy decides directly (e.g. an inequality under assumptions)."""
    ok = bool(claim is True or claim == sp.true)
    return Check(name, ok, SYMBOLIC, detail if ok else f"{detail} (SymPy could not decide: {claim})")


@dataclass(frozen=True)
class Formula:
    """A named closed form: ``lhs = rhs``, with the symbols a compiled predictor takes by name."""

    lhs: object
    rhs: object
    args: tuple = field(default=())
    description: str = ""

    def latex(self) -> str:
        return sp.latex(sp.Eq(self.lhs, self.rhs, evaluate=False))


class Derivation:
    """Base class for one result of the theory. Subclasses live in ``derivations/``.

    Subclasses set ``name``, ``title``, ``reference`` and ``assumptions`` and implement
    :meth:`build` (returning named :class:`Formula` objects, built from the model and the
    loss) and :meth:`checks` (returning :class:`Check` objects).
    """

    name: str = ""
    title: str = ""
    reference: str = ""
    assumptions: tuple[str, ...] = ()

    def build(self) -> dict[str, Formula]:  # pragma: no cover - abstract
        raise NotImplementedError

    def checks(self, f: dict[str, Formula]) -> list[Check]:  # pragma: no cover - abstract
        raise NotImplementedError

    @functools.cached_property
    def formulas(self) -> dict[str, Formula]:
        return self.build()

    def latex(self) -> dict[str, str]:
        """LaTeX of every formula, keyed by formula name."""
        return {k: f.latex() for k, f in self.formulas.items()}

    def verify(self) -> Verification:
        """Run every check (symbolic where SymPy can, numeric at random points otherwise).

        Never raises for a wrong expression: a check that cannot be evaluated is a failed check, and a
        derivation whose formulas or checks raise while being built is reported as one failed check."""
        try:
            checks = tuple(self.checks(self.formulas))
        except Exception as exc:  # e.g. a substituted formula that breaks a later step of the derivation
            checks = (Check("building the checks", False, NUMERIC, f"{type(exc).__name__}: {_short(exc)}"),)
        return Verification(self.name, checks)


# -- shared model builders -----------------------------------------------------------------


def diag_symbols(prefix: str, d: int, **assumptions) -> list[sp.Symbol]:
    return [sp.Symbol(f"{prefix}_{i + 1}", **assumptions) for i in range(d)]


def matrix_symbols(prefix: str, rows: int, cols: int, *, symmetric: bool = False) -> sp.Matrix:
    def entry(i, j):
        if symmetric and i > j:
            i, j = j, i
        return sp.Symbol(f"{prefix}_{i + 1}{j + 1}", real=True)

    return sp.Matrix(rows, cols, entry)


def identity_loss(W: sp.Matrix, A: sp.Matrix) -> sp.Expr:
    """``L = 1/2 tr((W - I) A (W - I)^T)``: the SIM loss of an input-linear model f(x) = W x."""
    E = W - sp.eye(W.shape[0])
    return sp.Rational(1, 2) * (E * A * E.T).trace()


def gradient(L: sp.Expr, M: sp.Matrix) -> sp.Matrix:
    """Matrix of partial derivatives ``dL/dM_ij`` (M a matrix of independent symbols)."""
    return M.applyfunc(lambda m: sp.diff(L, m))


def descent(loss_of, *params: sp.Matrix) -> tuple[sp.Matrix, ...]:
    """``-dL/dP`` for every parameter matrix, derived by differentiation and evaluated at ``params``.

    ``loss_of`` takes one matrix of fresh symbols per parameter (same shapes) and returns the scalar
    loss; the gradients are taken with respect to those symbols and then evaluated at the given
    (possibly non-symbol) ``params``, so the vector field is derived, never typed in.
    """
    Zs = [matrix_symbols(f"z{k}", *P.shape) for k, P in enumerate(params)]
    L = loss_of(*Zs)
    values = {}
    for Z, P in zip(Zs, params):
        values.update(zip(list(Z), list(P)))
    return tuple((-gradient(L, Z)).subs(values, simultaneous=True) for Z in Zs)


def check_rotation_covariance(name: str, field) -> Check:
    """Check ``Q^T F(W, A) Q = F(Q^T W Q, Q^T A Q)`` for a 2 x 2 rotation Q, generic W and
    symmetric A: then a closed form for diagonal A holds for any symmetric A in its eigenbasis."""
    th = sp.Symbol("theta", real=True)
    Q = sp.Matrix([[sp.cos(th), -sp.sin(th)], [sp.sin(th), sp.cos(th)]])
    W, A = matrix_symbols("w", 2, 2), matrix_symbols("A", 2, 2, symmetric=True)
    return check_zero(name, (Q.T * field(W, A) * Q - field(Q.T * W * Q, Q.T * A * Q)).applyfunc(sp.trigsimp))


def at(expr, params: sp.Matrix, values: sp.Matrix):
    """Evaluate an expression derived with symbolic ``params`` at other (possibly non-symbol) ``values``."""
    if params.shape != values.shape:
        raise ValueError(f"shape mismatch: {params.shape} vs {values.shape}")
    return expr.subs(dict(zip(list(params), list(values))), simultaneous=True)


def _parameter_values(free, params) -> dict:
    """``{symbol: value}`` for each free symbol of a field, from ``params`` by name (all of them, no more)."""
    params = dict(params or {})
    missing = sorted(s.name for s in free if s.name not in params)
    extra = sorted(set(params) - {s.name for s in free})
    if missing or extra:
        raise ValueError(
            f"params must give every parameter of the field by name: missing {missing}, unexpected {extra}"
        )
    return {s: float(params[s.name]) for s in free}


def numeric_field(flow, d: int, *, params: dict | None = None):
    """A derivation's matrix vector field ``flow(W, A) -> dW/dt`` (SymPy) as a batched NumPy function.

    ``flow`` takes a d x d SymPy matrix W and a symmetric d x d matrix A (as the derivations' ``flow``
    functions do, e.g. ``derivations.one_layer_weight_decay.flow``); every other symbol of the field is a
    parameter whose value ``params`` gives by name (``{"lambda": 0.3}``). Returns ``field(W, A)`` for arrays
    (B, d, d) -> (B, d, d), compiled once with ``lambdify`` (common subexpressions eliminated), for
    :func:`simtheory.theory.field_flow`.
    """
    import numpy as np

    W = matrix_symbols("w", d, d)
    A = matrix_symbols("A", d, d, symmetric=True)
    rhs = sp.Matrix(flow(W, A))
    if rhs.shape != (d, d):
        raise ValueError(f"flow must return a {d} x {d} matrix, got shape {rhs.shape}")
    index = [(i, j) for i in range(d) for j in range(i, d)]  # the upper triangle of the symmetric A
    a_syms = [A[i, j] for i, j in index]
    free = rhs.free_symbols - set(W) - set(a_syms)
    values = _parameter_values(free, params)
    fn = sp.lambdify([list(W), a_syms], list(rhs.subs(values)), modules="numpy", cse=True)

    def field(Wb: np.ndarray, Ab: np.ndarray) -> np.ndarray:
        B = Wb.shape[0]
        out = fn(list(Wb.reshape(B, d * d).T), [Ab[:, i, j] for i, j in index])
        return np.stack([np.broadcast_to(o, (B,)) for o in out], axis=-1).reshape(B, d, d)

    return field


def numeric_parameter_field(field, shapes, d: int, *, params: dict | None = None):
    """A flow of a model's parameters (SymPy) as a batched NumPy function, for
    :func:`simtheory.theory.parameter_flow`.

    ``field(P, A)`` takes one SymPy matrix of symbols per parameter (of ``shapes``, first layer first) and a
    symmetric d x d matrix A, and returns the list of their time derivatives (typically :func:`descent` of
    the loss on the parameters: derived, not typed in); every other symbol is a parameter whose value
    ``params`` gives by name. Returns ``f(params, A)``: the list of arrays (B, *shape) and A (B, d, d) to
    the list of derivatives (B, *shape), compiled once with ``lambdify`` (common subexpressions eliminated);
    its ``shapes`` attribute holds the parameter shapes.
    """
    import numpy as np

    shapes = [tuple(int(n) for n in sh) for sh in shapes]
    Ps = [matrix_symbols(f"p{k}_", *sh) for k, sh in enumerate(shapes)]
    A = matrix_symbols("A", d, d, symmetric=True)
    rhs = [sp.Matrix(x) for x in field(Ps, A)]
    if [r.shape for r in rhs] != shapes:
        raise ValueError(
            f"field must return one matrix per parameter of shapes {shapes}, got {[r.shape for r in rhs]}"
        )
    index = [(i, j) for i in range(d) for j in range(i, d)]
    a_syms = [A[i, j] for i, j in index]
    p_syms = [s for P in Ps for s in P]
    free = set().union(*(r.free_symbols for r in rhs)) - set(p_syms) - set(a_syms)
    values = _parameter_values(free, params)
    flat = [e.subs(values) for r in rhs for e in r]
    fn = sp.lambdify([p_syms, a_syms], flat, modules="numpy", cse=True)
    sizes = [int(np.prod(sh)) for sh in shapes]

    def f(ps, Ab):
        B = Ab.shape[0]
        cols = [c for p, n in zip(ps, sizes) for c in np.asarray(p, dtype=np.float64).reshape(B, n).T]
        out = [np.broadcast_to(o, (B,)) for o in fn(cols, [Ab[:, i, j] for i, j in index])]
        parts = np.split(np.stack(out, axis=-1), np.cumsum(sizes)[:-1], axis=-1)
        return [part.reshape(B, *sh) for part, sh in zip(parts, shapes)]

    f.shapes = shapes  # the parameter shapes: parameter_flow tells a batch axis from them
    return f
