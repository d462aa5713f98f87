"""The seams as contracts (docs/ARCHITECTURE.md): no import cycle, protocols asked through their capabilities
(never by comparing kinds to strings outside the timing layer), a new protocol is one module plus its
registration, problem specs say truthfully what their problems will know, the staleness bounds the protocols
promise hold on simulated traces, and every apply sees its info from one constructor."""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import asyncsim
from asyncsim.params import ParamError, ScenarioError
from asyncsim.problems import ProblemSpec
from asyncsim.rng import Stream, generator
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.laws import Constant, Exponential
from asyncsim.timing.protocol import Family, Protocol, deterministic_bound, register
from asyncsim.timing.protocols import (SSP, AllReduce, Async, Deadline, KOfN, Periodic, Rennala, Ringmaster,
                                       SerialAsync, SharedMemory, Sync)

PACKAGE = Path(asyncsim.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The package modules ``name`` imports, at any level of the file (lazy imports included); ``from . import
    x`` counts as the submodule x when there is one."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known and m != name}


def test_the_package_has_no_import_cycle():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    state, stack, cycles = {}, [], []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []
    # the upward imports the architecture forbids
    assert "asyncsim.real" not in {m.rsplit(".", 1)[0] for m in graph["asyncsim.scenario"]}
    assert not any(m.startswith("asyncsim.theory") for name in graph if name.startswith("asyncsim.timing")
                   for m in graph[name])
    assert "asyncsim" not in graph["asyncsim.runner"]


def test_no_module_outside_the_timing_layer_compares_a_protocol_kind_to_a_string():
    kinds = set(Protocol.registry.kinds())
    offenders = []
    for name, path in modules().items():
        if name.startswith("asyncsim.timing"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                hits = [v.value for v in values if isinstance(v, ast.Constant) and v.value in kinds]
                if hits:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {hits}")
    assert offenders == []


def test_every_apply_info_comes_from_its_one_constructor():
    calls = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApplyInfo":
                calls.append(f"{name}:{node.lineno}")
    assert calls == []  # only ApplyInfo.at(...) builds them
    from asyncsim.algorithms import ApplyInfo

    assert ApplyInfo.at(7, [2, 0], [4, 7]) == ApplyInfo(7, (2, 0), (3, 0), None)


# -- a new protocol is one module plus its registration ------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RoundRobin(Protocol):
    """A given schedule: workers take turns, each update reads the version ``lag`` updates old (defined here,
    in the test, with nothing else edited)."""

    lag: int = 1
    simulated = False
    bounds_staleness = True

    def staleness_bound(self, cluster, n_updates):
        return self.lag

    def trace(self, cluster, times, n_updates):
        from asyncsim.timing.imported import delay_trace

        delays = np.minimum(np.arange(n_updates), self.lag)
        return delay_trace(delays, protocol="test_round_robin")


@pytest.fixture
def round_robin():
    register("test_round_robin")(RoundRobin)
    yield
    Protocol.registry.unregister("test_round_robin")


def test_a_protocol_registered_outside_the_package_runs_from_a_scenario_and_is_asked_by_capability(round_robin):
    base = ["protocol={kind: test_round_robin, lag: 2}", "run.updates=200", "run.record_every=50"]
    res = asyncsim.run(asyncsim.load_scenario(None, base))
    assert res.trace.staleness.tolist()[:4] == [0, 1, 2, 2] and res.summary.protocol == "test_round_robin"
    # algorithms see it through its family and bound: delay-aware SGD and SEACD accept it, rounds methods do not
    assert "test_round_robin" in asyncsim.Algorithm.registry.get("ringmaster_asgd").protocols
    asyncsim.load_scenario(None, base + ["algorithm={kind: seacd, tau: 2, L: 10.0}"])
    with pytest.raises(ScenarioError, match="bounds them only by 2"):
        asyncsim.load_scenario(None, base + ["algorithm={kind: seacd, tau: 1, L: 10.0}"])
    with pytest.raises(ScenarioError, match="^protocol.kind must be one of sync, k_of_n, deadline, allreduce, coded for "
                                            "algorithm minibatch_sgd, got 'test_round_robin'$"):
        asyncsim.load_scenario(None, base + ["algorithm={kind: minibatch_sgd, lr: 0.01}"])
    assert asyncsim.timing.choose_engine(res.scenario.cluster, RoundRobin(), "fast") == "given"


# -- what specs say before building, against what their problems know ----------------------------------------------

SMALL = {"least_squares": {}, "logistic": {}, "quadratic": {}, "strict_saddle": {}, "sparse_quadratic": {"dim": 30},
         "sparse_least_squares": {"n_samples": 50, "dim": 20}, "matrix_factorization": {}, "nmf": {},
         "mlp": {"hidden": [4], "n_train": 50, "n_test": 20}, "ridge": {"n_samples": 60, "dim": 6}}


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_a_spec_says_what_its_problem_will_know(kind):
    assert set(SMALL) >= {k for k in ProblemSpec.registry.kinds() if not k.startswith("test")}, "add a case here"
    spec = ProblemSpec.registry.get(kind)(**SMALL[kind])
    problem = spec.build(generator(0, Stream.DATA))
    assert spec.dim == problem.dim
    assert spec.knows_smoothness == (problem.smoothness is not None)
    assert spec.counts_flops == (problem.grad_flops() is not None)
    linear = problem.linear_gradient()
    assert spec.linear_gradient == (linear is not None)
    if linear is not None:  # grad f(x) = M x - c at a random point
        x = generator(1, Stream.INIT).standard_normal(problem.dim)
        np.testing.assert_allclose(linear[0] @ x - linear[1], problem.grad(x), rtol=1e-10, atol=1e-12)
    bounds = np.array([0, problem.dim // 2, problem.dim])
    assert spec.knows_block_smoothness == (problem.block_smoothness(bounds) is not None)
    assert set(spec.recorded) == set(problem.metrics(np.asarray(problem.initial_point(generator(0, Stream.INIT)))))
    footprint = spec.memory()
    held = sum(a.nbytes for a in vars(problem).values() if isinstance(a, np.ndarray))
    assert footprint.bytes >= held, (footprint, held)  # the estimate covers at least the arrays the problem holds


# -- the staleness bounds protocols promise ------------------------------------------------------------------------

def test_the_deterministic_bound_holds_on_every_small_constant_cluster():
    """Exhaustive over small clusters with constant times: the largest staleness of a simulated trace never
    exceeds the bound, and n identical workers reach it exactly (n - 1)."""
    for n, times, link in itertools.product((1, 2, 3, 4), ((1.0,), (1.0, 2.0), (1.0, 3.0, 0.5), (0.3, 0.7)),
                                            (0.0, 0.25)):
        computes = tuple(Constant(value=times[w % len(times)]) for w in range(n))
        cluster = Cluster(workers=n, compute=computes, uplink=Constant(value=link), downlink=Constant(value=link))
        for protocol in (Async(), Periodic(local_steps=2), SharedMemory(blocks=1)):
            if isinstance(protocol, SharedMemory) and link:
                continue  # shared memory has no links
            worst = simulate(cluster, protocol, 300, seed=0).staleness.max()
            assert worst <= protocol.staleness_bound(cluster, 300), (n, times, link, protocol)
        if len(set(times[w % len(times)] for w in range(n))) == 1:
            assert deterministic_bound(cluster) == n - 1 == simulate(cluster, Async(), 300, 0).staleness.max()
    random = Cluster(workers=3, compute=Exponential(mean=1.0))
    assert deterministic_bound(random) is None and SSP(bound=1).staleness_bound(random, 10) is None


@pytest.mark.parametrize("protocol, bound", [(Sync(), 0), (KOfN(k=2), 0), (Deadline(deadline=0.8), 0),
                                             (AllReduce(), 0), (Rennala(batch=3), 0), (Ringmaster(max_staleness=2), 2),
                                             (SerialAsync(tau=3), 3), (Periodic(local_steps=2, synchronous=True), 0)])
def test_promised_bounds_hold_on_random_traces(protocol, bound):
    cluster = Cluster(workers=4, compute=Exponential(mean=1.0))
    assert protocol.bounds_staleness and protocol.staleness_bound(cluster, 500) == bound
    assert simulate(cluster, protocol, 500, seed=1).used().staleness.max() <= bound


def test_algorithms_declare_the_metrics_they_record():
    from asyncsim.algorithms import SEACD

    seacd = SEACD(tau=1, L=1.0)
    state, _ = seacd.init(np.zeros(3), 2)
    assert set(seacd.recorded) == set(seacd.metrics(state)) and asyncsim.algorithms.SGD.recorded == ()


def test_shared_memory_resolves_its_blocks_from_the_problem_and_is_its_own_family():
    from asyncsim.problems import LeastSquares

    protocol = SharedMemory().resolve(LeastSquares(dim=7, n_samples=20))
    assert protocol.blocks == 7 and protocol.family is Family.SHARED_MEMORY
    with pytest.raises(ParamError, match=r"^protocol.blocks must be <= the problem's dim \(7\), got 8$"):
        SharedMemory(blocks=8).resolve(LeastSquares(dim=7, n_samples=20))
