"""simtheory.paper: the paper's settings as data."""

from __future__ import annotations

import doctest

import numpy as np

from simtheory import paper


def test_docstring_examples_run():
    import simtheory.paper as module

    assert doctest.testmod(module).failed == 0


def test_settings_are_the_paper_figures():
    md = paper.multiple_descent()
    assert md["triple"].mu == (1.0, 1.5, 2.2) and md["quadruple"].mu == (1.0, 1.5, 2.2, 2.7)
    assert md["failure"].mu == (0.7, 1.7, 3.0) and md["failure"].budget == 20.0
    fig5 = paper.figure5()
    assert fig5.dim == 3 and fig5.task().d == 3 and fig5.task(sigma=0.1).sigma.tolist() == [0.1] * 3


def test_initialisation_is_the_papers_rand_over_5_and_seeded():
    fig5 = paper.figure5()
    U = np.random.default_rng(7).random((2, 3, 3)) / 5
    np.testing.assert_array_equal(fig5.U0(7, (2,)), U)
    np.testing.assert_array_equal(fig5.W0(7, (2,)), U @ np.swapaxes(U, -1, -2))
    assert fig5.sizes(quick=True).n < fig5.sizes(quick=False).n
