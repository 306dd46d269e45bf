import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import simtheory as sim
from simtheory.cli import main
from simtheory.export import command_name, derivations_tex


@pytest.fixture
def run_dir(tmp_path):
    task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
    W0 = sim.symmetric_init(np.random.default_rng(2).random((3, 3)) / 5)
    c = sim.predict(task, W0, np.linspace(0, 5, 11), convention="paper-code")
    c.to_npz(tmp_path / "curves" / "fig5.npz")
    return tmp_path, c


def test_export_writes_tidy_csv_dat_and_tex(run_dir, capsys):
    path, c = run_dir
    assert main(["export", str(path)]) == 0
    out = path / "export"
    rows = list(csv.DictReader((out / "fig5_tidy.csv").open()))
    d = c.task.d
    assert len(rows) == c.times.size * (2 + d + d * d)
    ood = [r for r in rows if r["quantity"] == "ood_loss"]
    np.testing.assert_array_equal([float(r["value"]) for r in ood], c.ood_loss)
    lines = (out / "fig5.dat").read_text().splitlines()
    header = lines[0].split()
    assert header[:3] == ["t", "train_loss", "ood_loss"] and len(lines) == c.times.size + 1
    table = np.array([[float(x) for x in line.split()] for line in lines[1:]])
    np.testing.assert_array_equal(table[:, header.index("w_12")], c.W[:, 0, 1])
    assert (out / "derivations.tex").exists()
    for width in ("one-column", "two-column"):
        pdf = out / f"fig5_{width}.pdf"
        assert pdf.read_bytes()[:4] == b"%PDF"


def test_dat_suffixes_columns_for_batches(tmp_path):
    task = sim.SIMTask([1.0, 2.0], 0.1)
    c = sim.predict(task, np.stack([np.diag([0.01, 0.02]), np.diag([0.1, 0.2])]), [0.0, 1.0])
    header = c.to_dat(tmp_path / "b.dat").read_text().splitlines()[0].split()
    assert "ood_loss_s0" in header and "ood_loss_s1" in header


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_tex_commands_are_valid_and_unique():
    from simtheory import derivations
    from simtheory.export import user_derivations

    tex = derivations_tex()
    names = re.findall(r"\\newcommand\{\\([^}]*)\}", tex)
    n_formulas = sum(len(d.formulas) for d in [*derivations.all_derivations(), *user_derivations()])
    assert len(names) == len(set(names)) == n_formulas  # one command per closed form, no clashes
    assert all(re.fullmatch(r"[A-Za-z]+", n) for n in names)
    for line in tex.splitlines():
        if line.startswith("\\newcommand"):
            assert _balanced(line), line
    assert command_name("one_layer_gd", "flow_gap") == "SimOneLayerGdFlowGap"


@pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="no LaTeX engine installed (parse-checked above)"
)
def test_tex_compiles(tmp_path):
    names = re.findall(r"\\newcommand\{\\([^}]*)\}", derivations_tex())
    (tmp_path / "derivations.tex").write_text(derivations_tex())
    body = "\n".join(f"\\[ \\{n} \\]" for n in names)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage{amsmath,amssymb}\\input{derivations.tex}"
        f"\\begin{{document}}{body}\\end{{document}}"
    )
    subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )


def test_export_bad_run_dir(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "run_dir must be an existing directory" in capsys.readouterr().err


def test_paper_figure_sizes(tmp_path):
    import matplotlib.image as mpimg

    from simtheory import plotting

    c = sim.predict(sim.SIMTask([1.0, 2.0], 0.1), np.diag([0.01, 0.02]), np.linspace(0, 5, 11))
    png = plotting.paper_figure(c, tmp_path / "f", width="two-column")[0]
    height, width_px = mpimg.imread(png).shape[:2]
    assert width_px / 150 == pytest.approx(6.75, rel=0.05)  # saved at 150 dpi
    with pytest.raises(ValueError, match="width must be one of"):
        plotting.paper_figure(c, tmp_path / "g", width="poster")


def _has_pgfplots() -> bool:
    if shutil.which("kpsewhich") is None or shutil.which("pdflatex") is None:
        return False
    return bool(subprocess.run(["kpsewhich", "pgfplots.sty"], capture_output=True, text=True).stdout.strip())


@pytest.mark.skipif(not _has_pgfplots(), reason="pdflatex with pgfplots not installed")
def test_exported_files_go_into_a_paper_as_is(run_dir):
    """A document that \\input s derivations.tex, plots the .dat with pgfplots and includes the PDF figure."""
    path, _ = run_dir
    assert main(["export", str(path)]) == 0
    out = path / "export"
    (out / "paper.tex").write_text(
        "\\documentclass{article}\\usepackage{amsmath,amssymb,graphicx,pgfplots}\\pgfplotsset{compat=1.16}"
        "\\input{derivations.tex}\\begin{document}"
        "\\[ \\SimSymmetricLogistic \\]"
        "\\begin{tikzpicture}\\begin{semilogxaxis}\\addplot table[x=t, y=ood_loss] {fig5.dat};"
        "\\end{semilogxaxis}\\end{tikzpicture}"
        "\\includegraphics{fig5_one-column.pdf}\\end{document}"
    )
    subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=out,
        check=True,
        capture_output=True,
    )
    assert (out / "paper.pdf").stat().st_size > 1000


def test_a_users_model_formulas_go_into_derivations_tex(tmp_path, monkeypatch):
    """``simtheory export --model-module M``: the derivations of the models M registers are exported beside
    the package's (a user's Derivation object, not a packaged one)."""
    import sys

    import simtheory as sim
    from simtheory.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    sys.modules.pop("user_models", None)
    c = sim.predict(sim.SIMTask([1.0, 2.0], 0.05, d=3), 0.01 * np.eye(3), np.linspace(0, 1, 5))
    c.to_npz(tmp_path / "run" / "c.npz")
    assert (
        main(["export", str(tmp_path / "run"), "--model-module", "user_models", "--out", str(tmp_path / "x")])
        == 0
    )
    tex = (tmp_path / "x" / "derivations.tex").read_text()
    assert "% --- symmetric_weight_decay:" in tex and "SimSymmetricWeightDecay" in tex
