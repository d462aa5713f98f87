import math

import numpy as np
import pytest

from asyncsim.params import ParamError
from asyncsim.timing import laws

CASES = [
    laws.Constant(value=0.5),
    laws.Exponential(mean=2.0),
    laws.ShiftedExponential(shift=0.5, scale=1.5),
    laws.LogNormal(mu=-0.5, sigma=0.8),
    laws.Uniform(low=1.0, high=3.0),
    laws.Pareto(alpha=3.5, scale=1.0),
    laws.Empirical(values=(0.1, 0.2, 0.7)),
]


@pytest.mark.parametrize("law", CASES, ids=lambda l: type(l).__name__)
def test_sample_mean_matches_closed_form_mean(law):
    x = law.sample(np.random.default_rng(1), 400_000)
    assert x.dtype == np.float64 and x.shape == (400_000,)
    assert np.all(x >= 0)
    assert x.mean() == pytest.approx(law.mean, rel=0.01)


def test_closed_form_means():
    assert laws.ShiftedExponential(shift=0.5, scale=1.5).mean == 2.0
    assert laws.LogNormal(mu=0.0, sigma=1.0).mean == pytest.approx(math.exp(0.5))
    assert laws.Pareto(alpha=2.0, scale=3.0).mean == 6.0
    assert laws.Pareto(alpha=1.0, scale=3.0).mean == math.inf


def test_pareto_tail_and_support():
    x = laws.Pareto(alpha=2.0, scale=1.5).sample(np.random.default_rng(2), 200_000)
    assert x.min() >= 1.5
    # P(X > 3) = (1.5 / 3)^2 = 0.25
    assert np.mean(x > 3.0) == pytest.approx(0.25, abs=0.005)


def test_empirical_only_resamples_given_values():
    x = laws.Empirical(values=(1, 2.5)).sample(np.random.default_rng(0), 1000)
    assert set(np.unique(x)) == {1.0, 2.5}


@pytest.mark.parametrize("make, message", [
    (lambda: laws.Exponential(mean=-1.0), "mean must be > 0, got -1.0"),
    (lambda: laws.Constant(value=-0.1), "value must be >= 0, got -0.1"),
    (lambda: laws.Uniform(low=2.0, high=1.0), "high must be > low (2.0), got 1.0"),
    (lambda: laws.LogNormal(mu=0.0, sigma=0.0), "sigma must be > 0, got 0.0"),
    (lambda: laws.Pareto(alpha=0.0, scale=1.0), "alpha must be > 0, got 0.0"),
    (lambda: laws.ShiftedExponential(shift=-1.0, scale=1.0), "shift must be >= 0, got -1.0"),
    (lambda: laws.Empirical(values=()), "values must hold at least one value, got []"),
])
def test_bad_parameters_raise_naming_the_parameter(make, message):
    with pytest.raises(ParamError) as err:
        make()
    assert str(err.value) == message


def test_parameters_are_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        laws.Exponential(1.0)
    law = laws.Exponential(mean=1.0)
    with pytest.raises(AttributeError):
        law.mean = 2.0
