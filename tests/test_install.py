"""An installed simtheory: the wheel claims no generic top-level import names, and the documented commands
run from it (slow: a fresh virtual environment, its dependencies and a report)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    (path,) = out.glob("simtheory-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_installs_no_top_level_validation_or_derivations(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"simtheory"}, top
    assert "simtheory/validation/report.py" in names and "simtheory/derivations/symmetric.py" in names


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_fresh_environment_runs_the_report_from_the_wheel(wheel, tmp_path):
    """A non-editable install in a new venv (the CPU torch first, as the README says), run away from the
    checkout: ``simtheory reproduce`` (no GD section, to keep it short) and ``python -m
    simtheory.validation.linear`` work; ``validation`` and ``derivations`` are not importable."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, str(wheel)], check=True)
    run = lambda *args: subprocess.run([py, *args], cwd=tmp_path, capture_output=True, text=True)  # noqa: E731
    probe = run(
        "-c", "import importlib.util as u; print(u.find_spec('validation'), u.find_spec('derivations'))"
    )
    assert probe.stdout.split() == ["None", "None"], probe
    rep = subprocess.run(
        [str(venv / "bin" / "simtheory"), "reproduce", "--no-gd", "--n-seeds", "20", "--n-agreement", "24",
         "--out", str(tmp_path / "r"), "--quiet"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert (tmp_path / "r" / "summary.json").exists() and (tmp_path / "r" / "report.md").exists()
    lin = run("-m", "simtheory.validation.linear")
    assert lin.returncode == 0 and "PASS" in lin.stdout.upper(), lin.stdout[-2000:] + lin.stderr[-2000:]
