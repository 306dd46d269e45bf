import re
import subprocess
import sys

import numpy as np
import pytest

from simtheory.cli import main


def test_derive_one(capsys):
    assert main(["derive", "untied"]) == 0
    out = capsys.readouterr().out
    assert "untied: verified" in out and "[mode]" in out


def test_derive_unknown_is_a_clear_error(capsys):
    assert main(["derive", "nope"]) == 2
    assert "unknown derivation 'nope'" in capsys.readouterr().err


def test_predict_writes_csv_and_npz(tmp_path, capsys):
    out = tmp_path / "c.csv"
    assert (
        main(
            [
                "predict",
                "--mu",
                "1",
                "1.5",
                "--d",
                "3",
                "--convention",
                "paper-code",
                "--seed",
                "2",
                "--t-max",
                "60",
                "--log-times",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.exists() and "swing-by" in capsys.readouterr().out
    assert (
        main(
            [
                "predict",
                "--mu",
                "1",
                "2",
                "--model",
                "untied",
                "--init",
                "diag",
                "--init-scale",
                "0.1",
                "--out",
                str(tmp_path / "u.npz"),
            ]
        )
        == 0
    )
    assert (tmp_path / "u.json").exists()


def test_predict_bad_input(tmp_path, capsys):
    assert main(["predict", "--mu", "1", "-2", "--out", str(tmp_path / "x.csv")]) == 2
    assert "mu must be > 0" in capsys.readouterr().err
    np.save(tmp_path / "w.npy", -np.eye(2))
    assert (
        main(
            [
                "predict",
                "--mu",
                "1",
                "2",
                "--init-file",
                str(tmp_path / "w.npy"),
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    assert "positive semi-definite" in capsys.readouterr().err


def test_reproduce_small(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "reproduce",
                "--out",
                str(out),
                "--n-seeds",
                "4",
                "--n-agreement",
                "4",
                "--no-verify",
                "--no-gd",
                "--quiet",
            ]
        )
        == 0
    )
    report = (out / "report.md").read_text()
    for heading in (
        "Figure 5 analogue",
        "Triple and quadruple descent",
        "Learning order",
        "Predicting the swing-by",
        "A sharp criterion from closed forms",
        "Error of the closed forms against the flow",
    ):
        assert heading in report
    assert (out / "figures" / "phase_ratio.png").exists() and (out / "figures" / "phase_d.csv").exists()
    assert "What the published-code convention changes" in report
    assert (out / "figures" / "figure5_conventions.png").stat().st_size > 1000
    assert (out / "figures" / "figure5_conventions.pdf").exists()
    assert (out / "curves" / "figure5_paper-code.csv").exists()
    assert (out / "summary.json").exists()


def test_import_is_lazy():
    code = (
        "import sys, simtheory; heavy = [m for m in ('sympy', 'torch', 'scipy', 'matplotlib') if m in "
        "sys.modules];"
        "print(heavy); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_gd_section_embeds_validation_tables(tmp_path, monkeypatch):
    import validation
    from validation.report import Config, _Report, _section_gd

    monkeypatch.setattr(validation, "MODULES", ("linear",))
    r = _Report(Config(out=tmp_path, verify=False))
    _section_gd(r)
    text = "\n".join(r.lines)
    assert "### `validation.linear`: PASS" in text
    assert "max \\|W_GD" in text  # pipes escaped inside the table
    assert (tmp_path / "figures" / "linear_convergence.png").exists()
    assert r.summary["validation"]["linear"]["passed"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--init-file", "{tmp}/missing.npy"], "--init-file .*no such file"),
        (["--init-file", "{tmp}/text.npy"], "--init-file .*not a .npy"),
        (["--t-max", "inf"], "--t-max must be a finite number"),
        (["--t-max", "nan"], "--t-max must be a finite number"),
        (["--n-times", "1000000000"], "--n-times must be in"),
        (["--layers", "1", "--model", "deep"], "--layers must be in"),
        (["--init-scale", "-1"], "--init-scale must be"),
        (["--seed", "-3"], "--seed must be"),
        (["--out", "{tmp}"], "is a directory"),
        (["--out", "{tmp}/x.txt"], "--out must end in .csv or .npz"),
        (["--sigma", "1e300"], "too large"),
        (["--model", "foo"], "--model: model must be one of .*--model-module MODULE"),
        (["--init-file", "{tmp}/objects.npy"], "--init-file .*pickled object array"),
        (["--init-scale", "1e200"], "--init-scale must be a number in \\(0, 1000\\]"),
    ],
)
def test_predict_flags_are_checked_before_anything_is_written(tmp_path, capsys, argv, match):
    (tmp_path / "text.npy").write_text("not an array")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "c.csv")]
    assert main(["predict", "--mu", "1", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simtheory predict: error:") and "Traceback" not in err
    assert re.search(match, err), err
    assert not (tmp_path / "c.csv").exists()


def test_export_refuses_an_empty_directory_and_a_file_as_out(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "holds no curves" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()  # nothing written
    run = tmp_path / "run"
    sim_curves = __import__("simtheory").predict(
        __import__("simtheory").SIMTask([1.0, 2.0], 0.1), 0.01 * np.eye(2), np.linspace(0, 1, 5)
    )
    sim_curves.to_npz(run / "curves" / "c.npz")
    (tmp_path / "file").write_text("x")
    assert main(["export", str(run), "--out", str(tmp_path / "file")]) == 2
    assert "out must be a directory" in capsys.readouterr().err


def test_reproduce_refuses_a_file_as_out(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["reproduce", "--out", str(tmp_path / "file"), "--no-gd"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["reproduce", "--out", str(tmp_path / "r"), "--diffusion-run", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_validation_diffusion_names_missing_run_directories(tmp_path, capsys):
    from validation.diffusion import cli

    with pytest.raises(SystemExit) as e:
        cli(["--run-dir", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "no such directory" in capsys.readouterr().err
