"""The ``asysg-speedup`` reproduction: AsySG-con / AsySG-incon speedup tables (Lian et al. 2015)."""

from dataclasses import replace

import numpy as np
import pytest

from asyncsim.algorithms.delay import AsySG
from asyncsim.params import ParamError
from asyncsim.reproduce import load
from asyncsim.reproduce import speedup as module


@pytest.fixture(scope="module")
def definition():
    return load("asysg-speedup")


@pytest.fixture(scope="module")
def quick(definition, quick_outcome):
    return quick_outcome(definition.name)


@pytest.fixture(scope="module")
def small(definition):
    """A cut-down quick version (one seed, few worker counts) for the failure and determinism tests."""
    return replace(definition.quick, repeats=1, machines=(1, 4), threads=(1, 8))


def test_quick_version_passes_with_both_tables(quick, definition):
    table = quick.table
    assert quick.passed, quick.criterion
    assert list(table.loc[table["table"] == "con machines", "n"]) == list(definition.quick.machines)
    assert list(table.loc[table["table"] == "incon threads", "n"]) == list(definition.quick.threads)
    for column in ("K", "time_to_target", "iteration_speedup", "time_speedup", "published_iteration",
                   "published_time", "in_regime", "meets_fraction_n"):
        assert column in table.columns
    con = table[table["table"] == "con machines"].set_index("n")
    assert con.at[8, "published_iteration"] == 5.96 and con.at[8, "published_time"] == 5.00
    # the criterion is checked on the rows in the regime n < sqrt(K(1))/4, and they are not vacuous
    bound = np.sqrt(con.at[1, "K"]) / 4
    assert np.allclose(table["regime_bound"], bound)
    assert (table["in_regime"] == (table["n"] < bound)).all()
    inside = table[table["in_regime"]]
    assert (inside["iteration_speedup"] >= 0.8 * inside["n"]).all()
    assert inside.groupby("table")["n"].max().min() > 1
    # the server queue makes AsySG-con's time speedup fall below its iteration speedup at n = 8
    assert con.at[8, "time_speedup"] < 0.95 * con.at[8, "iteration_speedup"]
    assert abs(con.at[8, "mean_staleness"] - 7) < 0.1
    assert quick.criterion.startswith("iteration speedup n K(1)/K(n) >= 0.8 n")


def test_a_delay_hurt_algorithm_fails(small, monkeypatch):
    """A broken AsySG whose step shrinks with the delay (gamma M / (1 + tau)) needs about n times the updates."""
    monkeypatch.setattr(AsySG, "step", lambda self, info: self.lr * self.batch_size / (1 + max(info.staleness)))
    outcome = small.run(0)
    assert not outcome.passed
    assert not outcome.table.loc[outcome.table["n"] > 1, "meets_fraction_n"].any()


def test_small_version_passes_and_is_deterministic(small):
    first, second = small.run(3), small.run(3)
    assert first.passed, first.criterion
    assert first.table.equals(second.table)


def test_a_stricter_regime_constant_still_needs_an_n_above_one(small):
    # c = 0.01: sqrt(K(1)) / 100 < 1, so no worker count is in the regime and nothing is shown: not a pass
    outcome = replace(small, regime=0.01).run(0)
    assert not outcome.table["in_regime"].any()
    assert not outcome.passed


def test_parameters_are_validated(definition):
    with pytest.raises(ParamError, match="machines"):
        replace(definition.quick, machines=(2, 4))
    with pytest.raises(ParamError, match="target"):
        replace(definition.quick, target=1.5)
    with pytest.raises(ParamError, match="iteration"):
        module.Published(setting="x", workers=(1, 2), iteration=(1.0,), time=(1.0, 2.0))
