"""The timing features end to end: every example scenario, trace_file through the CLI, predict, engines, inputs."""

import json

import numpy as np
import pytest
import yaml

import asyncsim
from asyncsim.cli import main
from asyncsim.params import ScenarioError
from asyncsim.predict import predict
from asyncsim.timing import Cluster, Trace, simulate
from asyncsim.timing.cluster import ComputeTrace, Network, Server
from asyncsim.timing.laws import Constant, Empirical, Exponential
from asyncsim.timing.protocols import Async, Periodic

PROTOCOLS = ("allreduce", "async", "buffered", "coded", "deadline", "drain", "k_of_n", "periodic", "rennala",
             "ringmaster", "serial_async", "shared_memory", "ssp", "sync", "trace_file")


def scenario_files(root):
    return sorted((root / "scenarios").rglob("*.yaml"))


def test_every_protocol_has_an_example_scenario_and_a_readme_line(root):
    kinds = set()
    for p in scenario_files(root):
        data = yaml.safe_load(p.read_text())
        for part in [data] + list(data.get("compare", {}).values()):  # a study's variants name protocols too
            if "protocol" in part:
                kinds.add(part["protocol"]["kind"])
    assert set(PROTOCOLS) <= kinds
    assert set(PROTOCOLS) == set(asyncsim.Protocol.registry.kinds())
    readme = (root / "README.md").read_text()
    for name in PROTOCOLS:
        assert f"| `{name}` |" in readme, name


@pytest.mark.parametrize("name", ["protocols/k_of_n", "protocols/rennala", "protocols/ringmaster", "protocols/ssp",
                                  "protocols/periodic", "protocols/deadline", "protocols/allreduce", "protocols/buffered",
                                  "clusters/failures", "clusters/transient", "clusters/heterogeneous",
                                  "clusters/network", "clusters/compute_trace"])
def test_example_scenarios_run_and_converge(root, name):
    s = asyncsim.load_scenario(root / "scenarios" / f"{name}.yaml", overrides=["run.updates=300"])
    res = asyncsim.run(s)
    res.trace.validate()
    assert res.summary["diverged_at"] is None
    assert res.metrics["suboptimality"].iloc[-1] < 0.2 * res.metrics["suboptimality"].iloc[0]
    unused = res.summary["unused"]
    if name in ("protocols/k_of_n", "protocols/ringmaster", "protocols/deadline"):
        assert unused["cancelled"] + unused["dropped"] > 0
    if name == "clusters/failures":
        assert unused["lost"] > 0


def test_trace_file_run_replays_exactly_the_measured_delays(root, tmp_path):
    data = root.parent / "shared" / "data" / "delays" / "BCD_sun_MNIST.csv"
    if not data.is_file():
        data = root / "scenarios" / "data" / "BCD_sun_MNIST.csv"  # the copy shipped with the examples
    scenario = yaml.safe_load((root / "scenarios" / "protocols" / "trace_file.yaml").read_text())
    scenario["protocol"]["path"] = str(data)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(out), "--no-plots"]) == 0
    expected = np.loadtxt(data)
    trace = Trace.load(out / "trace.parquet")
    np.testing.assert_array_equal(trace.staleness, expected)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "given" and summary["updates"] == len(expected) == 3001
    assert summary["staleness"]["mean"] == pytest.approx(expected.mean())


def test_trace_file_path_is_relative_to_the_scenario_and_errors_name_the_field(root, tmp_path):
    s = asyncsim.load_scenario(root / "scenarios" / "protocols" / "trace_file.yaml")
    assert s.protocol.path == str((root / "scenarios" / "data" / "BCD_sun_MNIST.csv").resolve())
    with pytest.raises(ScenarioError, match="run.updates must be <= the 3001 delays"):
        asyncsim.run(asyncsim.load_scenario(root / "scenarios" / "protocols" / "trace_file.yaml",
                                            overrides=["run.updates=3002"]))
    (tmp_path / "bad.csv").write_text("0\n1\n2.5\n")
    with pytest.raises(ScenarioError, match="line 3: a delay must be a whole number >= 0, got 2.5"):
        asyncsim.load_scenario(root / "scenarios" / "protocols" / "trace_file.yaml",
                               overrides=[f"protocol.path={tmp_path / 'bad.csv'}"])


def test_predict_rennala_collection_time_is_exact_and_async_rows_are_close(root, capsys):
    s = asyncsim.load_scenario(root / "scenarios" / "protocols" / "rennala.yaml")
    table = predict(s, updates=4000).set_index("quantity")
    row = table.loc["time to collect S = 8 gradients (s)"]
    # speeds 16, 8, 4, 2, 1 with 1 s of work: multiples of 1/16, 1/8, 1/4, 1/2, 1 in order are .0625, .125, .125,
    # .1875, .25, .25, .25, .3125: the 8th gradient arrives at 0.3125
    assert row["predicted"] == row["simulated"] == 0.3125
    assert table.loc["async mean staleness (n - 1)", "rel_diff"] < 0.01
    assert main(["predict", str(root / "scenarios" / "protocols" / "async.yaml"), "--updates", "40000"]) == 0
    out = capsys.readouterr().out
    assert "async P(staleness = 0) = 1/n (geometric law)" in out and "sync round time (s)" in out


def test_engine_choice_is_reported_and_fast_refuses_what_it_cannot_reproduce(tmp_path, capsys, root):
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--no-plots", "--set", "run.updates=300", "--set",
                 "cluster.stragglers=[]"]) == 0
    assert json.loads((out / "summary.json").read_text())["engine"] == "fast"
    assert main(["run", "--out", str(out), "--no-plots", "--set", "run.updates=300", "--engine", "simpy"]) == 0
    assert json.loads((out / "summary.json").read_text())["engine"] == "simpy"
    code = main(["run", str(root / "scenarios" / "clusters" / "failures.yaml"), "--engine", "fast",
                 "--out", str(tmp_path / "f")])
    assert code == 2 and not (tmp_path / "f").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: engine fast cannot simulate a cluster whose workers interact (failures); "
                   "use --engine simpy or auto"]


def test_local_sgd_needs_periodic_with_the_same_local_steps(root):
    base = root / "scenarios" / "protocols" / "periodic.yaml"
    with pytest.raises(ScenarioError, match=r"algorithm.local_steps must equal protocol.local_steps \(4\)"):
        asyncsim.load_scenario(base, overrides=["algorithm.local_steps=2"])
    with pytest.raises(ScenarioError, match="protocol.kind must be one of buffered, periodic for algorithm local_sgd, got .async."):
        asyncsim.load_scenario(base, overrides=["protocol={kind: async}"])


def test_local_sgd_with_one_local_step_is_async_sgd(root):
    sgd = asyncsim.load_scenario(root / "scenarios" / "protocols" / "async.yaml", overrides=["run.updates=200"])
    local = asyncsim.load_scenario(root / "scenarios" / "protocols" / "async.yaml", overrides=[
        "run.updates=200", "protocol={kind: periodic, local_steps: 1}",
        "algorithm={kind: local_sgd, lr: 0.01, local_steps: 1, batch_size: 32}"])
    a, b = asyncsim.run(sgd), asyncsim.run(local)
    np.testing.assert_array_equal(a.trace.staleness, b.trace.staleness)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-12)


def test_periodic_compute_is_h_consecutive_compute_draws():
    c = Cluster(workers=3, compute=Exponential(mean=1.0))
    one = simulate(c, Async(), 3000, 5)
    four = simulate(c, Periodic(local_steps=4), 200, 5)
    # worker w's contribution s covers its compute draws 4s .. 4s+3, the same draws async uses for steps 4s ..
    by_step = {(w, s): d for w, s, d in zip(one.worker, one.step, one.t_done - one.t_read)}
    for w, s, d in zip(four.worker, four.step, four.t_done - four.t_read):
        if (w, 4 * s + 3) in by_step:
            assert d == pytest.approx(sum(by_step[(w, 4 * s + h)] for h in range(4)), rel=1e-12)


def test_compute_trace_and_alpha_beta_links_give_the_durations_exactly(tmp_path):
    (tmp_path / "c.csv").write_text("a,b\n0.5,2.0\n0.25,1.0\n0.75,4.0\n")
    c = Cluster(workers=2, compute_trace=ComputeTrace(path=str(tmp_path / "c.csv")),
                uplink=Constant(value=0.125), downlink=Constant(value=0.0625),
                network=Network(uplink_bandwidth=1024.0, downlink_bandwidth=2048.0))
    t = simulate(c, Async(), 40, 0, message_bytes=256).validate()
    table = np.array([[0.5, 2.0], [0.25, 1.0], [0.75, 4.0]])
    np.testing.assert_array_equal(t.t_done - t.t_read, table[t.step % 3, t.worker])
    np.testing.assert_allclose(t.t_arrive - t.t_done, 0.125 + 256 / 1024, rtol=1e-12)
    later = t.step > 0
    prev_apply = {(w, s): a for w, s, a in zip(t.worker, t.step, t.t_apply)}
    gaps = [r - prev_apply[(w, s - 1)] for w, s, r in zip(t.worker[later], t.step[later], t.t_read[later])]
    np.testing.assert_allclose(gaps, 0.0625 + 256 / 2048, rtol=1e-12)
    with pytest.raises(asyncsim.ParamError, match="must have one column per worker"):
        Cluster(workers=3, compute_trace=ComputeTrace(path=str(tmp_path / "c.csv")))
    (tmp_path / "neg.csv").write_text("1.0\n-2.0\n")
    with pytest.raises(asyncsim.ParamError, match=r"path must hold finite compute times >= 0 only, got '-2.0 in data row 2'"):
        ComputeTrace(path=str(tmp_path / "neg.csv"))
    no_cycle = Cluster(workers=2, compute_trace=ComputeTrace(path=str(tmp_path / "c.csv"), cycle=False))
    with pytest.raises(ScenarioError, match="has 3 rows but worker"):
        simulate(no_cycle, Async(), 40, 0, engine="simpy")


def test_compute_may_be_one_law_per_worker_in_yaml(root):
    s = asyncsim.load_scenario(root / "scenarios" / "clusters" / "heterogeneous.yaml")
    assert [asyncsim.params.kind(x) for x in s.cluster.compute] == ["exponential", "gamma", "bimodal", "mixture"]
    assert s.cluster.factors == (1.0, 1.0, 0.5, 2.0)
    with pytest.raises(ScenarioError, match=r"cluster.compute must be one law or a list of one law per worker \(4\)"):
        asyncsim.load_scenario(root / "scenarios" / "clusters" / "heterogeneous.yaml",
                               overrides=["cluster.workers=4", "cluster.speeds=[]",
                                          "cluster.compute=[{kind: constant, value: 1.0}]"])


def test_server_slots_serve_in_parallel():
    # 4 workers arrive together at t=1, each service takes 1 s: with 2 slots, two applies at t=2 and two at t=3.
    c = Cluster(workers=4, compute=Constant(value=1.0), server=Server(service=Constant(value=1.0), slots=2))
    t = simulate(c, Async(), 4, 0).validate()
    assert t.t_apply.tolist() == [2.0, 2.0, 3.0, 3.0]
    assert t.worker.tolist() == [0, 1, 2, 3]
    one = simulate(Cluster(workers=4, compute=Constant(value=1.0), server=Server(service=Constant(value=1.0))),
                   Async(), 4, 0)
    assert one.t_apply.tolist() == [2.0, 3.0, 4.0, 5.0]


def test_empirical_compute_law_validates_values():
    with pytest.raises(asyncsim.ParamError, match="values must all be finite and >= 0"):
        Empirical(values=(1.0, -1.0))


def test_plots_overlay_predictions_and_show_unused_work(root):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asyncsim import theory
    from asyncsim.plotting import plot_shares, plot_staleness, plot_timeline

    res = asyncsim.run(asyncsim.load_scenario(root / "scenarios" / "protocols" / "async.yaml",
                                              overrides=["run.updates=2000"]))
    pred = res.summary["predicted"]
    np.testing.assert_allclose(pred["staleness_pmf"][:4], theory.staleness_pmf(8, np.arange(4)), atol=1e-8)
    assert pred["worker_shares"] == [0.125] * 8
    frame = res.trace.to_frame()
    ax = plot_staleness(frame, predicted=pred["staleness_pmf"])
    (line,) = [ln for ln in ax.lines if ln.get_label() == "predicted"]
    np.testing.assert_array_equal(line.get_ydata(), pred["staleness_pmf"])
    ax = plot_shares(frame, predicted=pred["worker_shares"])
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, np.bincount(res.trace.worker, minlength=8) / res.trace.n_updates)
    plt.close("all")
    kn = asyncsim.run(asyncsim.load_scenario(root / "scenarios" / "protocols" / "k_of_n.yaml",
                                             overrides=["run.updates=50"]))
    ax = plot_timeline(kn.trace.to_frame())
    assert "cancelled" in [t.get_text() for t in ax.get_legend().get_texts()]
    fails = asyncsim.run(asyncsim.load_scenario(root / "scenarios" / "clusters" / "failures.yaml",
                                                overrides=["run.updates=3000"]))
    ax = plot_timeline(fails.trace.to_frame(), until=float(fails.trace.t_apply[-1]))
    assert "lost (crash or offline)" in [t.get_text() for t in ax.get_legend().get_texts()]
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert sum(len(ln.get_xdata()) for ln in crosses) == fails.summary["unused"]["lost"]
    plt.close("all")
