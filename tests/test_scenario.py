"""Scenario files: validation errors (one line, YAML path, exit 2), overrides, resolution and registries."""

import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from asyncsim.cli import main
from asyncsim.params import ScenarioError
from asyncsim.problems import LeastSquares, ProblemSpec
from asyncsim.scenario import default_scenario_text, from_dict, load_scenario
from asyncsim.timing.protocols import Protocol

GOOD = yaml.safe_load(default_scenario_text())


def variant(path, value):
    data = yaml.safe_load(default_scenario_text())
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()

MALFORMED = [
    (variant("algorithm.lr", -0.1), "algorithm.lr must be > 0, got -0.1"),
    (variant("problem.nosie", 0.1), "problem.nosie is not a known key (allowed: dim, n_samples, noise)"),
    (variant("problem.kind", "lstsq"),
     f"problem.kind must be one of {', '.join(ProblemSpec.registry.kinds())}; got 'lstsq'"),
    (variant("cluster.workers", "eight"), "cluster.workers must be an integer, got 'eight' (str)"),
    (variant("cluster.workers", 0), "cluster.workers must be >= 1, got 0"),
    (variant("cluster.compute", {"kind": "exponential", "mean": -1}), "cluster.compute.mean must be > 0, got -1.0"),
    (variant("cluster.stragglers", [{"worker": 9, "slowdown": 2.0}]),
     "cluster.stragglers[0].worker must be < workers (8), got 9"),
    (variant("run", DELETE), "run is required"),
    (variant("protocol.kind", "asynch"),
     f"protocol.kind must be one of {', '.join(Protocol.registry.kinds())}; got 'asynch'"),
    (variant("run.updates", 2.5), "run.updates must be an integer, got 2.5 (float)"),
    (variant("cluster.compute", {"mean": 1.0}),
     "cluster.compute.kind is required (one of bimodal, constant, empirical, exponential, gamma, lognormal, "
     "mixture, pareto, shifted_exponential, uniform)"),
    (variant("algoritm", {"kind": "sgd", "lr": 0.1}),
     "algoritm is not a known key (allowed: algorithm, cluster, compression, name, problem, protocol, real, run, "
     "seed, split)"),
    (variant("name", "a/b"),
     "name must be letters, digits, '_', '.' or '-' (it names the result directory), got 'a/b'"),
    (variant("cluster.uplink", {"kind": "uniform", "low": 2, "high": 1}), "cluster.uplink.high must be > low (2.0), got 1.0"),
    (variant("algorithm.batch_size", True), "algorithm.batch_size must be an integer, got True (bool)"),
    (variant("cluster.stragglers", {"worker": 0}), "cluster.stragglers must be a list, got {'worker': 0} (dict)"),
    (variant("seed", -1), "seed must be in [0, 2**63), got -1"),
    (["not", "a", "mapping"], "a scenario must be a mapping at the top level, got list"),
    (variant("protocol", {"kind": ["async"]}),
     f"protocol.kind must be one of {', '.join(Protocol.registry.kinds())}; got ['async']"),
]


@pytest.mark.parametrize("data, message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_scenario_gives_one_line_error_and_exit_2(tmp_path, capsys, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: {message}\n" and out == ""
    assert main(["run", str(path), "--out", str(tmp_path / "res")]) == 2
    assert not (tmp_path / "res").exists()


def test_bad_seed_on_the_command_line(capsys):
    assert main(["validate", "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "error: seed must be in [0, 2**63), got -1\n"


def test_invalid_yaml_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nproblem: {kind: least_squares\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: invalid YAML at line 3") and err.count("\n") == 1
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"error: scenario file '{tmp_path / 'nope.yaml'}' not found\n"


def test_error_from_the_console_has_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(variant("algorithm.lr", -0.1)))
    proc = subprocess.run([sys.executable, "-m", "asyncsim.cli", "run", str(path)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "error: algorithm.lr must be > 0, got -0.1\n"
    assert not (tmp_path / "results").exists()


def test_overrides_and_scientific_notation():
    s = load_scenario(None, ["algorithm.lr=2e-2", "cluster.stragglers=[]", "run.updates=1e3",
                             "cluster.server.service={kind: exponential, mean: 1e-3}"], seed=3)
    assert s.algorithm.lr == 0.02 and s.cluster.stragglers == () and s.run.updates == 1000
    assert s.cluster.server.service.mean == 0.001 and s.seed == 3
    with pytest.raises(ScenarioError, match=r"^--set needs dotted.key=value, got 'lr'$"):
        load_scenario(None, ["lr"])
    with pytest.raises(ScenarioError, match=r"^--set run.updates.x: run.updates is not a mapping$"):
        load_scenario(None, ["run.updates.x=1"])


def test_defaults_are_filled_in_and_the_resolved_scenario_round_trips():
    s = from_dict({"name": "t", "problem": {"kind": "quadratic"}, "cluster": {"workers": 2, "compute": {"kind": "constant", "value": 1}},
                   "algorithm": {"kind": "sgd", "lr": 0.1}, "run": {"updates": 1000}})
    resolved = yaml.safe_load(s.to_yaml())
    assert resolved["run"] == {"updates": 1000, "record_every": 10, "time": None, "stop_at": None}
    assert resolved["protocol"] == {"kind": "async"}
    assert resolved["cluster"]["uplink"] == {"kind": "constant", "value": 0.0}
    assert resolved["problem"]["mu"] == 0.01
    assert from_dict(resolved) == s


def test_shipped_quickstart_is_the_scenarios_file(root):
    assert (root / "scenarios" / "quickstart.yaml").read_text() == default_scenario_text()
    assert load_scenario(root / "scenarios" / "quickstart.yaml") == load_scenario()


def test_user_registered_problem_is_usable_from_a_scenario():
    @ProblemSpec.registry.register("tiny_least_squares")
    @dataclass(frozen=True, kw_only=True)
    class Tiny(LeastSquares):
        n_samples: int = 20
        dim: int = 2

    s = load_scenario(None, ["problem={kind: tiny_least_squares}"])
    assert isinstance(s.problem, Tiny)
    assert yaml.safe_load(s.to_yaml())["problem"]["kind"] == "tiny_least_squares"
