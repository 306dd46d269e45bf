"""simtheory._checks at its boundaries: open and closed ends, ranges in the messages."""

from __future__ import annotations

import numpy as np
import pytest

from simtheory import _checks


@pytest.mark.parametrize(
    "kwargs, ok, bad",
    [
        (dict(low=0.0), [0.0, 1.0], [-1e-300]),
        (dict(low=0.0, low_open=True), [1e-300], [0.0, -1.0]),
        (dict(high=1.0), [1.0, 0.5], [1.0 + 1e-15]),
        (dict(high=1.0, high_open=True), [1.0 - 1e-15], [1.0]),
        (dict(low=0.0, high=1.0, low_open=True, high_open=True), [0.5], [0.0, 1.0]),
    ],
)
def test_real_number_takes_a_closed_end_and_refuses_an_open_one(kwargs, ok, bad):
    for x in ok:
        assert _checks.real_number(x, "x", **kwargs) == x
    for x in bad:
        with pytest.raises(ValueError, match="x must be a finite number"):
            _checks.real_number(x, "x", **kwargs)


def test_the_message_writes_the_interval_as_it_is():
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        _checks.real_number(0.0, "x", low=0.0, high=1.0, low_open=True)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        _checks.real_number(1.0, "x", low=0.0, high=1.0, high_open=True)
    with pytest.raises(ValueError, match=r"x must be a finite number >= 2"):
        _checks.real_number(1.0, "x", low=2.0)
    for bad in (np.nan, np.inf, True, "1", [1.0]):
        with pytest.raises(ValueError, match="x must be"):
            _checks.real_number(bad, "x")
    assert _checks.real_number(np.array(2.5), "x") == 2.5  # a 0-d array is a number


def test_positive_int_bounds():
    assert _checks.positive_int(1, "n") == 1 and _checks.positive_int(0, "n", minimum=0) == 0
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n"):
            _checks.positive_int(bad, "n")
    with pytest.raises(ValueError, match="n"):
        _checks.positive_int(11, "n", maximum=10)


def test_long_values_are_shortened_to_80_characters_in_messages():
    with pytest.raises(ValueError) as err:
        _checks.real_number("x" * 200, "v")
    shown = str(err.value).split("got ")[-1]
    assert len(shown) == 80 and shown.endswith("...")
    with pytest.raises(ValueError) as err:
        _checks.real_number("y" * 10, "v")
    assert str(err.value).endswith("got 'yyyyyyyyyy'")


def test_entries_are_bounded_at_1e8_by_default():
    ok = np.array([1e8, -1e8])
    assert _checks.bounded(ok, "W0") is ok
    with pytest.raises(
        ValueError, match=r"W0 must have entries of magnitude <= 1e\+08, got max \|W0\| = 1e\+08"
    ):
        _checks.bounded(np.array([1.000001e8]), "W0")
    assert _checks.bounded(np.array([5.0]), "W0", limit=5.0)[0] == 5.0


def test_allocations_past_the_limit_are_refused_with_their_size():
    _checks.allocation(_checks.MAX_VALUES, "x")  # at the limit: allowed
    n = _checks.MAX_VALUES + 1
    with pytest.raises(ValueError) as err:
        _checks.allocation(n, "the result")
    gib, limit = n * 8 / 2**30, _checks.MAX_VALUES * 8 / 2**30
    assert f"the result would hold {n:,} values ({gib:.1f} GiB), more than the {limit:.0f} GiB" in str(
        err.value
    )


def test_seeds_are_below_2_to_the_32():
    assert _checks.seed_value(2**32 - 1) == 2**32 - 1 and _checks.seed_value(0) == 0
    for bad in (2**32, -1, 1.0, True):
        with pytest.raises(ValueError, match="seed"):
            _checks.seed_value(bad)


def test_symmetry_is_checked_relative_to_the_largest_entry_and_tolerance_is_inclusive():
    with pytest.raises(ValueError, match=r"A must be symmetric, max \|A - A\^T\| = 0.001"):
        _checks.symmetric(np.array([[0.0, 1e-3], [0.0, 0.0]]), "A")
    at_tolerance = np.array([[0.0, 1e-8], [0.0, 0.0]])  # |A - A^T| = rtol * 1 exactly: accepted
    np.testing.assert_array_equal(_checks.symmetric(at_tolerance, "A"), [[0.0, 5e-9], [5e-9, 0.0]])
    big = np.array([[1e6, 1e-3], [0.0, 1.0]])  # 1e-3 <= 1e-8 * 1e6: symmetric at that scale
    assert _checks.symmetric(big, "A")[1, 0] == 5e-4
    assert _checks.symmetric(np.zeros((0, 0)), "A").shape == (0, 0)


def test_devices_that_this_machine_lacks_are_refused(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for dev in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available"):
            _checks.torch_device(dev)
    with pytest.raises(ValueError, match="MPS is not available"):
        _checks.torch_device("mps")
    assert _checks.torch_device("cuda:3", here=False) == "cuda:3"
    assert _checks.torch_device(torch.device("cpu")) == "cpu"


def test_cuda_indices_are_checked_against_the_devices_present(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert [_checks.torch_device(d) for d in ("cuda", "cuda:0", "mps")] == ["cuda", "cuda:0", "mps"]
    with pytest.raises(ValueError, match=r"'cuda:1': only 1 CUDA device\(s\) here"):
        _checks.torch_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert _checks.torch_device("mps:0") == "mps:0"  # an MPS index is not a CUDA index


def test_the_allocation_limit_is_the_documented_2_gib():
    _checks.allocation(2**28, "x")  # 2**28 float64 values = 2 GiB: allowed
    with pytest.raises(ValueError, match=r"more than the 2 GiB one call may allocate"):
        _checks.allocation(2**28 + 1, "x")


def test_a_batch_of_the_wrong_size_names_the_matrix_shape_and_is_symmetrised_per_matrix():
    with pytest.raises(ValueError, match=r"W0 must be 2 x 2 to match the task, got \(3, 3\)$"):
        _checks.square_batch(np.zeros((5, 3, 3)), "W0", d=2)
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(4, 3, 3))
    batch = batch + np.swapaxes(batch, -1, -2)
    batch[:, 0, 1] += 1e-10  # within the tolerance: accepted and symmetrised matrix by matrix
    out = _checks.symmetric(batch, "W0")
    np.testing.assert_array_equal(out, np.swapaxes(out, -1, -2))
    np.testing.assert_allclose(out, batch, atol=1e-10)


def test_cuda_indices_past_the_last_device_are_refused(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for dev in ("cuda:1", "cuda:2", "cuda:7"):
        with pytest.raises(ValueError, match=rf"'{dev}': only 1 CUDA device"):
            _checks.torch_device(dev)
