import math
from dataclasses import dataclass

import numpy as np
import pytest

from asyncsim.params import ParamError, ScenarioError, build, build_dataclass, to_plain
from asyncsim.timing import laws

CASES = [
    laws.Constant(value=0.5),
    laws.Exponential(mean=2.0),
    laws.ShiftedExponential(shift=0.5, scale=1.5),
    laws.LogNormal(mu=-0.5, sigma=0.8),
    laws.Uniform(low=1.0, high=3.0),
    laws.Pareto(alpha=3.5, scale=1.0),
    laws.Empirical(values=(0.1, 0.2, 0.7)),
    laws.Gamma(shape=2.5, scale=0.4),
    laws.Gamma(shape=0.5, scale=2.0),
    laws.Mixture(components=(laws.Exponential(mean=1.0), laws.Constant(value=0.5), laws.Uniform(low=1.0, high=3.0)),
                 weights=(0.5, 0.2, 0.3)),
    laws.Bimodal(base=laws.ShiftedExponential(shift=0.2, scale=0.5), p=0.1, slowdown=5.0),
    laws.Bimodal(base=laws.Empirical(values=(0.1, 0.4, 0.4)), p=0.3, slowdown=3.0),
]
HEAVY = [laws.Pareto(alpha=0.8, scale=1.0),
         laws.Mixture(components=(laws.Pareto(alpha=0.9, scale=0.5), laws.Exponential(mean=1.0)), weights=(0.2, 0.8))]


def ids(law):
    return type(law).__name__


@pytest.mark.parametrize("law", CASES, ids=ids)
def test_sample_mean_matches_closed_form_mean(law):
    x = law.sample(np.random.default_rng(1), 400_000)
    assert x.dtype == np.float64 and x.shape == (400_000,)
    assert np.all(x >= 0)
    assert x.mean() == pytest.approx(law.mean, rel=0.01)


@pytest.mark.parametrize("law", CASES + HEAVY, ids=ids)
def test_cdf_matches_the_empirical_cdf_of_samples(law):
    x = np.sort(law.sample(np.random.default_rng(3), 200_000))
    atoms = np.asarray(law.atoms())
    grid = np.concatenate([np.quantile(x, np.linspace(0.0005, 0.9995, 400)), atoms, atoms - 1e-9, [-1.0, 0.0]])
    ecdf = np.searchsorted(x, grid, side="right") / x.size
    assert np.max(np.abs(law.cdf(grid) - ecdf)) < 0.01


@pytest.mark.parametrize("law", CASES + HEAVY, ids=ids)
def test_cdf_is_a_distribution_function_and_sf_its_complement(law):
    grid = np.concatenate([[-np.inf, -1.0, 0.0], np.geomspace(1e-3, 1e3, 500), law.atoms(), [np.inf]])
    grid.sort()
    f = law.cdf(grid)
    assert f.dtype == np.float64 and f.shape == grid.shape
    assert f[0] == 0.0 and f[1] == 0.0 and f[-1] == 1.0
    assert np.all(np.diff(f) >= 0) and np.all((f >= 0) & (f <= 1))
    np.testing.assert_allclose(law.sf(grid), 1.0 - f, atol=1e-12)
    assert law.cdf(2.0).shape == () and float(law.cdf(2.0)) == pytest.approx(float(law.cdf([2.0])[0]))
    assert law.cdf(np.full((2, 3), 1.0)).shape == (2, 3)
    assert np.isnan(law.cdf(np.nan))


@pytest.mark.parametrize("law", CASES + HEAVY, ids=ids)
def test_atoms_are_exactly_the_jumps_of_the_cdf(law):
    atoms = law.atoms()
    assert list(atoms) == sorted(set(atoms))
    for a in atoms:
        assert law.cdf(a) - law.cdf(np.nextafter(a, -np.inf)) > 1e-6
    grid = np.linspace(-1.0, 20.0, 200_001)  # every atom here has mass > 0.05; no continuous part gains 0.02 in 1e-4
    jumps = grid[1:][np.diff(law.cdf(grid)) > 0.02]
    assert all(any(lo <= a <= hi for a in atoms) for lo, hi in zip(jumps - 2e-4, jumps))


def test_atoms_by_hand():
    assert laws.Constant(value=0.5).atoms() == (0.5,)
    assert laws.Empirical(values=(0.7, 0.1, 0.7)).atoms() == (0.1, 0.7)
    assert laws.Exponential(mean=1.0).atoms() == ()
    mix = laws.Mixture(components=(laws.Constant(value=2.0), laws.Empirical(values=(1.0, 2.0)),
                                   laws.Constant(value=9.0), laws.Gamma(shape=1.0, scale=1.0)),
                       weights=(0.25, 0.25, 0.0, 0.5))
    assert mix.atoms() == (1.0, 2.0)  # the weight-0 component has no mass
    assert laws.Bimodal(base=laws.Constant(value=1.0), p=0.5, slowdown=4.0).atoms() == (1.0, 4.0)
    assert laws.Bimodal(base=laws.Constant(value=1.0), p=1.0, slowdown=4.0).atoms() == (4.0,)
    assert laws.Bimodal(base=laws.Constant(value=1.0), p=0.0, slowdown=4.0).atoms() == (1.0,)


def test_cdf_closed_forms_by_hand():
    assert float(laws.Exponential(mean=2.0).cdf(2.0)) == pytest.approx(1 - math.exp(-1))
    assert float(laws.Pareto(alpha=2.0, scale=1.5).sf(3.0)) == pytest.approx(0.25)
    assert float(laws.Pareto(alpha=2.0, scale=1.0).sf(1e100)) == pytest.approx(1e-200, rel=1e-12)
    assert float(laws.Gamma(shape=1.0, scale=2.0).cdf(2.0)) == pytest.approx(1 - math.exp(-1))
    assert float(laws.LogNormal(mu=0.3, sigma=2.0).cdf(math.exp(0.3))) == pytest.approx(0.5)
    assert float(laws.Uniform(low=1.0, high=3.0).cdf(1.5)) == 0.25
    assert float(laws.Empirical(values=(0.1, 0.2, 0.7)).cdf(0.2)) == pytest.approx(2 / 3)
    bim = laws.Bimodal(base=laws.Exponential(mean=1.0), p=0.25, slowdown=2.0)
    assert float(bim.cdf(1.0)) == pytest.approx(0.75 * (1 - math.exp(-1)) + 0.25 * (1 - math.exp(-0.5)))
    assert bim.mean == 1.25
    assert laws.Gamma(shape=2.5, scale=0.4).mean == 1.0


def test_closed_form_means():
    assert laws.ShiftedExponential(shift=0.5, scale=1.5).mean == 2.0
    assert laws.LogNormal(mu=0.0, sigma=1.0).mean == pytest.approx(math.exp(0.5))
    assert laws.Pareto(alpha=2.0, scale=3.0).mean == 6.0
    assert laws.Pareto(alpha=1.0, scale=3.0).mean == math.inf
    assert HEAVY[1].mean == math.inf
    assert laws.Mixture(components=(laws.Pareto(alpha=0.5, scale=1.0), laws.Constant(value=2.0)),
                        weights=(0.0, 1.0)).mean == 2.0


def test_pareto_tail_and_support():
    x = laws.Pareto(alpha=2.0, scale=1.5).sample(np.random.default_rng(2), 200_000)
    assert x.min() >= 1.5
    # P(X > 3) = (1.5 / 3)^2 = 0.25
    assert np.mean(x > 3.0) == pytest.approx(0.25, abs=0.005)


def test_empirical_only_resamples_given_values():
    x = laws.Empirical(values=(1, 2.5)).sample(np.random.default_rng(0), 1000)
    assert set(np.unique(x)) == {1.0, 2.5}


def test_mixture_and_bimodal_sampling_is_deterministic_given_the_generator():
    for law in CASES[-3:]:
        a = law.sample(np.random.default_rng(7), 1000)
        b = law.sample(np.random.default_rng(7), 1000)
        assert np.array_equal(a, b)
    only_first = laws.Mixture(components=(laws.Constant(value=1.0), laws.Constant(value=2.0)), weights=(1.0, 0.0))
    assert np.all(only_first.sample(np.random.default_rng(0), 10_000) == 1.0)
    only_last = laws.Mixture(components=(laws.Constant(value=1.0), laws.Constant(value=2.0)), weights=(0.0, 1.0))
    assert np.all(only_last.sample(np.random.default_rng(0), 10_000) == 2.0)
    x = laws.Bimodal(base=laws.Constant(value=1.0), p=0.2, slowdown=3.0).sample(np.random.default_rng(0), 100_000)
    assert set(np.unique(x)) == {1.0, 3.0} and np.mean(x == 3.0) == pytest.approx(0.2, abs=0.005)
    assert laws.Mixture(components=(laws.Constant(value=1.0),), weights=(1.0,)).sample(
        np.random.default_rng(0), 0).shape == (0,)


@pytest.mark.parametrize("make, message", [
    (lambda: laws.Exponential(mean=-1.0), "mean must be > 0, got -1.0"),
    (lambda: laws.Constant(value=-0.1), "value must be >= 0, got -0.1"),
    (lambda: laws.Uniform(low=2.0, high=1.0), "high must be > low (2.0), got 1.0"),
    (lambda: laws.LogNormal(mu=0.0, sigma=0.0), "sigma must be > 0, got 0.0"),
    (lambda: laws.Pareto(alpha=0.0, scale=1.0), "alpha must be > 0, got 0.0"),
    (lambda: laws.ShiftedExponential(shift=-1.0, scale=1.0), "shift must be >= 0, got -1.0"),
    (lambda: laws.Empirical(values=()), "values must hold at least one value, got []"),
    (lambda: laws.Gamma(shape=0.0, scale=1.0), "shape must be > 0, got 0.0"),
    (lambda: laws.Gamma(shape=1.0, scale=-2.0), "scale must be > 0, got -2.0"),
    (lambda: laws.Mixture(components=(), weights=()), "components must hold at least one law, got ()"),
    (lambda: laws.Mixture(components=(laws.Constant(value=1.0), 2.0), weights=(0.5, 0.5)),
     "components must all be delay laws, got [2.0]"),
    (lambda: laws.Mixture(components=(laws.Constant(value=1.0),), weights=(0.5, 0.5)),
     "weights must hold one weight per component (1), got (0.5, 0.5)"),
    (lambda: laws.Mixture(components=(laws.Constant(value=1.0),) * 2, weights=(1.5, -0.5)),
     "weights must all be finite and >= 0, got (1.5, -0.5)"),
    (lambda: laws.Mixture(components=(laws.Constant(value=1.0),) * 2, weights=(0.5, 0.4)),
     "weights must sum to 1, got (0.5, 0.4)"),
    (lambda: laws.Bimodal(base=laws.Constant(value=1.0), p=1.5, slowdown=2.0), "p must be in [0, 1], got 1.5"),
    (lambda: laws.Bimodal(base=laws.Constant(value=1.0), p=-0.1, slowdown=2.0), "p must be in [0, 1], got -0.1"),
    (lambda: laws.Bimodal(base=laws.Constant(value=1.0), p=0.5, slowdown=0.5),
     "slowdown must be >= 1 and finite, got 0.5"),
    (lambda: laws.Bimodal(base=1.0, p=0.5, slowdown=2.0), "base must be a delay law, got 1.0"),
])
def test_bad_parameters_raise_naming_the_parameter(make, message):
    with pytest.raises(ParamError) as err:
        make()
    assert str(err.value) == message


def test_mixture_weights_sum_to_one_within_1e_9():
    laws.Mixture(components=(laws.Constant(value=1.0),) * 3, weights=(0.1, 0.2, 0.7))
    laws.Mixture(components=(laws.Constant(value=1.0),) * 2, weights=(0.5, 0.5 + 5e-10))
    with pytest.raises(ParamError, match="weights must sum to 1"):
        laws.Mixture(components=(laws.Constant(value=1.0),) * 2, weights=(0.5, 0.5 + 2e-9))


def test_mixture_and_bimodal_build_from_scenario_mappings():
    spec = {"components": [{"kind": "exponential", "mean": 1.0},
                           {"kind": "bimodal", "base": {"kind": "gamma", "shape": 2, "scale": 0.5},
                            "p": 0.1, "slowdown": 10}],
            "weights": [0.25, 0.75]}
    mix = build_dataclass(laws.Mixture, spec, "cluster.compute")
    assert mix == laws.Mixture(
        components=(laws.Exponential(mean=1.0),
                    laws.Bimodal(base=laws.Gamma(shape=2.0, scale=0.5), p=0.1, slowdown=10.0)),
        weights=(0.25, 0.75))
    assert hash(mix) == hash(build(laws.DelayLaw, to_plain(mix), "cluster.compute"))
    assert build(laws.DelayLaw, to_plain(mix), "cluster.compute") == mix
    assert to_plain(mix)["kind"] == "mixture" and to_plain(mix)["components"][1]["kind"] == "bimodal"
    with pytest.raises(ScenarioError) as err:
        build_dataclass(laws.Mixture, {**spec, "weights": [0.3, 0.3]}, "cluster.compute")
    assert str(err.value) == "cluster.compute.weights must sum to 1, got (0.3, 0.3)"
    with pytest.raises(ScenarioError) as err:
        build(laws.DelayLaw, {"kind": "bimodal", "base": {"kind": "constant", "value": 1}, "p": 2, "slowdown": 3},
              "cluster.compute")
    assert str(err.value) == "cluster.compute.p must be in [0, 1], got 2.0"
    with pytest.raises(ScenarioError) as err:
        build_dataclass(laws.Mixture, {**spec, "components": [{"kind": "exponential", "mean": -1}, spec["components"][1]]},
                        "cluster.compute")
    assert str(err.value) == "cluster.compute.components[0].mean must be > 0, got -1.0"


@dataclass(frozen=True, kw_only=True)
class Triangular(laws.DelayLaw):
    """A law the package does not know (unregistered): triangular on [0, 2]."""

    def sample(self, rng, size):
        return rng.triangular(0.0, 1.0, 2.0, size)

    mean = 1.0

    def _cdf(self, x):
        x = np.clip(x, 0.0, 2.0)
        return np.where(x <= 1.0, x**2 / 2, 1.0 - (2.0 - x) ** 2 / 2)


@pytest.mark.parametrize("law", CASES + HEAVY + [Triangular()], ids=ids)
@pytest.mark.parametrize("factor", [0.25, 3.0])
def test_scaled_is_the_law_of_factor_times_x(law, factor):
    s = laws.scaled(law, factor)
    if not isinstance(law, Triangular):
        assert type(s) is type(law)  # stays in the family, so closed forms keep applying
    else:
        assert s == laws.Scaled(base=law, factor=factor)
    assert s.mean == pytest.approx(factor * law.mean)
    grid = np.concatenate([np.geomspace(1e-3, 1e3, 300), law.atoms()])
    np.testing.assert_allclose(s.cdf(factor * grid), law.cdf(grid), atol=1e-12)
    np.testing.assert_allclose(s.atoms(), factor * np.asarray(law.atoms()), rtol=1e-12)
    assert laws.scaled(law, 1.0) is law
    x = np.sort(s.sample(np.random.default_rng(4), 50_000))
    assert np.max(np.abs(np.searchsorted(x, factor * grid, side="right") / x.size - law.cdf(grid))) < 0.015


def test_scaled_rejects_bad_factors_and_composes():
    with pytest.raises(ParamError) as err:
        laws.scaled(laws.Exponential(mean=1.0), 0.0)
    assert str(err.value) == "factor must be finite and > 0, got 0.0"
    assert laws.scaled(laws.scaled(Triangular(), 2.0), 0.5) == Triangular()
    assert laws.scaled(laws.scaled(Triangular(), 2.0), 3.0) == laws.Scaled(base=Triangular(), factor=6.0)


def test_parameters_are_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        laws.Exponential(1.0)
    law = laws.Exponential(mean=1.0)
    with pytest.raises(AttributeError):
        law.mean = 2.0
    with pytest.raises(TypeError):
        laws.Gamma(1.0, 2.0)
    with pytest.raises(AttributeError):
        CASES[-1].p = 0.5
