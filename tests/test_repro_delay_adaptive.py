"""The ``delay-adaptive`` reproduction: the quick version passes, and a broken method or a stricter claim fails."""

from dataclasses import replace

import numpy as np
import pytest

from asyncsim.params import ParamError
from asyncsim.reproduce import delay_adaptive, load


@pytest.fixture(scope="module")
def definition():
    return load("delay-adaptive")


@pytest.fixture(scope="module")
def quick(definition, quick_outcome):
    return quick_outcome(definition.name)


def small(definition, **changes):
    """A cut-down version (two slowdowns, two steps, short budgets) for the failure tests."""
    return replace(definition.quick, slowdowns=(1.0, 100.0), step_grid=(0.125, 1.0), updates=800, rounds=100,
                   **changes)


def test_quick_version_passes(quick, definition):
    table = quick.table
    assert quick.passed, quick.criterion
    assert len(table) == len(definition.quick.slowdowns) * len(delay_adaptive.METHODS)
    for column in ("time_to_target", "predicted_time", "gradients_to_target", "time_vs_minibatch", "step_c"):
        assert column in table
    criterion = table[table["role"] == "criterion"]
    assert np.isfinite(criterion["time_to_target"]).all()
    da = criterion[criterion["method"] == "delay_adaptive"]
    assert (da["time_vs_minibatch"] <= 1.0).all()
    assert set(table["step_c"]) <= set(definition.quick.step_grid)
    # the constant-step row keeps the step tuned for s = 1 at every s
    assert table.loc[table["method"] == "sgd (step of s = 1)", "step_c"].nunique() == 1
    assert "delay-adaptive async <= minibatch SGD" in quick.criterion


def test_small_version_is_deterministic_and_passes(definition):
    a, b = small(definition).run(3), small(definition).run(3)
    assert a.passed, a.criterion
    assert a.table.equals(b.table)


def test_broken_delay_adaptive_step_fails(definition, monkeypatch):
    # a delay-adaptive step 100 times too small never reaches the target within the budget
    monkeypatch.setattr(delay_adaptive.DelayAdaptive, "step", lambda self, info: 0.01 * self.lr)
    outcome = small(definition).run(definition.seed)
    assert not outcome.passed
    assert "never reached the target" in outcome.criterion


def test_stricter_growth_claim_fails(definition):
    outcome = small(definition, minibatch_growth=1000.0).run(definition.seed)
    assert not outcome.passed


def test_slowdowns_must_include_1_and_100(definition):
    with pytest.raises(ParamError, match="slowdowns"):
        replace(definition.quick, slowdowns=(1.0, 10.0))
