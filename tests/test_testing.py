import numpy as np
import pytest
from hypothesis import given

import simtheory as sim
from simtheory.testing import assert_curves_close, psd_inits, tasks


@given(tasks(), psd_inits(d=2))
def test_strategies_produce_valid_inputs(task, W0):
    assert isinstance(task, sim.SIMTask) and 1 <= task.s <= 3
    assert np.all(np.linalg.eigvalsh(W0) >= -1e-12)


def test_failure_message_names_time_entry_and_tolerance():
    task = sim.SIMTask([1.0, 2.0], 0.1)
    c = sim.predict(task, np.diag([0.01, 0.02]), [0.0, 1.0, 2.0])
    W = np.array(c.W)
    W[2, 1, 0] += 1e-3
    with pytest.raises(AssertionError) as err:
        assert_curves_close(W, c)
    msg = str(err.value)
    assert "time index 2 (t = 2)" in msg and "W[1,0]" in msg and "tolerance" in msg


def test_dtype_aware_default_tolerance():
    a = np.ones((3, 2, 2))
    assert_curves_close((a + 1e-5).astype(np.float32), a)  # float32 default rtol 1e-4
    with pytest.raises(AssertionError):
        assert_curves_close(a + 1e-5, a)  # float64 default rtol 1e-7
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_curves_close(a, a[:2])
    with pytest.raises(AssertionError, match="non-finite"):
        assert_curves_close(a * np.nan, a)


def test_scalar_curves():
    assert_curves_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]))
    with pytest.raises(AssertionError, match="time index 1"):
        assert_curves_close(np.array([1.0, 2.0]), np.array([1.0, 2.1]))
