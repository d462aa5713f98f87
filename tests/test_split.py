"""Non-IID client data (``split``): the Dirichlet label split is a partition whose class shares follow
Beta(alpha, (N - 1) alpha) (KS, fixed seeds), each worker's minibatches come from its own shard, and the inputs a
split cannot take are refused in one line."""

import numpy as np
import pytest
from scipy import stats

import asyncsim
from asyncsim.algorithms.sgd import SGD
from asyncsim.cli import main
from asyncsim.params import ParamError, ScenarioError
from asyncsim.problems.logistic import Logistic
from asyncsim.replay import algorithm_draws
from asyncsim.split import Dirichlet


def shares(labels, shards):
    """(clients x classes) share of each class's samples that each client holds."""
    classes = np.unique(labels)
    counts = np.array([[np.sum(labels[s] == k) for k in classes] for s in shards])
    return counts / counts.sum(axis=0)


def test_the_shards_partition_the_samples_and_are_keyed_by_the_seed():
    labels = np.repeat(np.arange(5), [300, 10, 0, 55, 1000])[np.random.default_rng(0).permutation(1365)]
    split = Dirichlet(alpha=0.5)
    shards = split.shards(labels, 12, seed=3)
    every = np.sort(np.concatenate(shards))
    np.testing.assert_array_equal(every, np.arange(len(labels)))  # each sample in exactly one shard
    assert all(len(s) >= 1 and (np.diff(s) > 0).all() for s in shards)
    again = split.shards(labels, 12, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again))
    other = split.shards(labels, 12, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(shards, other))


@pytest.mark.parametrize("alpha", [0.1, 0.5, 5.0])
def test_a_clients_share_of_a_class_is_beta_alpha_n_minus_1_alpha(alpha):
    """10 classes of 20,000 samples over N = 20 clients, 20 seeds: the fraction of the 4,000 shares at most t
    against the CDF of Beta(alpha, 19 alpha), the marginal of Dir(alpha, ..., alpha), within 4 binomial standard
    errors, at thresholds far from the rounding (which moves a share by at most 1/20,000, and makes the many tiny
    shares of a small alpha exactly 0, so no test on the whole CDF)."""
    n, classes, per_class = 20, 10, 20_000
    labels = np.repeat(np.arange(classes), per_class)
    pooled = np.concatenate([shares(labels, Dirichlet(alpha=alpha).shards(labels, n, seed)).ravel()
                             for seed in range(20)])
    law = stats.beta(alpha, (n - 1) * alpha)
    for t in (0.002, 0.01, 0.03, 0.05, 0.1, 0.2, 0.4):
        p = law.cdf(t)
        assert abs(np.mean(pooled <= t) - p) <= 4 * np.sqrt(p * (1 - p) / len(pooled)) + 1e-9, t
    assert abs(pooled.mean() - 1 / n) < 1e-12  # the shares of each class add up to 1
    # small alpha: a client holds few classes; large alpha: nearly the IID 1/N of each
    held = (pooled.reshape(20, n, classes) > 0.01).sum(axis=2).mean()
    if alpha != 0.5:
        assert held < 5 if alpha == 0.1 else held > 9


def test_a_split_that_leaves_a_client_short_is_drawn_again_then_refused():
    labels = np.zeros(40, int)
    shards = Dirichlet(alpha=1.0, min_samples=5).shards(labels, 4, seed=0)
    assert min(len(s) for s in shards) >= 5
    with pytest.raises(ScenarioError, match=r"split.alpha: no Dirichlet\(0.001\) draw in 100 gave each of the 2 "):
        Dirichlet(alpha=0.001).shards(np.zeros(2, int), 2, seed=0)  # one class: it all goes to one client


def test_each_worker_draws_its_minibatches_from_its_own_shard():
    problem = Logistic(n_samples=500, dim=5).build(np.random.default_rng(0))
    problem.shards = Dirichlet(alpha=0.2).shards(problem.labels, 6, seed=1)
    draws = algorithm_draws(SGD(lr=0.1, batch_size=8), problem, seed=2)
    for w in range(6):
        batches = np.concatenate([draws(w, s) for s in (0, 1, 255, 256, 700)])
        assert np.isin(batches, problem.shards[w]).all()
        # every sample of the shard is reachable: over a block, the draws cover most of a small shard
        block = np.concatenate([draws(w, s) for s in range(256)])
        assert len(np.unique(block)) >= min(len(problem.shards[w]), 200) * 0.9


def test_a_split_changes_only_the_minibatches(root):
    """The same scenario with and without a split: the same trace (timing does not see the data), different
    iterates; the split's shards follow the seed."""
    base = asyncsim.load_scenario(root / "scenarios" / "quickstart.yaml", ["problem={kind: logistic, n_samples: "
                                                                           "400, dim: 10}", "run.updates=200"])
    split = asyncsim.load_scenario(root / "scenarios" / "quickstart.yaml", [
        "problem={kind: logistic, n_samples: 400, dim: 10}", "run.updates=200", "split={kind: dirichlet, alpha: 0.1}"])
    a, b = asyncsim.run(base), asyncsim.run(split)
    np.testing.assert_array_equal(a.trace.t_apply, b.trace.t_apply)
    assert not np.array_equal(a.x, b.x)
    assert split.to_dict()["split"] == {"kind": "dirichlet", "alpha": 0.1, "min_samples": 1}
    assert "split" not in base.to_dict()


@pytest.mark.parametrize("setting, message", [
    ("split={kind: dirichlet, alpha: 0.5}", "error: split needs a classification problem (logistic, mlp), not "
     "least_squares"),
    ("problem={kind: logistic, n_samples: 20, dim: 5}; split={kind: dirichlet, alpha: 0.5, min_samples: 3}",
     "error: split.min_samples must leave every one of the cluster.workers (8) clients that many of the 20 "
     "training samples: at most 2, got 3"),
    ("problem={kind: logistic, n_samples: 200, dim: 5}; algorithm={kind: gd, lr: 0.1}; split={kind: dirichlet, "
     "alpha: 0.5}", "error: split needs an algorithm that draws minibatches"),
    ("problem={kind: logistic, n_samples: 200, dim: 5}; split={kind: dirichlet, alpha: 0}",
     "error: split.alpha must be in [0.001, 1e6], got 0"),
    ("problem={kind: logistic, n_samples: 200, dim: 5}; split={kind: shards}", "error: split.kind must be one of "
     "dirichlet; got 'shards'"),
])
def test_a_split_it_cannot_take_is_one_line(root, tmp_path, capsys, setting, message):
    sets = [x for s in setting.split("; ") for x in ("--set", s)]
    quick = str(root / "scenarios" / "quickstart.yaml")
    for command in (["validate", quick, *sets], ["run", quick, *sets, "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ParamError):
        Dirichlet(alpha=0.5, min_samples=0)
