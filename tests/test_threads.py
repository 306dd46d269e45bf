"""simtheory._threads: the size policy, the override and its scope, free cores, and pinned pools restored."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

import simtheory as sim
from simtheory import _threads


@pytest.fixture
def four_free(monkeypatch):
    monkeypatch.setattr(_threads, "free_cores", lambda own=0: 4)


def test_small_work_gets_one_thread_and_large_work_one_more_per_multiple(four_free):
    P = _threads.PARALLEL_FLOPS
    assert _threads.for_work(0.0) == 1 and _threads.for_work(P * 0.999) == 1
    assert _threads.for_work(P) == 2 and _threads.for_work(2 * P) == 3 and _threads.for_work(2.5 * P) == 3
    assert _threads.for_work(1e6 * P) == 4  # never more than the free cores


def test_the_override_holds_in_its_block_only_and_nests(four_free):
    assert _threads.for_work(1.0) == 1
    with sim.threads(3):
        assert _threads.for_work(1.0) == 3 and _threads.for_work(1e12) == 3
        with sim.threads(None):
            assert _threads.for_work(1.0) == 1
        assert _threads.for_work(1.0) == 3
    assert _threads.for_work(1.0) == 1  # restored after the block
    with pytest.raises(RuntimeError):
        with sim.threads(2):
            raise RuntimeError("a failing block")
    assert _threads.for_work(1.0) == 1  # restored after an exception too
    with pytest.raises(ValueError, match="threads"):
        with sim.threads(0):
            pass


def test_free_cores_counts_other_processes_running_tasks(monkeypatch):
    monkeypatch.setattr(_threads, "cores", lambda: 4)
    monkeypatch.setattr(_threads, "_own_running", lambda: 1)
    for running, own, free in [(1, 0, 4), (2, 0, 3), (3, 0, 2), (9, 0, 1), (3, 2, 4), (4, 1, 2)]:
        monkeypatch.setattr(_threads, "_running_tasks", lambda r=running: r)
        assert _threads.free_cores(own=own) == free, (running, own)
    monkeypatch.setattr(_threads, "_running_tasks", lambda: None)
    assert _threads.free_cores() == 4  # no load figure: every core


def test_limited_pins_torch_and_blas_and_restores_them_even_after_an_error():
    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info()]
    with pytest.raises(RuntimeError):
        with _threads.limited(1, torch=True):
            assert torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info()] == blas_before


def test_for_size_yields_the_policys_count(four_free):
    with _threads.for_size(3 * _threads.PARALLEL_FLOPS) as n:
        assert n == 4
    with _threads.for_size(1.0, torch=False) as n:
        assert n == 1


def test_cores_is_the_affinity():
    import os

    assert _threads.cores() == len(os.sched_getaffinity(0)) >= 1


def test_never_more_threads_than_free_cores_even_when_one_is_free(monkeypatch):
    monkeypatch.setattr(_threads, "free_cores", lambda own=0: 1)
    assert _threads.for_work(1e12) == 1 and _threads.for_work(_threads.PARALLEL_FLOPS) == 1


def test_a_process_seen_in_one_look_only_does_not_take_a_core(monkeypatch):
    """free_cores takes the least of three looks at the run queue: a short-lived process seen in two of them
    is not counted; a fourth look is never taken."""
    monkeypatch.setattr(_threads, "cores", lambda: 4)
    monkeypatch.setattr(_threads, "_own_running", lambda: 1)
    looks = iter([4, 4, 1])  # 3 other tasks, 3, then none
    monkeypatch.setattr(_threads, "_running_tasks", lambda: next(looks))
    assert _threads.free_cores() == 4


def test_own_running_threads_count_running_not_sleeping_ones(monkeypatch):
    import threading
    import time

    stop = threading.Event()
    sleepers = [threading.Thread(target=stop.wait) for _ in range(_threads.cores() + 3)]
    for t in sleepers:
        t.start()
    time.sleep(0.5)  # the sleepers block; pool workers of earlier tests stop spinning
    try:
        # this thread, perhaps a worker still spinning: fewer than the sleepers, which a count of the
        # threads that are not running would include
        assert 1 <= _threads._own_running() < len(sleepers)
        real = _threads.glob.glob
        monkeypatch.setattr(_threads.glob, "glob", lambda p: ["/nonexistent/task/1/stat", *real(p)])
        assert _threads._own_running() >= 1  # a thread gone between listing and reading is skipped
    finally:
        stop.set()
        for t in sleepers:
            t.join()


def test_an_unreadable_or_odd_loadavg_means_no_load_figure(monkeypatch):
    import builtins
    import io

    real_open = builtins.open

    def fake(content):
        def opener(path, *args, **kwargs):
            if path == "/proc/loadavg":
                if content is None:
                    raise PermissionError(path)
                return io.StringIO(content)
            return real_open(path, *args, **kwargs)

        return opener

    cases = [("0.1 0.2 0.3 3/400 12345", 3), (None, None), ("garbage", None), ("a b c x/y z", None)]
    for content, want in cases:
        monkeypatch.setattr(builtins, "open", fake(content))
        assert _threads._running_tasks() == want, content


@pytest.mark.parametrize("before, n", [(3, 1), (1, 2)])
def test_limited_sets_torch_threads_up_or_down_and_restores_them(before, n):
    saved = torch.get_num_threads()
    torch.set_num_threads(before)
    try:
        with _threads.limited(n, torch=True):
            assert torch.get_num_threads() == n
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(saved)


def _fresh_interpreter(code: str) -> str:
    """What ``code`` prints in a new Python process (one that has imported nothing yet); fails with its
    standard error if it raised."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.fail(f"the fresh interpreter failed:\n{out.stderr}")
    return out.stdout.strip()


def test_limited_imports_torch_to_pin_it_when_asked():
    code = (
        "import sys; from simtheory import _threads\n"
        "assert 'torch' not in sys.modules\n"
        "with _threads.limited(1, torch=True):\n"
        "    assert 'torch' in sys.modules  # imported by limited, so that its pool was pinned\n"
        "    import torch; assert torch.get_num_threads() == 1\n"
        "with _threads.limited(1):\n"
        "    pass\n"
        "print('ok')\n"
    )
    assert _fresh_interpreter(code) == "ok"


def test_cores_falls_back_to_the_cpu_count_where_there_is_no_affinity(monkeypatch):
    import os

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert _threads.cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one core
    assert _threads.cores() == 1


def test_thread_counts_are_bounded_and_limited_defaults_to_one():
    with sim.threads(4096):
        pass
    with pytest.raises(ValueError, match="threads"):
        with sim.threads(4097):
            pass
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _threads.limited(torch=True):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)


def test_own_running_reads_the_state_after_the_last_parenthesis_of_each_task(monkeypatch, tmp_path):
    # /proc/self/task/*/stat: "tid (comm) STATE ..."; comm may itself hold ") S (": the state is the
    # first field after the last ")"
    stats = {"1": "11 (python) R 1 2", "2": "12 (py) S (worker) R 1 2", "3": "13 (python) S 1 2",
             "4": "14 (pool) R 0", "5": "15 (odd) D 0"}  # fmt: skip
    paths = []
    for tid, text in stats.items():
        (tmp_path / tid).write_text(text)
        paths.append(str(tmp_path / tid))
    monkeypatch.setattr(_threads.glob, "glob", lambda pattern: paths)
    assert _threads._own_running() == 3  # tasks 1, 2 and 4
    monkeypatch.setattr(_threads.glob, "glob", lambda pattern: paths[2:3])  # only a sleeper
    assert _threads._own_running() == 1  # this thread runs, whatever the listing says


def test_limited_leaves_torch_unimported_unless_asked():
    code = (
        "import sys; from simtheory import _threads\n"
        "with _threads.limited(1):\n"
        "    pass\n"
        "with _threads.limited(2, torch=False):\n"
        "    pass\n"
        "with _threads.for_size(1.0):\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    assert _fresh_interpreter(code) == "False"


def test_the_documented_threshold_is_3e5_flops_per_matmul(four_free):
    # docs/performance.md: "threads by size (from 3e5 flops per matmul)"
    assert _threads.for_work(3e5 - 1) == 1 and _threads.for_work(3e5) == 2


def test_limited_takes_up_to_4096_threads():
    with _threads.limited(4096, torch=False):
        pass
    with pytest.raises(ValueError, match="threads"):
        with _threads.limited(4097, torch=False):
            pass
