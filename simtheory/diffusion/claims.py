"""The paper's diffusion claims, decided from the per-delta seed means of
:func:`simtheory.diffusion.analysis.analyse` (thresholds: the constants of
:mod:`simtheory.diffusion.analysis`, fixed from their power before the decisive sweep was analysed).

Each claim is pass / fail / inconclusive with its numbers and what a trivial answer scores on it:

* (i) order: on each side of the predicted crossing the predicted concept is learned first by at least
  ``ORDER_SEEDS`` of the gated members (pooled over that side's deltas; a constant order fails one side);
  the seed-mean colour learning time falls as delta rises; the measured crossing is reported;
* (ii) swing-by where the theory predicts a clear one (``CLEAR``), marginal predictions reported;
* (iii) slowdown: exponential decay of the speed, better than a power law by ``LAW_MARGIN``;
* the SIM fit's rate ratio rises with delta; over-prompting is reported.
"""

from __future__ import annotations

import itertools

import numpy as np

from simtheory.claims import Claim, verdict
from simtheory.measures import spearman

from . import analysis as A


def permutation_rate(n: int, bound: float, below: bool) -> float:
    """Fraction of the orderings of n distinct values whose Spearman correlation with 1..n is <= bound
    (``below``) or >= bound: what a random order of the deltas would score."""
    if n < 2 or n > 8:
        return float("nan")
    x = np.arange(n)
    rhos = [
        1 - 6 * np.sum((x - np.array(p)) ** 2) / (n * (n * n - 1)) for p in itertools.permutations(range(n))
    ]
    return float(np.mean([(r <= bound + A.RANK_EPS) if below else (r >= bound - A.RANK_EPS) for r in rhos]))


def _side(entries, reading: str, concept: str) -> dict:
    """The pooled order count of the deltas predicting ``concept`` first."""
    firsts = [f for e in entries for f in e.firsts[reading]]
    agree = sum(f == concept for f in firsts)
    undecided = sum(f not in ("colour", "size") for f in firsts)
    need = int(np.ceil(A.ORDER_SEEDS * len(firsts) - 1e-9))
    ok = None if not firsts else True if agree >= need else None if agree + undecided >= need else False
    return {
        "deltas": [e.delta for e in entries],
        "agree": agree,
        "of": len(firsts),
        "undecided": undecided,
        "verdict": verdict(ok),
    }


def order_claim(per_delta, reading: str, where: str) -> Claim:
    scored = [e for e in per_delta if e.predicted_first in ("colour", "size") and e.gated]
    sides = {c: _side([e for e in scored if e.predicted_first == c], reading, c) for c in ("size", "colour")}
    present = [s for s in sides.values() if s["of"]]
    vs = [s["verdict"] for s in present]
    v = (
        "inconclusive"
        if len(present) < 2  # one side only: a constant order would pass
        else "fail"
        if "fail" in vs
        else "pass"
        if all(x == "pass" for x in vs)
        else "inconclusive"
    )
    measured = "; ".join(
        f"{c} predicted (delta {', '.join(f'{d:g}' for d in s['deltas'])}): {s['agree']}/{s['of']} first"
        + (f" ({s['undecided']} undecided)" if s["undecided"] else "")
        for c, s in sides.items()
        if s["deltas"]
    )
    return Claim(
        f"(i) learning order on the {where}: the concept with the larger pixel signal is learned first",
        measured or "no gated delta predicts an order",
        f">= {A.ORDER_SEEDS:.0%} of the gated members on each side of the predicted crossing (signals "
        f"differing by > {A.TIE:.0%})",
        v,
        "Fig. 6 (Park et al. Fig. 3-4)",
        "a constant order fails one side; with one side only the claim is inconclusive",
        {**sides, "per_delta": {f"{e.delta:g}": e.firsts[reading] for e in scored}},
    )


def trend_claim(per_delta, run_length: float) -> Claim:
    deltas = np.array([e.delta for e in per_delta])
    tc = np.array([e.times["heldout"]["colour"] for e in per_delta])
    ts = np.array([e.times["heldout"]["size"] for e in per_delta])
    rho = spearman(deltas, tc) if len(deltas) >= 3 else float("nan")
    return Claim(
        "(i) the seed-mean colour learning time (held-out prompt) falls as delta rises",
        f"Spearman {rho:.2f}; times {', '.join(f'{t:.0f}' for t in tc)} (censored at {run_length:.0f})",
        f"<= {A.ORDER_SPEARMAN}",
        verdict(None if not np.isfinite(rho) else bool(rho <= A.ORDER_SPEARMAN + A.RANK_EPS)),
        "Fig. 6 (Park et al. Fig. 4)",
        f"a random order of the deltas meets it with probability "
        f"{permutation_rate(len(deltas), A.ORDER_SPEARMAN, True):.2f}",
        {"deltas": deltas.tolist(), "time_colour": tc.tolist(), "time_size": ts.tolist()},
    )


def crossing_claim(per_delta, crossing: float) -> Claim:
    deltas = np.array([e.delta for e in per_delta])
    diff = np.array([e.times["heldout"]["colour"] - e.times["heldout"]["size"] for e in per_delta])
    flips = [i for i in range(len(diff) - 1) if np.sign(diff[i]) != np.sign(diff[i + 1]) and diff[i] != 0]
    measured = float("nan")
    if flips:
        i = flips[0]
        measured = float(deltas[i] + (deltas[i + 1] - deltas[i]) * diff[i] / (diff[i] - diff[i + 1]))
    return Claim(
        "(i) the delta at which colour and size are learned at the same time (held-out, seed means)",
        f"{measured:.3g}" if flips else "no crossing among the deltas run",
        f"reported next to the pixel-RMS prediction {crossing:.3g}",
        "reported",
        "Fig. 6",
        details={"measured": measured, "predicted": crossing},
    )


def swing_claim(per_delta) -> Claim:
    def swings(e):
        return e.gated and e.n_competent >= 2 and e.swing.significant and e.swing.near_stronger_corner

    scored = [e for e in per_delta if e.swing_scoring == "clear"]
    outcomes = [swings(e) if e.gated and e.n_competent >= 2 else None for e in scored]
    ok = False if False in outcomes else None if None in outcomes or not outcomes else True
    rest = [e for e in per_delta if e.swing_scoring == "none"]
    details = {
        f"{e.delta:g}": {
            "rise": e.swing.rise,
            "se": e.swing.se,
            "significant": e.swing.significant,
            "near_stronger_corner": e.swing.near_stronger_corner,
            "scoring": e.swing_scoring,
            "gated_seeds": e.n_competent,
        }
        for e in per_delta
    }
    return Claim(
        "(ii) swing-by: after the first steps, the seed-mean concept-space MSE rises again where the theory "
        "predicts a clear one (a_strong > 9 a_weak), nearest the stronger concept's training corner at the "
        "peak",
        "; ".join(
            f"delta {d}: rise {r['rise']:.3f} +- {r['se']:.3f} ({r['scoring']}"
            f"{', near the stronger corner' if r['near_stronger_corner'] else ''})"
            for d, r in details.items()
        ),
        f"rise >= {A.SWING_RISE} and >= {A.SWING_SE:g} s.e. after {A.CUT:.0%} of the run, at every clear "
        "delta (>= 2 gated seeds)",
        verdict(ok),
        "Fig. 6b",
        "marginal predictions are reported, not scored; deltas without a predicted swing-by that show one: "
        f"{sum(e.swing.significant and e.swing.near_stronger_corner for e in rest)}/{len(rest)}",
        details,
    )


def slowdown_claim(per_delta) -> Claim:
    laws = [e.decay.law for e in per_delta]
    n_exp = laws.count("exponential")
    n_against = sum(x in ("power law", "no decay") for x in laws)
    v = (
        "pass"
        if n_exp >= A.DECAY_DELTAS
        else "fail"
        if len(laws) - n_against < A.DECAY_DELTAS
        else "inconclusive"
    )
    if len(per_delta) < A.DECAY_DELTAS:
        v = "inconclusive"
    return Claim(
        "(iii) slowdown: the seed-mean speed |dC/dt| decays exponentially after the last turning point, "
        "better than a power law",
        "; ".join(
            f"delta {e.delta:g}: {e.decay.law} (exp. rate {e.decay.rate_per_1k:.2f}/1k, "
            f"R^2 {e.decay.r2:.2f}; power R^2 {e.decay.power_r2:.2f}; {e.decay.n_points} points)"
            for e in per_delta
        ),
        f"exponential (R^2 >= {A.DECAY_R2}, >= {A.LAW_MARGIN} above the power law's, >= {A.DECAY_POINTS} "
        f"points) at >= {A.DECAY_DELTAS} deltas; within the margin: indistinguishable",
        v,
        "Fig. 6c",
        "a power-law approach is the alternative (fitted to the same window)",
        {f"{e.delta:g}": vars(e.decay) for e in per_delta},
    )


def sim_claim(per_delta) -> Claim | None:
    if len(per_delta) < 3 or any(e.sim is None for e in per_delta):
        return None
    deltas = np.array([e.delta for e in per_delta])
    ratios = np.array([e.sim["ratio"] for e in per_delta])
    rho = spearman(deltas, ratios)
    return Claim(
        "SIM fit to the seed-mean trajectory: a_colour / a_size rises with delta",
        f"Spearman {rho:.2f}; ratios {', '.join(f'{r:.3g}' for r in ratios)}; "
        f"RMS residual {np.median([e.sim['rms'] for e in per_delta]):.3f} (median)",
        f">= {A.SIM_SPEARMAN}",
        verdict(None if not np.isfinite(rho) else bool(rho >= A.SIM_SPEARMAN - A.RANK_EPS)),
        "Fig. 6",
        "a random order meets it with probability "
        f"{permutation_rate(len(deltas), A.SIM_SPEARMAN, False):.2f}",
        {"deltas": deltas.tolist(), "ratios": ratios.tolist()},
    )


def over_prompt_claim(per_delta) -> Claim | None:
    over = [e for e in per_delta if e.over_prompt is not None]
    if not over:
        return None

    def one(e):
        o = e.over_prompt
        best = f"{o['best_time']:.0f}{' (censored)' if o['best_censored'] else ''}"
        plain = f"{o['plain_time']:.0f}{' (censored)' if o['plain_censored'] else ''}"
        return f"delta {e.delta:g}: best {best} vs plain {plain}, mean gain {o['mean_gain']:+.2f}"

    return Claim(
        "over-prompting (hidden capabilities): best of the exaggerated blues composes the OOD class "
        "before the plain prompt",
        "; ".join(map(one, over)),
        "reported (steps to a smoothed P(blue) P(small) > 0.5 for 3 checkpoints)",
        "reported",
        "Park et al. (hidden capabilities)",
        "",
        {f"{e.delta:g}": e.over_prompt for e in over},
    )


def claims(per_delta, crossing: float, run_length: float) -> list[Claim]:
    """Every claim from the per-delta results (:class:`~simtheory.diffusion.analysis.DeltaResult`)."""
    out = [
        order_claim(per_delta, "heldout", "held-out prompt"),
        order_claim(per_delta, "training", "training prompts"),
        trend_claim(per_delta, run_length),
        crossing_claim(per_delta, crossing),
        swing_claim(per_delta),
        slowdown_claim(per_delta),
    ]
    return out + [c for c in (sim_claim(per_delta), over_prompt_claim(per_delta)) if c is not None]
