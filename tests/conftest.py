import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture
def root():
    return ROOT


@pytest.fixture(scope="session")
def quick_outcome():
    """``quick_outcome(name)``: the outcome of reproduction ``name``'s quick version, run once per test session
    (``test_reproduce`` runs it through the CLI, a reproduction's own module checks its table)."""
    from asyncsim.reproduce import load, run_definition

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = run_definition(load(name))
        return cache[name]

    return get
