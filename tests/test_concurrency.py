"""Shared run directories, file-system faults and what a sweep file may run (issue 30).

Several *processes* (``simtheory sweep``) on one directory split the cells and compute each once; a process
killed with SIGKILL mid-cell leaves a claim the others recover; a write that fails leaves a directory the
next run completes; a sweep file alone runs only marked cells of modules the user allows."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from simtheory import files, sweep

TESTS = str(Path(__file__).resolve().parent)
XS = [round(0.1 * k, 1) for k in range(1, 25)]  # 24 cells


def _env():
    return {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _config(tmp_path: Path, delay: float = 0.15, barrier: str = "") -> tuple[Path, Path]:
    log = tmp_path / "starts.log"
    cfg = tmp_path / "sweep.json"
    fixed = {"log": str(log), "delay": delay, **({"barrier": barrier} if barrier else {})}
    cfg.write_text(json.dumps({"function": "sweep_cells:counted_cell", "grid": {"x": XS}, "fixed": fixed}))
    return cfg, log


def _start(cfg: Path, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "simtheory.cli",
        "sweep",
        str(cfg),
        "--out",
        str(out),
        "--module",
        "sweep_cells",
        "--quiet",
    ]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _starts(log: Path) -> list[tuple[float, int]]:
    """``(x, pid)`` of every start logged so far (a line being written is skipped)."""
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(float(r[1]), int(r[2])) for r in rows if len(r) == 3 and r[0] == "start"]


def _reference(tmp_path: Path):
    from sweep_cells import counted_cell

    sys.path.insert(0, TESTS)
    return sweep.run(
        counted_cell,
        sweep.grid(x=XS),
        tmp_path / "ref",
        fixed={"log": str(tmp_path / "ref.log"), "delay": 0.0},
    )


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch):
    monkeypatch.syspath_prepend(TESTS)


def _same_arrays(a, b) -> None:
    assert [c.key for c in a.cells] != [] and len(a.cells) == len(b.cells)
    for (pa, ya), (pb, yb) in zip(a, b):
        assert pa == pb and np.array_equal(ya["y"], yb["y"])


@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_processes_split_the_cells_and_compute_each_once(tmp_path, n):
    barrier = tmp_path / "go"
    cfg, log = _config(tmp_path, barrier=str(barrier))
    out = tmp_path / "run"
    procs = [_start(cfg, out) for _ in range(n)]
    # every process claims a cell and waits in it: then all of them are working on the directory at once,
    # however long each took to start (a loaded machine starts Python slowly)
    deadline = time.time() + 120
    while not log.exists() or len({pid for _, pid in _starts(log)}) < n:
        assert time.time() < deadline and all(p.poll() is None for p in procs), "not every process started"
        time.sleep(0.02)
    barrier.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [r[1][-2000:] for r in results]
    starts = Counter(x for x, _ in _starts(log))
    assert sorted(starts) == XS and set(starts.values()) == {1}  # every cell computed exactly once in total
    assert len({pid for _, pid in _starts(log)}) == n  # the work was split
    _same_arrays(sweep.open_run(out), _reference(tmp_path))
    side = json.loads(next((out / "cells").glob("*.json")).read_text())
    assert side["sweep"]["computed_by"]["pid"] in {p.pid for p in procs}


def test_a_process_killed_mid_cell_leaves_a_claim_the_others_recover(tmp_path):
    cfg, log = _config(tmp_path, delay=0.3)
    out = tmp_path / "run"
    victim = _start(cfg, out)
    rng = np.random.default_rng(7)
    deadline = time.time() + 60
    while not log.exists() or sum(1 for _, pid in _starts(log) if pid == victim.pid) < 2:
        assert time.time() < deadline, "the victim never started two cells"
        time.sleep(0.02)
    other = _start(cfg, out)  # joins while the victim works
    time.sleep(float(rng.uniform(0.0, 0.25)))  # then the victim dies mid-cell, at a seeded moment
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0, err[-2000:]
    starts = _starts(log)
    for x in XS:
        by = [pid for xx, pid in starts if xx == x]
        assert by, f"cell {x} was never computed"
        assert all(pid == victim.pid for pid in by[:-1]), (x, by)  # recomputed only after its claimant died
    assert any(pid == victim.pid for _, pid in starts)
    _same_arrays(sweep.open_run(out), _reference(tmp_path))
    late = _start(cfg, out)  # the finished directory: nothing left to do
    said = late.communicate(timeout=60)[0]
    assert late.returncode == 0 and f"{len(XS)} cells, 0 computed and {len(XS)} already done" in said
    assert len(_starts(log)) == len(starts)


def test_a_write_that_runs_out_of_space_leaves_a_directory_the_next_run_completes(tmp_path, monkeypatch):
    from sweep_cells import slow_cell

    settings = [{"x": x} for x in (0.1, 0.2, 0.3)]
    real = os.fsync
    calls = {"n": 0}

    def full_disk(fd):  # the disk fills while the second cell's arrays are written
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".npz." in name and name.endswith(".tmp"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(files.WriteError, match=r"cannot write .*cells/.*No space left on device \(ENOSPC\)"):
        sweep.run(slow_cell, settings, tmp_path / "run")
    monkeypatch.setattr(os, "fsync", real)
    leftovers = [p.name for p in (tmp_path / "run" / "cells").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
    res = sweep.open_run(tmp_path / "run")
    assert len(res.missing()) == 2  # the first cell is kept, nothing partial under a final name
    again = sweep.run(slow_cell, settings, tmp_path / "run")
    assert len(again.computed) == 2 and len(again.skipped) == 1
    _same_arrays(again, sweep.run(slow_cell, settings, tmp_path / "ref"))


def test_a_directory_that_cannot_be_written_is_named_with_its_cause(tmp_path, monkeypatch):
    import tempfile

    def refused(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(files.WriteError, match=r"cannot write .*x\.txt: Permission denied \(EACCES\)"):
        files.atomic_write_text(tmp_path / "x.txt", "y")
    assert not (tmp_path / "x.txt").exists()


def test_writers_leave_each_others_temporaries_alone(tmp_path):
    target = tmp_path / "f.json"
    live = tmp_path / f".f.json.{files.HOST}.{os.getpid()}.abc.tmp"
    dead_pid = 2**22 + 12345  # beyond the default pid_max: no such process
    dead = tmp_path / f".f.json.{files.HOST}.{dead_pid}.abc.tmp"
    other_host = tmp_path / ".f.json.elsewhere.1.abc.tmp"
    for p in (live, dead, other_host):
        p.write_text("partial")
    files.atomic_write_text(target, "{}")
    assert live.exists() and other_host.exists() and not dead.exists()


def test_a_sweep_file_cannot_run_an_arbitrary_callable(tmp_path):
    evil = tmp_path / "evil.json"
    evil.write_text(
        json.dumps(
            {"function": "subprocess:run", "grid": {"check": [False]},
             "fixed": {"args": f"echo PWNED > {tmp_path}/pwned.txt", "shell": True}}
        )
    )  # fmt: skip
    out = tmp_path / "runs" / "e"
    res = subprocess.run(
        [sys.executable, "-m", "simtheory.cli", "sweep", str(evil), "--out", str(out)],
        env=_env(), capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2 and "may name only the built-in cells" in res.stderr
    assert not (tmp_path / "pwned.txt").exists() and not out.exists()
    with pytest.raises(ValueError, match="not a sweep cell"):
        sweep.resolve("sweep_cells:unmarked")
    with pytest.raises(ValueError, match="not a sweep cell"):
        sweep.resolve("subprocess:run")
    with pytest.raises(ValueError, match="--module sweep_cells"):
        sweep.resolve("sweep_cells:slow_cell", modules=[])
    assert sweep.resolve("sweep_cells:slow_cell", modules=["sweep_cells"]).__name__ == "slow_cell"
    assert sweep.resolve("predict", modules=[]) is sweep.predict_cell  # built-in cells need no allowance


def test_a_model_module_named_in_a_sweep_file_needs_the_users_allowance(tmp_path):
    cfg = tmp_path / "m.json"
    cfg.write_text(
        json.dumps(
            {
                "function": "predict",
                "grid": {"seed": [0]},
                "fixed": {"mu": [1.0, 2.0], "model_module": "user_models"},
            }
        )
    )
    cmd = [sys.executable, "-m", "simtheory.cli", "sweep", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert res.returncode == 2 and "--module user_models" in res.stderr and not (tmp_path / "r").exists()
    res = subprocess.run([*cmd, "--module", "user_models"], env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_user_module_is_found_from_the_sweep_files_directory(tmp_path):
    (tmp_path / "my_cells.py").write_text(
        "import numpy as np\nfrom simtheory import sweep\n\n@sweep.cell(torch=False)\n"
        "def square(x):\n    return {'y': np.array([x * x])}\n"
    )
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"function": "my_cells:square", "grid": {"x": [1.0, 2.0]}}))
    cmd = [sys.executable, "-m", "simtheory.cli", "sweep", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]
    res = subprocess.run(
        [*cmd, "--module", "my_cells"], capture_output=True, text=True, cwd=Path(TESTS).parent
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(float(y["y"][0]) for _, y in sweep.open_run(tmp_path / "r")) == [1.0, 4.0]


def test_a_diffusion_run_directory_is_trained_by_one_process_at_a_time(tmp_path):
    held = files.claim(tmp_path / "run")
    assert held.acquire()
    try:
        from simtheory.diffusion.model import NetConfig
        from simtheory.diffusion.train import Run, cpu_config

        cfg = cpu_config(
            steps=4, checkpoint_every=4, checkpoint_ramp=4, net=NetConfig(16, 8, (1, 2), 16, heads=2)
        )
        with pytest.raises(ValueError, match=rf"is being trained by PID {os.getpid()} on"):
            Run(cfg, tmp_path).train(progress=False)
    finally:
        held.release()
    again = files.claim(tmp_path / "run")
    assert again.acquire()  # released: the next one takes it
    again.release()


def test_processes_run_as_many_cells_at_once_as_cores_are_free_in_other_processes(tmp_path, monkeypatch):
    from sweep_cells import rendezvous_cell

    from simtheory import _threads

    monkeypatch.setattr(_threads, "free_cores", lambda own=0: 2)
    folder = tmp_path / "met"
    folder.mkdir()
    res = sweep.run(
        rendezvous_cell, sweep.grid(x=[1.0, 2.0]), tmp_path / "run", fixed={"folder": str(folder)},
        executor="processes", workers=2,
    )  # fmt: skip
    pids = {int(y["pid"][0]) for _, y in res}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, at once, not this one


def test_a_process_waits_for_the_cell_another_is_computing_and_returns_it(tmp_path):
    import threading

    from sweep_cells import counted_cell

    barrier = tmp_path / "go"
    log = tmp_path / "starts.log"
    cfg = tmp_path / "sweep.json"
    fixed = {"log": str(log), "delay": 0.0, "barrier": str(barrier)}
    cfg.write_text(json.dumps({"function": "sweep_cells:counted_cell", "grid": {"x": [0.5]}, "fixed": fixed}))
    out = tmp_path / "run"
    other = _start(cfg, out)  # holds the only cell, waiting at the barrier
    deadline = time.time() + 120
    while not log.exists() or not _starts(log):
        assert time.time() < deadline and other.poll() is None, "the other process never started its cell"
        time.sleep(0.02)
    got, notes = [], []
    here = threading.Thread(
        target=lambda: got.append(
            sweep.run(counted_cell, sweep.grid(x=[0.5]), out, fixed=fixed, notify=notes.append)
        )
    )
    here.start()
    here.join(timeout=1.5)
    assert here.is_alive(), "returned while the other process was still computing the cell"
    barrier.touch()
    here.join(timeout=120)
    assert other.wait(timeout=120) == 0
    assert [x for x, _ in _starts(log)] == [0.5]  # computed once, by the other process
    ((params, y),) = list(got[0])
    assert params == {"x": 0.5} and np.array_equal(y["y"], np.arange(3) * 0.5)
    assert any("is being computed by PID" in n for n in notes)


def test_a_failing_cell_in_a_worker_process_gives_its_claim_back(tmp_path):
    from sweep_cells import failing_cell

    out = tmp_path / "run"
    # ``err`` keeps the traceback, and every frame in it, alive: a claim left held in a frame stays held
    with pytest.raises(ValueError, match="x must be <= 1") as err:  # noqa: F841
        sweep.run(failing_cell, sweep.grid(x=[2.0]), out, executor="processes", workers=1)
    (claim_file,) = (out / "cells").glob("*.lock")
    held = files.claim(claim_file.with_suffix(""))
    assert not claim_file.with_suffix(".owner").exists() and held.acquire()
    held.release()
