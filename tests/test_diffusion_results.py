"""The README's diffusion verdicts are what the committed records of the decisive CPU sweep give.

``validation/results/diffusion_cpu_sweep/seed*`` hold the finished runs' records (probe outputs per
checkpoint and generation, no weights). The README's table of verdicts is parsed and held against
:func:`simtheory.diffusion.analysis.analyse` on those records, so the README cannot drift from the code or
the data; the power column is held against a fresh simulation (slow)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from simtheory.diffusion import analysis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "validation" / "results" / "diffusion_cpu_sweep"
MARKER = "<!-- diffusion-verdicts"


def readme_table() -> list[dict]:
    """The rows of the README's verdict table: claim, verdict, power, false positives (percent)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MARKER))
    rows = []
    for line in lines[start + 3 :]:  # the marker, the header, the rule
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        percent = [re.match(r"(\d+(?:\.\d+)?)%", c) for c in cells[2:4]]
        rows.append(
            {
                "claim": cells[0],
                "verdict": cells[1].strip("*"),
                "power": float(percent[0].group(1)) if percent[0] else None,
                "false_positive": float(percent[1].group(1)) if percent[1] else None,
            }
        )
    return rows


@pytest.fixture(scope="module")
def committed():
    dirs = sorted(RESULTS.glob("seed*"))
    assert [d.name for d in dirs] == [f"seed{k}" for k in range(5)], "the committed sweep has five seeds"
    rec = analysis.merge(analysis.load(d) for d in dirs)
    return rec, analysis.analyse(rec)


def test_the_committed_records_are_the_decisive_sweep(committed):
    from validation.diffusion import sweep_config

    rec, _ = committed
    cfg = sweep_config()
    assert sorted(set(rec.config.deltas)) == list(cfg.deltas) and sorted(set(rec.config.seeds)) == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert np.array_equal(rec.steps, cfg.checkpoints()) and rec.steps[-1] == cfg.steps
    assert rec.probs.shape[-2] == cfg.n_generate  # generations per prompt


def test_the_readme_verdicts_are_the_committed_records_verdicts(committed):
    _, result = committed
    got = {c.name.split(":")[0]: c.verdict for c in result.claims}
    rows = readme_table()
    assert len(rows) >= 5
    for row in rows:
        assert row["claim"] in got, f"README claim {row['claim']!r} is not one the analysis makes"
        assert got[row["claim"]] == row["verdict"], row["claim"]


def test_the_readme_competence_gate_count_is_the_committed_records(committed):
    rec, result = committed
    gate = analysis.gate_summary(result.members, result.run_length)
    text = (ROOT / "README.md").read_text()
    found = re.search(r"competence gate: (\d+) of (\d+) runs", text)
    assert found, "the README states how many runs passed the competence gate"
    assert (int(found.group(1)), int(found.group(2))) == (gate["passed"], gate["of"])


@pytest.mark.slow
def test_the_readme_power_column_is_the_simulated_power():
    """``python -m validation.diffusion --power`` (200 synthetic sweeps per effect, seeded) gives the
    README's power and false-positive columns (about 40 s)."""
    from simtheory.diffusion import power
    from validation.diffusion import sweep_config

    table = {(p.claim, p.null): p for p in power.power_table(sweep_config(), 200)}
    rows = [r for r in readme_table() if r["power"] is not None]
    assert rows
    for row in rows:
        match = [p for (claim, _), p in table.items() if claim == row["claim"]]
        assert match, row["claim"]
        assert 100 * match[0].power == pytest.approx(row["power"], abs=0.05), row["claim"]
        assert 100 * match[0].false_positive == pytest.approx(row["false_positive"], abs=0.05), row["claim"]
