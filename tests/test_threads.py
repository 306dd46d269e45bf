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
