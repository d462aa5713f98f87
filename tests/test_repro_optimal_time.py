"""The ``optimal-time`` reproduction: quick version passes; a wrong prediction or a broken method fails."""

from dataclasses import replace

import numpy as np
import pytest

from asyncsim.params import ParamError
from asyncsim.reproduce import load
from asyncsim.reproduce import optimal_time as module


@pytest.fixture(scope="module")
def definition():
    return load("optimal-time")


@pytest.fixture(scope="module")
def outcome(definition, quick_outcome):
    return quick_outcome(definition.name)


def test_quick_version_passes(outcome, definition):
    quick = definition.quick
    table = outcome.table
    assert outcome.passed, outcome.criterion
    assert len(table) == len(quick.noise_ratios) * (len(quick.exponents) + len(quick.slowdowns))
    for column in ("optimal_time", "m_star", "rennala_ratio", "ringmaster_ratio", "minibatch_ratio",
                   "minibatch_own_ratio"):
        assert np.isfinite(table[column]).all()
    # Rennala's ratio is nearly flat; minibatch SGD's grows by an order of magnitude over the same profiles
    for _, group in table.groupby("noise_ratio"):
        assert group["rennala_ratio"].max() / group["rennala_ratio"].min() < 1.5
        assert group["minibatch_ratio"].max() / group["minibatch_ratio"].min() > 10
    assert outcome.criterion.startswith("over the worker profiles")


def test_deterministic(definition, outcome):
    small = replace(definition.quick, noise_ratios=(16.0,), exponents=(0.0, 2.0), slowdowns=())
    a, b = small.run(definition.seed).table, small.run(definition.seed).table
    assert a.equals(b)
    full_row = outcome.table[(outcome.table["noise_ratio"] == 16.0) & (outcome.table["profile"] == "i^2")]
    assert a.iloc[-1]["rennala_time"] == full_row["rennala_time"].iloc[0]


def test_wrong_prediction_fails(definition, outcome, monkeypatch):
    # a "formula" that ignores the worker times (T proportional to the homogeneous one) must break Rennala's band
    real = module.optimal_time

    def homogeneous(taus, L, delta, eps, sigma2):
        return real(np.ones_like(np.asarray(taus)), L, delta, eps, sigma2)

    monkeypatch.setattr(module, "optimal_time", homogeneous)
    small = replace(definition.quick, noise_ratios=(16.0,), slowdowns=())
    bad = small.run(definition.seed)
    assert not bad.passed
    assert bad.criterion.count("worst x") == 4


def test_broken_method_fails(definition, monkeypatch):
    # Rennala waiting for all workers each round (minibatch timing) is no longer optimal
    methods = module.OptimalTime.methods

    def broken(self, noise_ratio):
        out = methods(self, noise_ratio)
        out["rennala"] = (module.Sync(), out["minibatch"][1])
        return out

    monkeypatch.setattr(module.OptimalTime, "methods", broken)
    small = replace(definition.quick, noise_ratios=(16.0,), slowdowns=())
    assert not small.run(definition.seed).passed


def test_strict_band_fails(definition, outcome):
    # the judge on the same measurements with a band tighter than Ringmaster's measured one
    assert not replace(definition.quick, band=1.2).judge(outcome.table).passed


def test_validation():
    with pytest.raises(ParamError, match="exponents"):
        module.OptimalTime(exponents=(0.5, 1.0))
    with pytest.raises(ParamError, match="slowdowns"):
        module.OptimalTime(slowdowns=(1.0,))
