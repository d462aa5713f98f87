"""Compressed messages: the operators against hand examples, their moments by Monte Carlo, error feedback's
identity, message sizes and the time they cost on the links, keyed randomness, the wrapper's bit-for-bit neutral
case, one-line errors, the real mode, and a wrong formula that makes the reproduction FAIL."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from asyncsim import reproduce
from asyncsim.algorithms import SGD
from asyncsim.algorithms.compressed import Compressed, compressible_kinds
from asyncsim.build import build, timing_model
from asyncsim.cli import main
from asyncsim.compression import QSGD, Compressor, RandK, Sign, TopK, error_feedback
from asyncsim.replay import algorithm_draws
from asyncsim.runner import run
from asyncsim.scenario import from_dict

ROOT = Path(__file__).parents[1]
ZERO = {"kind": "constant", "value": 0.0}
ALL = [TopK(k=3), RandK(k=3), QSGD(levels=1), QSGD(levels=4), Sign()]


def spec(compression=None, updates=200, workers=3, **changes):
    data = {"name": "c", "seed": 4, "problem": {"kind": "least_squares", "n_samples": 200, "dim": 16},
            "cluster": {"workers": workers, "compute": {"kind": "exponential", "mean": 1.0}},
            "protocol": {"kind": "async"}, "algorithm": {"kind": "sgd", "lr": 0.01, "batch_size": 4},
            "run": {"updates": updates, "record_every": 10}}
    data.update(changes)
    if compression is not None:
        data["compression"] = compression
    return data


def frozen(x):
    x = np.array(x, dtype=np.float64)
    x.flags.writeable = False
    return x


# -- the operators -------------------------------------------------------------------------------------------------

def test_top_k_keeps_the_largest_magnitudes_and_breaks_ties_by_index():
    x = frozen([3.0, -1.0, 2.0, -3.0, 2.0, 0.5])
    assert TopK(k=1).compress(x).tolist() == [3.0, 0, 0, 0, 0, 0]  # |3| = |-3|: the smaller index
    assert TopK(k=2).compress(x).tolist() == [3.0, 0, 0, -3.0, 0, 0]
    assert TopK(k=3).compress(x).tolist() == [3.0, 0, 2.0, -3.0, 0, 0]  # 2 at index 2 before 2 at index 4
    assert TopK(k=4).compress(x).tolist() == [3.0, 0, 2.0, -3.0, 2.0, 0]
    assert TopK(k=6).compress(x).tolist() == x.tolist()
    assert TopK(k=2).compress(frozen([1.0, -1.0, 1.0, -1.0])).tolist() == [1.0, -1.0, 0, 0]
    assert TopK(k=2).compress(frozen([0.0, 0.0, 0.0])).tolist() == [0.0, 0.0, 0.0]


class Uniforms:
    """A stand-in generator whose ``random(d)`` returns the given numbers (to hand-check QSGD's rounding)."""

    def __init__(self, u):
        self.u = np.array(u)

    def random(self, d):
        assert d == len(self.u)
        return self.u


def test_qsgd_levels_by_hand():
    x = frozen([3.0, -4.0, 0.0])  # ||x|| = 5; with s = 2, r = s|x|/||x|| = (1.2, 1.6, 0): levels 1 or 2 of 2.5
    q = QSGD(levels=2)
    assert q.compress(x, Uniforms([0.1, 0.7, 0.5])).tolist() == [5.0, -2.5, 0.0]  # 0.1 < 0.2 up; 0.7 > 0.6 down
    assert q.compress(x, Uniforms([0.3, 0.5, 0.0])).tolist() == [2.5, -5.0, 0.0]
    assert q.compress(x, Uniforms([0.21, 0.61, 0.0])).tolist() == [2.5, -2.5, 0.0]
    # s = 1: each coordinate is 0 or +-||x||, with probability |x_i| / ||x||
    assert QSGD(levels=1).compress(x, Uniforms([0.59, 0.79, 0.0])).tolist() == [5.0, -5.0, 0.0]
    assert QSGD(levels=1).compress(x, Uniforms([0.61, 0.81, 0.0])).tolist() == [0.0, -0.0, 0.0]
    assert q.compress(frozen([0.0, 0.0]), Uniforms([0.5, 0.5])).tolist() == [0.0, 0.0]


def test_scaled_sign_by_hand():
    assert Sign().compress(frozen([1.0, -3.0, 0.0, 2.0])).tolist() == [1.5, -1.5, 1.5, 1.5]  # a 0 is sent as +


@pytest.mark.parametrize("compressor", ALL, ids=lambda c: type(c).__name__ + str(getattr(c, "k", "")))
def test_compress_never_modifies_its_input(compressor):
    x = frozen(np.random.default_rng(0).standard_normal(10))
    y = compressor.compress(x, np.random.default_rng(1))
    assert y is not x and y.shape == x.shape and not np.shares_memory(x, y)


@pytest.mark.parametrize("compressor", [RandK(k=1), RandK(k=3), QSGD(levels=1), QSGD(levels=3)],
                         ids=lambda c: repr(c))
def test_unbiased_with_the_stated_variance(compressor):
    """Monte Carlo with a fixed seed: every coordinate of the mean within 4 standard errors of x, and the mean
    squared error within 4 standard errors of its formula (rand_k: (d/k - 1)||x||^2, an identity; QSGD: under
    min(d/s^2, sqrt(d)/s)||x||^2, with the exact value sum_i (||x||/s)^2 p_i (1 - p_i) measured)."""
    from asyncsim.reproduce.compression_variance import expected_error

    d, n = 8, 40000
    x = frozen([1.0, -2.0, 0.5, 0.0, 3.0, -0.25, 1.5, -1.0])
    rng = np.random.default_rng(11)
    Y = np.array([compressor.compress(x, rng) for _ in range(n)])
    se = Y.std(axis=0, ddof=1) / np.sqrt(n)
    err = Y.mean(axis=0) - x
    assert np.all(np.abs(err) <= 4 * se + 1e-15), (err, se)
    sq = ((Y - x) ** 2).sum(axis=1)
    exact = expected_error(compressor, x)
    assert abs(sq.mean() - exact) <= 4 * sq.std(ddof=1) / np.sqrt(n)
    omega = compressor.variance_factor(d)
    if isinstance(compressor, RandK):
        assert exact == pytest.approx((d / compressor.k - 1) * (x @ x), rel=1e-14)
    else:
        s = compressor.levels
        assert omega == min(d / s**2, np.sqrt(d) / s) and exact <= omega * (x @ x)


@pytest.mark.parametrize("compressor", [TopK(k=2), Sign()], ids=["top_k", "sign"])
def test_biased_ones_contract(compressor):
    rng = np.random.default_rng(3)
    for _ in range(50):
        x = frozen(rng.standard_t(1.5, 20))
        e = compressor.compress(x) - x
        assert e @ e <= (1 - compressor.contraction(20)) * (x @ x) * (1 + 1e-12)


@pytest.mark.parametrize("compressor", [TopK(k=2), RandK(k=2), QSGD(levels=2), Sign()],
                         ids=["top_k", "rand_k", "qsgd", "sign"])
def test_error_feedback_identity(compressor):
    """e_0 = 0, c_t = C(e_{t-1} + m_t), e_t = e_{t-1} + m_t - c_t: sum_t c_t + e_T = sum_t m_t to rounding."""
    rng = np.random.default_rng(5)
    messages = [frozen(rng.standard_normal(12) * 10.0 ** rng.integers(-3, 3)) for _ in range(200)]
    rngs = [np.random.default_rng(i) for i in range(200)]
    sent, e = error_feedback(compressor, messages, rngs)
    raw = np.sum(messages, axis=0)
    scale = np.abs(np.array(messages)).sum(axis=0).max()
    assert np.max(np.abs(np.sum(sent, axis=0) + e - raw)) <= 1e-13 * scale
    # the wrapper's worker state does the same, step by step (SGD's message is the problem's "gradient" m_t)
    wrapper = Compressed(inner=SGD(lr=1.0), compressor=replace(compressor, error_feedback=True))

    class Problem:
        dim = 12

        def grad(self, x, batch):
            return messages[batch]

    state = (None, None)
    total = np.zeros(12)
    for t in range(200):
        c, state = wrapper.local(frozen(np.zeros(12)), state, Problem(), (t, np.random.SeedSequence(t)))
        total += c
    assert np.max(np.abs(total + state[1] - raw)) <= 1e-13 * scale


def test_message_bytes_by_hand():
    d = 1000
    assert TopK(k=10).bytes(d) == RandK(k=10).bytes(d) == 10 * (8 + 4)
    assert QSGD(levels=1).bytes(d) == 8 + 1000 * 2 // 8  # sign + 1 level bit
    assert QSGD(levels=3).bytes(d) == 8 + 1000 * 3 // 8  # sign + 2 level bits (0..3)
    assert QSGD(levels=4).bytes(d) == 8 + 1000 * 4 // 8  # sign + 3 level bits (0..4)
    assert QSGD(levels=16).bytes(d) == 8 + 1000 * 6 // 8  # sign + 5 level bits (0..16)
    assert QSGD(levels=1).bytes(1001) == 8 + 251  # 2002 bits round up to 251 bytes
    assert Sign().bytes(d) == 8 + 125 and Sign().bytes(1001) == 8 + 126
    assert TopK(k=10).bytes(2**33) == 10 * (8 + 8)  # 8-byte indices past 2**32
    built = build(from_dict(spec({"kind": "qsgd", "levels": 4})))
    assert timing_model(built).message_bytes == 8 + 16 * 4 // 8 == 16
    assert timing_model(build(from_dict(spec()))).message_bytes == 8 * 16


def test_variance_facts():
    assert RandK(k=10).variance_factor(100) == 9.0
    assert QSGD(levels=4).variance_factor(100) == min(100 / 16, 10 / 4) == 2.5
    assert QSGD(levels=1).variance_factor(4) == min(4.0, 2.0)
    assert TopK(k=10).variance_factor(100) is None and TopK(k=10).contraction(100) == 0.1
    assert Sign().contraction(100) == 0.01 and Sign().variance_factor(100) is None
    # error feedback sends an unbiased operator scaled by 1 / (1 + omega): a contraction with delta = 1 / (1 + omega)
    assert RandK(k=10).contraction(100) == 0.1 and QSGD(levels=4).contraction(100) == 1 / 3.5


def test_error_feedback_sends_contractions():
    """rand_k's C / (1 + omega) is x on the same k drawn coordinates, unscaled; qsgd's is C / (1 + omega);
    E||C'(x) - x||^2 <= (1 - delta) ||x||^2 by Monte Carlo."""
    x = frozen(np.random.default_rng(2).standard_normal(30))
    for c in (RandK(k=5), QSGD(levels=2)):
        y = c.compress(x, np.random.default_rng(9))
        z = c.contractive(x, np.random.default_rng(9))
        assert np.allclose(z, y / (1 + c.variance_factor(30)), rtol=1e-15, atol=0)
        rng = np.random.default_rng(1)
        errors = [np.sum((c.contractive(x, rng) - x) ** 2) for _ in range(5000)]
        assert np.mean(errors) <= (1 - c.contraction(30)) * (x @ x)
    kept = RandK(k=5).compress(x, np.random.default_rng(9)) != 0
    sent = RandK(k=5).contractive(x, np.random.default_rng(9))
    assert sent[kept].tolist() == x[kept].tolist() and not sent[~kept].any()


# -- in a run ------------------------------------------------------------------------------------------------------

def constant_cluster(workers, bandwidth):
    return {"workers": workers, "compute": {"kind": "constant", "value": 1.0}, "uplink": ZERO, "downlink": ZERO,
            "network": {"uplink_bandwidth": bandwidth}}


@pytest.mark.parametrize("compression, size", [({"kind": "rand_k", "k": 16}, 12 * 16),
                                               ({"kind": "top_k", "k": 4, "error_feedback": True}, 12 * 4),
                                               ({"kind": "qsgd", "levels": 4}, 16), ({"kind": "sign"}, 10)])
def test_a_compressed_run_takes_exactly_its_bytes_over_the_bandwidth(compression, size):
    """Two workers, constant compute 1 s, an uplink of 64 bytes/s: every cycle takes 1 + bytes / 64 s, so K = 50
    updates end at 25 cycles, and the runs differ by exactly 25 (size - 8 d) / 64 seconds (rand_k with k = d sends
    12 d > 8 d bytes: slower; the others faster)."""
    plain = run(from_dict(spec(cluster=constant_cluster(2, 64.0), updates=50)))
    packed = run(from_dict(spec(compression, cluster=constant_cluster(2, 64.0), updates=50)))
    assert plain.summary.simulated_time == 25 * (1 + 128 / 64)
    assert packed.summary.simulated_time - plain.summary.simulated_time == 25 * (size - 128) / 64
    assert packed.summary["compression"]["message_bytes"] == size
    gap = packed.trace.update_times()[1:] - plain.trace.update_times()[1:]
    assert np.array_equal(gap, (np.arange(50) // 2 + 1) * (size - 128) / 64)


def test_rand_k_with_k_equal_to_d_is_the_uncompressed_run_bit_for_bit():
    """k = d keeps every coordinate with the scale d/k = 1 (x * 1.0 is x), and the compressor's draws are keyed
    apart from the minibatches, so on links without a bandwidth (sizes do not matter) the runs are the same: the
    same trace, metrics and final parameters, byte for byte.  With error feedback, e = (e + m) - C(e + m) = 0."""
    plain = run(from_dict(spec()))
    for compression in ({"kind": "rand_k", "k": 16}, {"kind": "rand_k", "k": 16, "error_feedback": True},
                        {"kind": "top_k", "k": 16}):
        same = run(from_dict(spec(compression)))
        assert same.x.tobytes() == plain.x.tobytes()
        assert same.metrics.equals(plain.metrics)
        assert same.trace.to_frame().equals(plain.trace.to_frame())
    assert not run(from_dict(spec({"kind": "rand_k", "k": 15}))).x.tobytes() == plain.x.tobytes()


def test_the_compressors_draws_are_keyed_by_worker_and_step():
    """A step's compression is a function of (seed, worker, step): asked in another order, the same; the
    minibatches are the uncompressed algorithm's; steps and workers differ."""
    s = from_dict(spec({"kind": "rand_k", "k": 3}))
    built = build(s)
    plain = build(from_dict(spec()))
    keys = [(w, t) for w in range(3) for t in (0, 1, 255, 256, 700)]
    x = frozen(np.arange(1.0, 17.0))

    def messages(order):
        draws = algorithm_draws(built.algorithm, built.problem, s.seed)
        out = {}
        for w, t in order:
            batch, key = draws(w, t)
            out[w, t] = built.algorithm.compressor.compress(x, np.random.default_rng(key))
        return out

    forward, backward = messages(keys), messages(keys[::-1])
    shuffled = messages([keys[i] for i in np.random.default_rng(0).permutation(len(keys))])
    for key in keys:
        assert np.array_equal(forward[key], backward[key]) and np.array_equal(forward[key], shuffled[key])
    assert len({forward[key].tobytes() for key in keys}) == len(keys)
    draws = algorithm_draws(built.algorithm, built.problem, s.seed)
    inner = algorithm_draws(plain.algorithm, plain.problem, s.seed)
    for w, t in keys:
        assert np.array_equal(draws(w, t)[0], inner(w, t))


def test_same_scenario_same_bytes_and_the_resolved_scenario_shows_the_compression(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(spec({"kind": "qsgd", "levels": 2, "error_feedback": True},
                                    cluster={"workers": 3, "compute": {"kind": "exponential", "mean": 1.0},
                                             "network": {"uplink_bandwidth": 100.0}})))
    for name in ("a", "b"):
        assert main(["run", str(path), "--out", str(tmp_path / name), "--no-plots"]) == 0
    for f in ("metrics.csv", "trace.parquet", "scenario.yaml"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    resolved = yaml.safe_load((tmp_path / "a" / "scenario.yaml").read_text())
    assert resolved["compression"] == {"kind": "qsgd", "levels": 2, "error_feedback": True}
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["compression"] == {"kind": "qsgd", "levels": 2, "error_feedback": True, "message_bytes": 8 + 6,
                                      "uncompressed_bytes": 128}
    assert summary["algorithm"] == "sgd" and "algorithm_resolved" not in summary
    assert main(["run", str(tmp_path / "a" / "scenario.yaml"), "--out", str(tmp_path / "c"), "--no-plots"]) == 0
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "c" / "metrics.csv").read_bytes()
    # without compression the resolved scenario and the summary say nothing of it
    plain = from_dict(spec())
    assert "compression" not in plain.to_dict() and plain.method is plain.algorithm


def test_compression_of_local_sgd_changes_and_the_delay_family():
    for protocol, algorithm in (({"kind": "periodic", "local_steps": 3}, {"kind": "local_sgd", "lr": 0.01}),
                                ({"kind": "periodic", "local_steps": 2, "synchronous": True},
                                 {"kind": "downpour", "lr": 0.01}),
                                ({"kind": "sync"}, {"kind": "minibatch_sgd", "lr": 0.01}),
                                ({"kind": "async"}, {"kind": "delay_adaptive", "lr": 0.01}),
                                ({"kind": "sync"}, {"kind": "gd", "lr": 0.01})):
        res = run(from_dict(spec({"kind": "top_k", "k": 4, "error_feedback": True}, updates=30,
                                 protocol=protocol, algorithm=algorithm)))
        assert np.isfinite(res.summary.final_loss)
    assert set(compressible_kinds()) >= {"sgd", "gd", "local_sgd", "downpour", "asysg", "delay_adaptive",
                                         "koloskova", "rennala_sgd", "ringmaster_asgd", "minibatch_sgd"}
    assert not {"easgd", "eamsgd", "admm_nn", "piag", "async_bcd", "asyscd", "seacd", "coded_gd",
                "coded_es"} & set(compressible_kinds())


# -- errors --------------------------------------------------------------------------------------------------------

def refused(capsys, tmp_path, data) -> str:
    """``validate`` and ``run`` refuse the scenario with the same single line; return it."""
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data))
    lines = []
    for argv in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        lines.append(err[0][len("error: "):])
    assert lines[0] == lines[1] and not (tmp_path / "out").exists()
    return lines[0]


@pytest.mark.parametrize("compression, message", [
    ({"kind": "rand_k", "k": 0}, "compression.k must be >= 1, got 0"),
    ({"kind": "top_k", "k": -3}, "compression.k must be >= 1, got -3"),
    ({"kind": "rand_k", "k": 17}, "compression.k must be <= problem.dim (16), got 17"),
    ({"kind": "top_k"}, "compression.k is required"),
    ({"kind": "qsgd", "levels": 0}, "compression.levels must be >= 1, got 0"),
    ({"kind": "qsgd", "levels": 2.5}, "compression.levels must be an integer, got 2.5 (float)"),
    ({"kind": "zip"}, "compression.kind must be one of qsgd, rand_k, sign, top_k; got 'zip'"),
    ({"k": 3}, "compression.kind is required (one of qsgd, rand_k, sign, top_k)"),
    ({"kind": "sign", "error_feedback": "yes"}, "compression.error_feedback must be true or false, got 'yes' (str)"),
    ({"kind": "sign", "k": 3}, "compression.k is not a known key (allowed: error_feedback)"),
    ("top_k", "compression must be a mapping with a 'kind' key, got 'top_k' (str)"),
])
def test_bad_compression_values_are_one_line_errors(capsys, tmp_path, compression, message):
    assert refused(capsys, tmp_path, spec(compression)) == message


def test_compression_of_a_message_that_is_not_one_vector_is_refused(capsys, tmp_path):
    names = ", ".join(compressible_kinds())
    easgd = spec({"kind": "rand_k", "k": 3}, protocol={"kind": "periodic", "local_steps": 2},
                 algorithm={"kind": "easgd", "lr": 0.01})
    assert refused(capsys, tmp_path, easgd) == (
        f"compression.kind rand_k needs an algorithm whose message is one vector (a gradient or a model change: "
        f"{names}); algorithm easgd sends another kind of message")
    piag = spec({"kind": "sign"}, protocol={"kind": "drain"}, algorithm={"kind": "piag", "lr": 0.01})
    assert "algorithm piag sends another kind of message" in refused(capsys, tmp_path, piag)


def test_links_the_compression_cannot_size_are_refused(capsys, tmp_path):
    cluster = {"workers": 3, "compute": {"kind": "exponential", "mean": 1.0}}
    down = spec({"kind": "sign"}, cluster={**cluster, "network": {"downlink_bandwidth": 1e6}})
    assert refused(capsys, tmp_path, down) == (
        "cluster.network.downlink_bandwidth (and every device's) must be null with compression (a run has one "
        "message size for both directions, and compression shrinks only the upload), got 1000000.0")
    given = spec({"kind": "sign"}, cluster={**cluster, "network": {"message_bytes": 64}})
    assert refused(capsys, tmp_path, given) == (
        "cluster.network.message_bytes must be null with compression (the compressor sizes the message: 10 bytes "
        "here), got 64")


def test_validate_names_the_compression(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(spec({"kind": "top_k", "k": 2})))
    assert main(["validate", str(path)]) == 0
    assert "algorithm sgd compressed by top_k," in capsys.readouterr().out


# -- the real mode -------------------------------------------------------------------------------------------------

@pytest.mark.skipif(sys.platform != "linux", reason="real runs use fork and /dev/shm")
def test_a_real_run_with_compression_replays_bit_for_bit():
    from asyncsim.real import run_real

    data = spec({"kind": "qsgd", "levels": 2, "error_feedback": True}, workers=2, updates=150,
                real={"start_method": "fork"})
    result = run_real(from_dict(data))
    assert result.summary["replay_check"]["exact"] is True
    assert result.summary["compression"]["kind"] == "qsgd"


# -- the reproduction and the study --------------------------------------------------------------------------------

def small_reproduction(tmp_path) -> str:
    data = yaml.safe_load((Path(reproduce.directory()) / "compression-variance.yaml").read_text())
    data["quick"] = {"dims": [100], "samples": 1000}
    data["params"]["compressors"] = [{"kind": "rand_k", "k": 10}, {"kind": "qsgd", "levels": 2},
                                     {"kind": "top_k", "k": 10}, {"kind": "sign"}]
    path = tmp_path / "compression-variance.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_wrong_variance_formula_fails_the_reproduction(tmp_path, monkeypatch, capsys):
    path = small_reproduction(tmp_path)
    assert main(["reproduce", path, "--out", str(tmp_path / "right"), "--no-plots"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("PASS: E[C(x)] = x")
    monkeypatch.setattr(RandK, "variance_factor", lambda self, d: d / self.k)  # forgets the - 1
    assert main(["reproduce", path, "--out", str(tmp_path / "wrong"), "--no-plots"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: ") and "worst |z|" in last and "rand_k (k 10)" in last
    assert json.loads((tmp_path / "wrong" / "summary.json").read_text())["passed"] is False


def test_a_biased_operator_fails_the_reproduction(tmp_path, monkeypatch, capsys):
    path = small_reproduction(tmp_path)
    true = QSGD.compress
    monkeypatch.setattr(QSGD, "compress", lambda self, x, rng: true(self, x, rng) * 1.5)  # E[C(x)] = 1.5 x
    assert main(["reproduce", path, "--out", str(tmp_path / "biased"), "--no-plots"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    worst = re.match(r"FAIL: E\[C\(x\)\] = x .*?; worst ([0-9.]+): qsgd \(levels 2\)", last)
    assert worst and float(worst.group(1)) > 4, last


def test_the_study_file_loads(capsys):
    assert main(["validate", str(ROOT / "scenarios" / "federated" / "compression.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: study federated_compression")


def test_compressor_registry_lists_the_four_kinds():
    assert Compressor.registry.kinds() == ["qsgd", "rand_k", "sign", "top_k"]
