import numpy as np
import pytest

from simtheory import SIMTask, empirical_second_moment


def test_second_moment_follows_the_convention():
    task = SIMTask([1.0, 1.5], 0.05, d=3)
    assert task.s == 2 and task.d == 3
    np.testing.assert_allclose(task.a, [1 / 2 + 0.05**2, 2.25 / 2 + 0.05**2, 0.05**2])
    np.testing.assert_allclose(task.A, np.diag(task.a))
    with_origin = SIMTask([1.0, 1.5], [0.1, 0.2], origin=True)
    np.testing.assert_allclose(with_origin.a, [1 / 3 + 0.01, 2.25 / 3 + 0.04])


def test_sigma_lengths():
    assert np.allclose(SIMTask([1, 2], [0.1, 0.2], d=4).sigma, [0.1, 0.2, 0, 0])
    assert np.allclose(SIMTask([1, 2], [0.1, 0.2, 0.3], d=3).sigma, [0.1, 0.2, 0.3])
    assert np.allclose(SIMTask([1, 2], 0.3, d=3).sigma, [0.3] * 3)


def test_test_points():
    task = SIMTask([1.0, 2.0, 3.0], 0.1, d=4)
    np.testing.assert_array_equal(task.test_point(), [1, 2, 3, 0])
    np.testing.assert_array_equal(task.test_point([1, 0, 1]), [1, 0, 3, 0])
    X = task.test_points()
    assert X.shape == (8, 4)
    np.testing.assert_array_equal(X[-1], task.test_point())
    np.testing.assert_array_equal(X[0], 0)
    assert len({tuple(r) for r in X}) == 8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mu=[], sigma=0.1), "mu must contain"),
        (dict(mu=[1.0, -1.0], sigma=0.1), "mu must be > 0"),
        (dict(mu=[1.0, 0.0], sigma=0.1), "mu must be > 0"),
        (dict(mu=[1.0, np.nan], sigma=0.1), "mu must be finite"),
        (dict(mu=[[1.0]], sigma=0.1), "mu must have 1 dimension"),
        (dict(mu=["a"], sigma=0.1), "mu must be numeric"),
        (dict(mu=[1.0], sigma=-0.1), "sigma must be >= 0"),
        (dict(mu=[1.0], sigma=np.inf), "sigma must be finite"),
        (dict(mu=[1.0, 2.0], sigma=[0.1, 0.1, 0.1]), "sigma must have length s = 2 or d = 2"),
        (dict(mu=[1.0, 2.0], sigma=0.1, d=1), "d must be >= s"),
        (dict(mu=[1.0], sigma=0.1, d=2.5), "d must be an integer"),
        (dict(mu=[1.0], sigma=0.1, origin="yes"), "origin must be True or False"),
    ],
)
def test_invalid_task_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SIMTask(**kwargs)


def test_invalid_test_point():
    task = SIMTask([1.0, 2.0], 0.1)
    with pytest.raises(ValueError, match="v must have length s = 2"):
        task.test_point([1, 1, 1])
    with pytest.raises(ValueError, match="v must be binary"):
        task.test_point([1, 0.5])


def test_sample_is_seeded_and_has_the_right_moments():
    task = SIMTask([1.0, 2.0], [0.3, 0.1], d=3, origin=True)
    X, y = task.sample(20_000, seed=3)
    assert X.shape == (60_000, 3) and y.shape == (60_000,)
    assert set(np.unique(y)) == {0, 1, 2}
    X2, _ = task.sample(20_000, seed=3)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, task.sample(20_000, seed=4).inputs)
    np.testing.assert_allclose(X[y == 1].mean(0), [0, 2, 0], atol=0.01)
    np.testing.assert_allclose(X[y == 0].std(0), [0.3, 0.1, 0.0], atol=0.01)
    A_n = empirical_second_moment(X)
    np.testing.assert_allclose(A_n, task.A, atol=0.02)


def test_embedding_is_orthonormal_and_consistent():
    task = SIMTask([1.0, 2.0], 0.1)
    Q = task.embedding(16, seed=5)
    np.testing.assert_allclose(Q.T @ Q, np.eye(2), atol=1e-12)
    X, _ = task.sample(10, seed=5, embed_dim=16)
    Xd, _ = task.sample(10, seed=5)
    np.testing.assert_allclose(X, Xd @ Q.T, atol=1e-12)
    with pytest.raises(ValueError, match="embed_dim must be >= d"):
        task.sample(10, seed=0, embed_dim=1)


@pytest.mark.parametrize(
    "n, seed, match",
    [
        (0, 0, "n must be an integer >= 1"),
        (5, -1, "seed must be an integer in"),
        (5, 1.5, "seed must be an integer in"),
    ],
)
def test_invalid_sample_args(n, seed, match):
    with pytest.raises(ValueError, match=match):
        SIMTask([1.0], 0.1).sample(n, seed)


def test_empirical_second_moment_errors():
    with pytest.raises(ValueError, match="X must have 2 dimension"):
        empirical_second_moment(np.ones(3))
    with pytest.raises(ValueError, match="at least one sample"):
        empirical_second_moment(np.ones((0, 3)))
    with pytest.raises(ValueError, match="X must be finite"):
        empirical_second_moment(np.array([[1.0, np.nan]]))


def test_round_trip_and_learning_order():
    task = SIMTask([3.0, 1.0, 2.0], 0.1, d=4, origin=True)
    assert SIMTask.from_dict(task.to_dict()) == task
    np.testing.assert_array_equal(task.learning_order(), [0, 2, 1])


@pytest.mark.parametrize(
    "value, match",
    [
        (0.0, "truncate must be > 0"),
        (-1.0, "truncate must be > 0"),
        (np.nan, "truncate must be finite"),
        ("a", "truncate must be numeric"),
    ],
)
def test_invalid_truncation_raises(value, match):
    with pytest.raises(ValueError, match=match):
        SIMTask([1.0, 2.0], 0.1, truncate=value)


@pytest.mark.parametrize("c", [0.5, 1.0, 2.5])
def test_truncated_clusters_are_bounded_and_have_the_truncated_variance(c):
    from scipy.stats import truncnorm

    from simtheory.task import truncated_variance_factor

    assert truncated_variance_factor(c) == pytest.approx(truncnorm.var(-c, c), rel=1e-12)
    task = SIMTask([1.0, 2.0], [0.3, 0.2], d=3, truncate=c)
    X, y = task.sample(40_000, seed=1)
    centres = np.array([[1.0, 0, 0], [0, 2.0, 0]])
    noise = X - centres[y]
    assert np.all(np.abs(noise) <= c * task.sigma + 1e-12)
    np.testing.assert_allclose(
        noise.std(0), task.sigma * np.sqrt(truncnorm.var(-c, c)), rtol=0.02, atol=1e-12
    )
    np.testing.assert_allclose(empirical_second_moment(X), task.A, atol=0.02)
    gaussian = SIMTask([1.0, 2.0], [0.3, 0.2], d=3)
    np.testing.assert_allclose(task.a - gaussian.a, task.sigma**2 * (truncnorm.var(-c, c) - 1), atol=1e-14)


def test_truncation_round_trips_and_distinguishes_tasks():
    task = SIMTask([1.0, 2.0], 0.1, truncate=1.5)
    back = SIMTask.from_dict(task.to_dict())
    assert back == task and hash(back) == hash(task) and back.truncate == 1.5
    assert task != SIMTask([1.0, 2.0], 0.1) and "truncate=1.5" in repr(task)
    assert SIMTask.from_dict(SIMTask([1.0], 0.1).to_dict()).truncate is None
