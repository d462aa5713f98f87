"""Write the exploration notebooks from their cells, and execute them to store their outputs.

    python notebooks/build_notebooks.py            # write and execute the full versions (outputs committed)
    python notebooks/build_notebooks.py --write    # only write the cells (no outputs)
    python notebooks/build_notebooks.py 03_backup_workers_and_codes.ipynb   # one notebook

Each notebook poses its question in its first cell, runs its studies through the Python API, overlays the
``asyncsim.theory`` prediction, asserts its conclusion where a closed form exists, and ends with "try this".  With
``ASYNCSIM_QUICK=1`` (the test suite sets it) every notebook shrinks its runs to execute in well under a minute.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).parent

SETUP = '''import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

QUICK = os.environ.get("ASYNCSIM_QUICK") == "1"  # the test suite's small version
FIGURES = None if QUICK else "figures"  # the full version saves its main figure for the README'''


def sync_vs_async() -> list[tuple[str, str]]:
    return [
        ("markdown", """# Sync or async? One straggler, and heavy tails

**Question.** When does asynchrony pay off against synchronous rounds, and how heavy a tail can synchronous training
stand? We take 8 workers computing minibatch gradients of a least-squares problem and make the cluster worse in two
ways: one worker `s` times slower than the others (s from 1 to 1000), and compute times with a Pareto tail (alpha
from 5 down to 1.5). We measure throughput against the order-statistics prediction, then time to accuracy for six
methods on the same traces (common random numbers: every variant of a seed sees the same compute draws)."""),
        ("code", SETUP + '''
import json

from asyncsim import theory
from asyncsim.predict import worker_laws
from asyncsim.study import run_study, study_from_dict
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.cluster import Straggler
from asyncsim.timing.laws import Constant, Exponential, Pareto
from asyncsim.timing.protocols import Async, Sync

N = 8
SLOWDOWNS = [1, 10, 100] if QUICK else [1, 3, 10, 30, 100, 300, 1000]
ALPHAS = [2.0, 5.0] if QUICK else [1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
SEEDS = range(2) if QUICK else range(5)'''),
        ("markdown", """## Throughput: what the order statistics predict

A synchronous round waits for the slowest of the n workers, so it makes n gradients per E[max_i X_i] seconds
(`theory.sync_round_time`, the expected maximum by order statistics); an asynchronous server applies each gradient
when it arrives, sum_i 1/E[X_i] per second (`theory.async_throughput`). Their ratio is
`theory.sync_vs_async_speedup`. We simulate both protocols on each cluster (5 seeds) and compare."""),
        ("code", '''def gradient_rates(cluster, seed, rounds):
    a, s = simulate(cluster, Async(), N * rounds, seed), simulate(cluster, Sync(), rounds, seed)
    return (len(a) / a.t_apply[-1]) / (len(s) / s.t_apply[-1])


def compare(clusters, rounds):
    rows = []
    for x, cluster in clusters.items():
        measured = [gradient_rates(cluster, seed, rounds) for seed in SEEDS]
        rows.append({"x": x, "predicted": theory.sync_vs_async_speedup(worker_laws(cluster)),
                     "measured": np.mean(measured), "se": np.std(measured, ddof=1) / np.sqrt(len(measured))})
    return pd.DataFrame(rows)


straggler = compare({s: Cluster(workers=N, compute=Exponential(mean=1.0),
                                stragglers=(Straggler(worker=0, slowdown=float(s)),)) for s in SLOWDOWNS},
                    rounds=500 if QUICK else 4000)
tails = compare({a: Cluster(workers=N, compute=Pareto(alpha=a, scale=(a - 1) / a)) for a in ALPHAS},  # mean 1
                rounds=500 if QUICK else 20000)
print("one straggler s times slower (exponential compute times, mean 1 s):")
print(straggler.rename(columns={"x": "s"}).round(3).to_string(index=False))
print("\\nPareto(alpha) compute times, mean 1 s:")
print(tails.rename(columns={"x": "alpha"}).round(3).to_string(index=False))'''),
        ("code", '''fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for ax, frame, label in ((left, straggler, "slowdown s of one worker (log)"), (right, tails, "Pareto tail index alpha")):
    grid = np.geomspace(frame.x.min(), frame.x.max(), 60) if ax is left else np.linspace(frame.x.min(), frame.x.max(), 60)
    if ax is left:
        line = [theory.sync_vs_async_speedup(worker_laws(Cluster(workers=N, compute=Exponential(mean=1.0),
                stragglers=(Straggler(worker=0, slowdown=float(s)),)))) for s in grid]
    else:
        line = [theory.sync_vs_async_speedup(worker_laws(Cluster(workers=N, compute=Pareto(alpha=a, scale=(a - 1) / a))))
                for a in grid]
    ax.plot(grid, line, "-", color="0.3", label="theory: sync_vs_async_speedup (order statistics)")
    ax.errorbar(frame.x, frame.measured, yerr=2 * frame.se, fmt="o", color="tab:red", capsize=3,
                label="simulated, mean of seeds, 2 s.e.")
    ax.set(xlabel=label, ylabel="async gradients/s over sync gradients/s")
    ax.grid(alpha=0.3)
left.set(xscale="log", yscale="log")
left.legend(loc="upper left")
fig.suptitle("How much more throughput asynchrony gets: one straggler (left), heavy tails (right)")
fig.tight_layout()
if FIGURES:
    fig.savefig(f"{FIGURES}/02_sync_vs_async_throughput.png", dpi=110)
plt.show()'''),
        ("markdown", """The points follow the curve: the synchronous round is the maximum of the n compute times, so one straggler costs
sync a factor s while async loses only that worker's share, and a heavier tail (smaller alpha) inflates the expected
maximum. The check below is the notebook's own assertion: within 5% of the prediction (and 3 standard errors) for
every straggler and every tail with finite variance (alpha > 2; at alpha <= 2 the sample mean of the maximum
converges slowly, and we only report)."""),
        ("code", '''def close(frame):
    return (np.abs(frame.measured - frame.predicted) <= 0.05 * frame.predicted + 3 * frame.se)


assert close(straggler).all(), straggler
assert close(tails[tails.x > 2]).all(), tails
print("throughput within 5% (and 3 s.e.) of the order-statistics prediction")'''),
        ("markdown", """## Time to accuracy: six methods on the same traces

Throughput is not progress: an asynchronous gradient is stale. We run six methods for 1,000 simulated seconds, each at
its own step size tuned on a separate seed from a grid, and report the time until f(x) - f* <= 0.01:

| variant | protocol | what it does with the straggler |
| --- | --- | --- |
| sync | `sync` | waits for it every round |
| async | `async` | applies its gradients, very stale |
| k_of_n | `k_of_n`, k = 6 | drops the 2 slowest each round |
| rennala | `rennala`, batch 8 | only gradients at the current version count |
| ringmaster | `ringmaster`, R = 8 | cancels work staler than 8 |
| delay_adaptive | `async` | step eta min(1, n / tau) (Mishchenko et al. 2022) |"""),
        ("code", '''spec = {
    "name": "sync_vs_async",
    "problem": {"kind": "least_squares", "n_samples": 2000, "dim": 50, "noise": 0.1},
    "cluster": {"workers": N, "compute": {"kind": "exponential", "mean": 1.0}},
    "protocol": {"kind": "async"},
    "algorithm": {"kind": "sgd", "lr": 0.1, "batch_size": 16},
    "run": {"time": 1000.0, "updates": 500000, "record_every": 20},
    "target": {"metric": "suboptimality", "level": 0.01},
    "seeds": 1 if QUICK else 3,
    "sweep": {"cluster.stragglers": [[{"worker": 0, "slowdown": s}] for s in ([1, 100] if QUICK else [1, 3, 10, 30, 100])]},
    "tune": {"algorithm.lr": [0.3, 0.1] if QUICK else [1.0, 0.3, 0.1, 0.03], "seeds": 1},
    "compare": {
        "sync": {"protocol": {"kind": "sync"}},
        "async": {},
        "k_of_n": {"protocol": {"kind": "k_of_n", "k": 6}},
        "rennala": {"protocol": {"kind": "rennala", "batch": 8}},
        "ringmaster": {"protocol": {"kind": "ringmaster", "max_staleness": 8}},
        "delay_adaptive": {"algorithm": {"kind": "delay_adaptive"}},
    },
}
result = run_study(study_from_dict(spec), plots=False, log=lambda *args: None)
table = result.table.assign(s=[json.loads(v)[0]["slowdown"] for v in result.table["cluster.stragglers"]])
shown = table[["variant", "s", "tuned algorithm.lr", "time_to_target_mean", "time_to_target_ci_low",
               "time_to_target_ci_high", "reached"]]
print(shown.round(2).to_string(index=False))'''),
        ("code", '''fig, ax = plt.subplots(figsize=(8, 4.5))
for variant, rows in table.groupby("variant", sort=False):
    ax.plot(rows.s, rows.time_to_target_mean, "o-", label=variant)
    ax.fill_between(rows.s, rows.time_to_target_ci_low, rows.time_to_target_ci_high, alpha=0.15)
ax.set(xscale="log", yscale="log", xlabel="slowdown s of one worker of 8",
       ylabel="simulated seconds to f - f* <= 0.01", title="Time to accuracy as one worker slows down")
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="mean over seeds;\\nband: 95% CI")
ax.grid(alpha=0.3)
fig.tight_layout()
if FIGURES:
    fig.savefig(f"{FIGURES}/02_sync_vs_async.png", dpi=110)
plt.show()'''),
        ("markdown", """## Heavy tails: where synchronous rounds stop keeping up

The same comparison for sync and async SGD as the compute times go from constant (no straggling at all) through
Pareto tails of index 5 down to 1.5, all of mean 1 s. The throughput ratio of the order statistics says how many
more gradients async gets; whether that wins depends on what staleness costs, so we plot the measured ratio of the
times to accuracy (sync over async) next to the predicted throughput ratio: the crossover is where the measured
ratio passes 1."""),
        ("code", '''tails_spec = {**spec, "name": "tails", "sweep": {"cluster.compute": [{"kind": "constant", "value": 1.0}] + [
    {"kind": "pareto", "alpha": a, "scale": (a - 1) / a} for a in ([5.0, 1.5] if QUICK else [5.0, 3.0, 2.0, 1.5])]},
    "compare": {"sync": {"protocol": {"kind": "sync"}}, "async": {}}}
tail_table = run_study(study_from_dict(tails_spec), plots=False, log=lambda *args: None).table
tail_table["law"] = [json.loads(v)["kind"] if json.loads(v)["kind"] == "constant" else
                     f"pareto {json.loads(v)['alpha']:g}" for v in tail_table["cluster.compute"]]
wide = tail_table.pivot(index="law", columns="variant", values="time_to_target_mean")
wide = wide.loc[list(dict.fromkeys(tail_table.law))]
laws = {"constant": [Constant(value=1.0)] * N, **{f"pareto {a:g}": [Pareto(alpha=a, scale=(a - 1) / a)] * N
                                                    for a in ([5.0, 1.5] if QUICK else [5.0, 3.0, 2.0, 1.5])}}
wide["throughput ratio (theory)"] = [theory.sync_vs_async_speedup(laws[law]) for law in wide.index]
wide["time ratio sync / async"] = wide["sync"] / wide["async"]
print(wide.round(3).to_string())
assert wide.loc["constant", "throughput ratio (theory)"] == 1.0  # no variance: the same gradients per second'''),
        ("code", '''fig, ax = plt.subplots(figsize=(7.5, 4.2))
x = np.arange(len(wide))
ax.plot(x, wide["throughput ratio (theory)"], "s-", color="0.3", label="gradients/s, async over sync (theory)")
ax.plot(x, wide["time ratio sync / async"], "o-", color="tab:red", label="time to accuracy, sync over async")
ax.axhline(1.0, color="k", lw=0.8, ls=":")
ax.set_xticks(x, wide.index)
ax.set(xlabel="compute-time law (mean 1 s; heavier tail to the right)", ylabel="ratio (> 1: async ahead)",
       title="Where asynchrony starts to pay: constant times to heavy tails")
ax.legend(loc="upper left", fontsize="small")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()'''),
        ("markdown", """There is no crossover in this setting: even with constant compute times, where both get the same gradients per
second, async SGD reaches the target first (about 1.2 times sooner in the full version): eight small steps a
second, each at its own tuned step, make more progress here than one step on their average. As the tail gets
heavier the time ratio grows with the predicted throughput ratio, and faster than it (about 6.6 against 3.6 at
alpha = 1.5), since every synchronous round pays the maximum of the 8 times. A crossover needs staleness to cost
more than the throughput it buys: look for one with more workers and constant times, or on a problem where stale
gradients hurt more (an ill-conditioned `quadratic`)."""),
        ("markdown", """**What it says.** With equal workers (s = 1) the asynchronous methods already lead: a synchronous round waits for
the maximum of 8 exponential times, about 2.7 times the mean (H_8), while async SGD's staleness (7 on average)
costs less than that at these step sizes. As the straggler slows, `sync` degrades about like s (its round time):
about 60 s at s = 1, 470 s at s = 30, and at s = 100 one seed of three misses the target within 1,000 s (the
point is the mean of the other two). `k_of_n` and `rennala` hardly depend on it (they never wait for it), and
async SGD, Ringmaster and the delay-adaptive step keep the lead at every s: the straggler's rare, very stale
gradients are either cancelled (Ringmaster), scaled down (delay-adaptive), or too rare to hurt (async).
Ringmaster and the delay-adaptive step are the fastest here, about twice as fast as async SGD at its tuned step. Where
theory predicts it: the throughput ratio above (`theory.sync_vs_async_speedup`) bounds how much faster async can
be per gradient, and `reproduce optimal-time` checks the optimal time of Rennala and Ringmaster.

**Try this.** Set `N` to 32; put the heavy tail into the study (`"compute": {"kind": "pareto", "alpha": 1.5,
"scale": 1/3}`); give `k_of_n` k = 7; add `"uplink": {"kind": "constant", "value": 0.5}` to make communication
matter; or scale this study up with `executor=` a Dask client's executor (`asyncsim.study.run_study`)."""),
    ]


def backup_and_codes() -> list[tuple[str, str]]:
    return [
        ("markdown", """# Backup workers and codes: how many results to wait for

**Question.** A synchronous round that waits for all n workers is as slow as its slowest. Waiting only for the
first k (backup workers, Chen et al. 2016) or coding the job so that any k results decode it (Lee et al. 2018)
trades work for time. What is the best k, how does it move as the tail of the compute times gets heavier, and how
do codes compare with backup workers and with replication when the workers are stragglers (the serverless
setting of seed 003)?"""),
        ("code", SETUP + """

from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from asyncsim import theory
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.cluster import ColdStart, Serverless
from asyncsim.timing.codes import MDS, Repetition, Uncoded
from asyncsim.timing.laws import Constant, Pareto, ShiftedExponential
from asyncsim.timing.protocols import Coded, KOfN

ALPHAS = [5.0, 1.5] if QUICK else [5.0, 3.0, 2.0, 1.5]
N_BACKUP, ROUNDS_BACKUP = (8, 1000) if QUICK else (12, 10000)
N_CODED, ROUNDS_CODED = (10, 1000) if QUICK else (20, 5000)"""),
        ("markdown", """## Backup workers: the k that maximizes gradients per second

Under `k_of_n` a round ends at the k-th of the n compute times and keeps k gradients, so it makes
k / E[X_(k:n)] gradients per second; `theory.order_statistic_mean` gives E[X_(k:n)] for any law (exactly for
Pareto, by numerical integration otherwise). We simulate every k for Pareto compute times of mean 1 and tail index
alpha, and compare the measured best k with the predicted one."""),
        ("code", """def pareto(alpha):
    return Pareto(alpha=alpha, scale=(alpha - 1) / alpha)  # mean 1


rows = []
for alpha in ALPHAS:
    cluster = Cluster(workers=N_BACKUP, compute=pareto(alpha))
    for k in range(1, N_BACKUP + 1):
        trace = simulate(cluster, KOfN(k=k), ROUNDS_BACKUP, seed=0)
        rows.append({"alpha": alpha, "k": k,
                     "predicted": k / theory.order_statistic_mean(pareto(alpha), k, n=N_BACKUP),
                     "measured": (trace.status == 0).sum() / trace.update_times()[-1]})
backup = pd.DataFrame(rows)
best = backup.groupby("alpha").apply(lambda g: pd.Series({"predicted k*": int(g.k[g.predicted.idxmax()]),
                                                          "measured k*": int(g.k[g.measured.idxmax()])}),
                                     include_groups=False)
print(f"n = {N_BACKUP} workers, {ROUNDS_BACKUP} rounds per k; gradients per second:")
print(best.to_string())
assert (abs(best["predicted k*"] - best["measured k*"]) <= 1).all(), best  # within one of the prediction
assert best["predicted k*"].is_monotonic_increasing  # a heavier tail (smaller alpha) waits for fewer"""),
        ("code", """fig, ax = plt.subplots(figsize=(8, 4.5))
colors = plt.cm.viridis(np.linspace(0, 0.85, len(ALPHAS)))
for color, (alpha, g) in zip(colors, backup.groupby("alpha", sort=False)):
    ax.plot(g.k, g.predicted, "-", color=color, label=f"alpha = {alpha:g}: k / E[X_(k:n)]")
    ax.plot(g.k, g.measured, "o", color=color, ms=5)
    k_star = best.loc[alpha, "predicted k*"]
    ax.plot([k_star], [g.predicted[g.k == k_star].iloc[0]], "*", color=color, ms=16, mec="k")
ax.set(xlabel=f"k: results each round waits for (of n = {N_BACKUP})", ylabel="gradients per second",
       title="Backup workers: throughput against k (lines: theory; dots: simulated; stars: best k)")
ax.legend(loc="upper left", fontsize="small")
ax.grid(alpha=0.3)
fig.tight_layout()
if FIGURES:
    fig.savefig(f"{FIGURES}/03_backup_workers.png", dpi=110)
plt.show()"""),
        ("markdown", """The heavier the tail, the earlier the throughput peaks (the table above): the last order statistics of a heavy
tail are far out, so waiting for them costs more than the gradients they bring. The measured best k is within one
of the prediction for every tail (asserted above); the curves are flat near their peak, which is why a k one off
costs little.

## Codes against backup workers and replication

Now the job is exact: a matrix-vector product split over n workers. Uncoded, each worker computes 1/n of it and the
round waits for all n; replication (r = 2) gives each block to two workers and waits for one of each pair; an
(n, k) MDS code gives each worker a coded block of 1/k of the rows, and any k results decode the product.
`theory.coded_round_time` has each mean round time for Lee et al.'s load-scaled shifted exponential (a task of load
l takes l (1 + E), E ~ Exp(1)): uncoded (1/n)(1 + H_n), MDS (1/k)(1 + H_n - H_(n-k)). Backup workers (`k_of_n` on
the uncoded split) finish in (1/n) E[X_(k:n)] but deliver only k/n of the product, so per whole product they take
E[X_(k:n)] / k: the MDS round time, without the exact answer."""),
        ("code", """law = ShiftedExponential(shift=1.0, scale=1.0)
lee = Cluster(workers=N_CODED, compute=law)


def round_time(cluster, code):
    trace = simulate(cluster, Coded(code=code), ROUNDS_CODED, seed=1)
    times = np.diff(trace.update_times())
    return times.mean(), times.std(ddof=1) / np.sqrt(len(times))


ks = list(range(1, N_CODED + 1))
coded = pd.DataFrame([{"k": k, "predicted": theory.coded_round_time(MDS(k=k), N_CODED, law),
                       **dict(zip(("measured", "se"), round_time(lee, MDS(k=k))))} for k in ks])
others = {name: (theory.coded_round_time(code, N_CODED, law), *round_time(lee, code))
          for name, code in (("uncoded", Uncoded()), ("repetition r = 2", Repetition(r=2)))}
k_best = theory.best_mds_k(N_CODED, law)
print(f"n = {N_CODED}, {ROUNDS_CODED} rounds: mean round time (s), predicted and measured")
for name, (p, m, se) in others.items():
    print(f"  {name:<18} {p:.4f}  {m:.4f} +- {se:.4f}")
row = coded[coded.k == k_best].iloc[0]
print(f"  {'MDS k* = ' + str(k_best):<18} {row.predicted:.4f}  {row.measured:.4f} +- {row.se:.4f}"
      f"   (gain over uncoded: {others['uncoded'][0] / row.predicted:.2f}x predicted)")
assert (abs(coded.measured - coded.predicted) <= 0.03 * coded.predicted + 4 * coded.se).all(), coded
assert abs(int(coded.k[coded.measured.idxmin()]) - k_best) <= 1"""),
        ("code", """serverless = Cluster(workers=N_CODED, compute=Pareto(alpha=2.5, scale=12.0 / 20 * N_CODED),  # as seed 003
                     serverless=Serverless(cold_start=ColdStart(probability=0.02, time=Constant(value=2.0)),
                                           concurrency=int(1.5 * N_CODED)))
heavy = pd.DataFrame([{"k": k, **dict(zip(("measured", "se"), round_time(serverless, MDS(k=k))))} for k in ks])
heavy_others = {name: round_time(serverless, code) for name, code in (("uncoded", Uncoded()),
                                                                         ("repetition r = 2", Repetition(r=2)))}
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, frame, rest, title in ((left, coded, others, "Lee et al.'s shifted exponential"),
                               (right, heavy, {n: (None, *v) for n, v in heavy_others.items()},
                                "serverless: Pareto(2.5), cold starts, a cap")):
    if "predicted" in frame:
        ax.plot(frame.k, frame.predicted, "-", color="0.3", label="MDS (n, k): theory")
    ax.errorbar(frame.k, frame.measured, yerr=2 * frame.se, fmt="o", color="tab:blue", ms=4, capsize=2,
                label="MDS (n, k): simulated")
    for (name, (_, m, _)), color in zip(rest.items(), ("tab:red", "tab:green")):
        ax.axhline(m, color=color, ls="--", label=f"{name}: simulated")
    ax.set(xlabel=f"k: coded results that decode (of n = {N_CODED})", ylabel="mean round time (s, log scale)",
           title=title, yscale="log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
fig.tight_layout()
if FIGURES:
    fig.savefig(f"{FIGURES}/03_codes.png", dpi=110)
plt.show()
print(f"serverless: best MDS k {int(heavy.k[heavy.measured.idxmin()])} of {N_CODED} (the shifted exponential's: "
      f"{k_best}); uncoded {heavy_others['uncoded'][0]:.2f} s, repetition {heavy_others['repetition r = 2'][0]:.2f} s, "
      f"best MDS {heavy.measured.min():.2f} s per round")"""),
        ("markdown", """**What it says.** Coding buys what backup workers buy, per unit of work, and keeps the answer exact: the best
MDS code beats uncoded computation by the Theta(log n) factor Lee et al. predict (the gain printed above).
Replication doubles every task's load, so with the large fixed part of the shifted exponential it is slower than
uncoded computation; under the heavy serverless tail it sits between uncoded and the best code. The optimum is
interior: a small k makes every task large (load 1/k), a large k
waits for slow workers. Under serverless stragglers (a heavier tail, cold starts, and a cap on concurrent
invocations) the simulated optimum moves, and the gap to uncoded computation grows; there is no closed form for
this case, which is where the simulator earns its keep. `asyncsim reproduce coded-latency` checks the closed forms
at more n and k, and `scenarios/seed003/coded_matvec.yaml` runs gradient descent on such a cluster.

**Try this.** Change `N_CODED` or the law's `scale` (Lee et al.'s 1/mu: a larger one, a stronger straggler effect,
moves k* down); give the serverless cluster `concurrency=N_CODED` (no queueing) or no cold starts; compare
`Repetition(r=4)`; for backup workers, try `LogNormal(mu=0, sigma=1.5)` in `pareto`'s place."""),
    ]


def staleness_aware() -> list[tuple[str, str]]:
    return [
        ("markdown", """# Staleness-aware methods as the workers multiply

**Question.** With n always-busy workers an asynchronous server's updates are n - 1 versions stale on average
(the staleness identity), so staleness grows with parallelism. Which of the methods built to cope with it
(delay-adaptive steps, Koloskova's threshold, FedAsync's staleness-weighted mixing, FedBuff's buffer, Ringmaster's
cancellations) keeps the speedup of more workers, at its own tuned step? We show the staleness distributions next
to the time to accuracy, and check the distributions against their closed forms."""),
        ("code", SETUP + """
import json

from asyncsim import theory
from asyncsim.study import run_study, study_from_dict
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.laws import Exponential
from asyncsim.timing.protocols import Async, Buffered

WORKERS = [4, 16] if QUICK else [4, 8, 16, 32, 64]
UPDATES = 20_000 if QUICK else 200_000"""),
        ("markdown", """## The staleness each worker count brings

For n workers with exponential compute times and no latency, the staleness of an asynchronous update is geometric,
P(tau = j) = (1/n)(1 - 1/n)^j (`theory.staleness_pmf`), with mean n - 1; over a finite run the mean is exactly
n - 1 - (1/K) sum_w ages_w (`theory.async_mean_staleness`, ages_w the updates since worker w's last one). FedBuff's
buffer of K contributions divides it: (n - 1)/K in the long run (`theory.buffered_mean_staleness`)."""),
        ("code", """cluster = {n: Cluster(workers=n, compute=Exponential(mean=1.0)) for n in WORKERS}
rows, pmfs = [], {}
for n, c in cluster.items():
    trace = simulate(c, Async(), UPDATES, seed=0)
    last = pd.Series(np.arange(len(trace.worker))).groupby(trace.worker).max().reindex(range(n)).to_numpy()
    exact = theory.async_mean_staleness(n, ages=UPDATES - 1 - last, updates=UPDATES)
    tau = trace.staleness
    pmfs[n] = np.bincount(tau) / len(tau)
    buffered = simulate(c, Buffered(buffer=4), UPDATES // 4, seed=0)
    rows.append({"n": n, "async mean": tau.mean(), "identity (exact)": exact, "n - 1": n - 1,
                 "KS to geometric": np.abs(np.cumsum(pmfs[n]) - theory.staleness_cdf(n, np.arange(len(pmfs[n])))).max(),
                 "buffered K=4 mean": buffered.staleness.mean(), "(n - 1)/4": (n - 1) / 4})
    assert abs(tau.mean() - exact) < 1e-9  # the identity holds exactly, update for update
staleness = pd.DataFrame(rows)
print(staleness.round(4).to_string(index=False))
assert (staleness["KS to geometric"] < 0.02).all()
assert np.allclose(staleness["buffered K=4 mean"], staleness["(n - 1)/4"], rtol=0.03)"""),
        ("markdown", """## Time to accuracy at each method's tuned step

Six methods on the same least-squares problem and the same traces per seed, for n = 4 to 64 workers; each method's
step is tuned on its own seed from a grid, and the table reports other seeds (time until f - f* <= 0.01):

| variant | protocol | step |
| --- | --- | --- |
| async | `async` | constant: x <- x - eta g(x_{k - tau}) |
| delay_adaptive | `async` | eta min(1, n / tau) (Mishchenko et al. 2022) |
| koloskova | `async` | eta, or min(eta, 1/(4 L tau)) when tau > n (Koloskova et al. 2022) |
| fedasync | `async` | x <- (1 - a) x + a y, a = 0.6 (1 + tau)^(-1/2) (Xie et al. 2019) |
| fedbuff | `buffered`, K = 4 | the mean of 4 changes, each weighted by (1 + tau)^(-1/2) (Nguyen et al. 2022) |
| ringmaster | `ringmaster`, R = 8 | constant, work staler than 8 cancelled (Maranjyan et al. 2025) |"""),
        ("code", """spec = {
    "name": "staleness_aware",
    "problem": {"kind": "least_squares", "n_samples": 2000, "dim": 50, "noise": 0.1},
    "cluster": {"workers": 4, "compute": {"kind": "exponential", "mean": 1.0}},
    "protocol": {"kind": "async"},
    "algorithm": {"kind": "sgd", "lr": 0.1, "batch_size": 16},
    "run": {"time": 200.0, "updates": 500000, "record_every": 10},
    "target": {"metric": "suboptimality", "level": 0.01},
    "seeds": 1 if QUICK else 3,
    "sweep": {"cluster.workers": WORKERS},
    "tune": {"algorithm.lr": [0.1, 0.03] if QUICK else [0.3, 0.1, 0.03, 0.01], "seeds": 1},
    "compare": {
        "async": {},
        "delay_adaptive": {"algorithm": {"kind": "delay_adaptive"}},
        "koloskova": {"algorithm": {"kind": "koloskova"}},
        "fedasync": {"algorithm": {"kind": "fedasync", "alpha": 0.6, "weight": "polynomial", "a": 0.5}},
        "fedbuff": {"protocol": {"kind": "buffered", "buffer": 4},
                    "algorithm": {"kind": "local_sgd", "local_steps": 1, "weight": "polynomial", "a": 0.5}},
        "ringmaster": {"protocol": {"kind": "ringmaster", "max_staleness": 8}},
    },
}
result = run_study(study_from_dict(spec), plots=False, log=lambda *args: None)
table = result.table.rename(columns={"cluster.workers": "n"})
print(table[["variant", "n", "tuned algorithm.lr", "time_to_target_mean", "time_to_target_ci_low",
             "time_to_target_ci_high", "reached"]].round(2).to_string(index=False))"""),
        ("code", """fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1.3, 1]})
for variant, rows in table.groupby("variant", sort=False):
    left.plot(rows.n, rows.time_to_target_mean, "o-", label=variant)
    left.fill_between(rows.n, rows.time_to_target_ci_low, rows.time_to_target_ci_high, alpha=0.15)
left.set(xscale="log", yscale="log", xlabel="workers n", ylabel="simulated seconds to f - f* <= 0.01",
         title="Time to accuracy (mean over seeds, 95% CI)")
left.set_xticks(WORKERS, [str(n) for n in WORKERS])
left.xaxis.set_minor_locator(plt.NullLocator())
left.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
left.grid(alpha=0.3)
colors = plt.cm.viridis(np.linspace(0, 0.85, len(WORKERS)))
for color, (n, pmf) in zip(colors, pmfs.items()):
    j = np.arange(min(len(pmf), 6 * n))
    right.plot(j, pmf[j], ".", color=color, ms=3)
    right.plot(j, theory.staleness_pmf(n, j), "-", color=color, lw=1, label=f"n = {n}")
right.set(yscale="log", ylim=(1e-5, 0.5), xlabel="staleness tau (updates)", ylabel="P(tau)",
          title="Async staleness: simulated (dots), geometric law (lines)")
right.legend(loc="upper right", fontsize="small")
right.grid(alpha=0.3)
fig.tight_layout()
if FIGURES:
    fig.savefig(f"{FIGURES}/04_staleness_aware.png", dpi=110)
plt.show()"""),
        ("markdown", """**What it says.** The distributions follow the geometric law (the KS distances above), and the mean staleness is
the identity's to machine precision (asserted), so the staleness a method faces is known before it runs: n - 1
for the asynchronous server, about (n - 1)/4 behind FedBuff's buffer. At their tuned steps, Ringmaster turns
more workers into less time best: from about 12 s at n = 4 to about 1 s at n = 64, since it cancels the stale
work instead of applying it; Koloskova's threshold and the delay-adaptive step come next, keeping the full step for
fresh gradients. Constant-step async SGD gains less, and only because its tuned step falls from 0.1 to 0.01 as n
grows (its guarantee needs eta ~ 1/tau). FedAsync's mixing is the slowest here: at a = 0.6 it keeps part of the
old model even for a fresh update. FedBuff sits in the middle; its buffer of 4 divides the staleness by 4 but also
the number of updates. `asyncsim reproduce delay-adaptive` checks Mishchenko et al.'s claim
against minibatch SGD, and `reproduce optimal-time` Ringmaster's optimal time.

**Try this.** Make the workers heterogeneous (`"speeds"`, or a straggler as in notebook 02) so that staleness is no
longer geometric; give Ringmaster `max_staleness` n; set FedBuff's `buffer` to 1 (then it is asynchronous local
SGD with staleness weights) or to n; add `"stale": "drop"` to Koloskova's rule; or sweep the noise of the problem,
which sets how much averaging (FedBuff, Rennala) is worth."""),
    ]


def your_own() -> list[tuple[str, str]]:
    return [
        ("markdown", """# Your own algorithm and your own delay law

**Question.** How do I try a method of my own against the built-in ones, under a delay law of my own and on the
delays of a real system, without editing the package? We register a Weibull compute-time law and an SGD whose step
decays with staleness, eta_k = eta exp(-tau_k / T), from this notebook; check them against closed forms; run them in
a study against asynchronous SGD and the delay-adaptive step; and replay a real run's delay log with the new
rule."""),
        ("code", SETUP + """
import math
from dataclasses import dataclass, replace
from pathlib import Path

import asyncsim
from asyncsim import theory
from asyncsim.algorithms.base import Algorithm
from asyncsim.algorithms.delay import asynchronous
from asyncsim.algorithms.sgd import SGD
from asyncsim.params import require
from asyncsim.predict import worker_laws
from asyncsim.study import run_study, study_from_dict
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.laws import DelayLaw
from asyncsim.timing.protocols import Async, Sync"""),
        ("markdown", """## A delay law: Weibull

A law is a frozen dataclass with `sample(rng, size)`, `mean`, and (for the order-statistics formulas) its survival
function; registering it under a `kind` makes it usable in any scenario. Weibull(shape k, scale s):
P(X > x) = exp(-(x/s)^k), E[X] = s Gamma(1 + 1/k); a shape below 1 is a heavy-ish (stretched exponential) tail."""),
        ("code", """for registry, name in ((DelayLaw.registry, "weibull"), (Algorithm.registry, "damped_sgd")):
    if name in registry.kinds():  # (running the cells again registers the classes again)
        registry.unregister(name)


@DelayLaw.registry.register("weibull")
@dataclass(frozen=True, kw_only=True)
class Weibull(DelayLaw):
    \"\"\"X = scale W, P(W > w) = exp(-w^shape); E[X] = scale Gamma(1 + 1/shape).\"\"\"

    shape: float
    scale: float

    def __post_init__(self):
        require(self.shape > 0, "shape", "must be > 0", self.shape)
        require(self.scale > 0, "scale", "must be > 0", self.scale)

    def sample(self, rng, size):
        return self.scale * rng.weibull(self.shape, size)

    @property
    def mean(self):
        return self.scale * math.gamma(1 + 1 / self.shape)

    def _sf(self, x):
        return np.exp(-(np.maximum(x, 0.0) / self.scale) ** self.shape)

    def _cdf(self, x):
        return 1.0 - self._sf(x)


law = Weibull(shape=0.6, scale=1.0 / math.gamma(1 + 1 / 0.6))  # mean 1 s
print(f"Weibull(0.6) of mean {law.mean:.4f} s")"""),
        ("markdown", """## An update rule: SGD with a step that decays with staleness

An algorithm is a frozen dataclass too; a delay-aware SGD only overrides `step(info)`, the step of one update given
its staleness (`info.staleness`), as `algorithms.delay` does for the built-in rules. `accepts` says under which
protocols it is defined (here: the asynchronous ones, from the protocol's capabilities), and `bind` fills its
default T = n from the cluster."""),
        ("code", """@Algorithm.registry.register("damped_sgd")
@dataclass(frozen=True, kw_only=True)
class DampedSGD(SGD):
    \"\"\"x_{k+1} = x_k - eta exp(-tau_k / T) g(x_{k - tau_k}), T = ``horizon`` (default: the workers).\"\"\"

    horizon: float | None = None
    accepts = staticmethod(asynchronous)

    def bind(self, problem, n_workers=None):
        return self if self.horizon is not None else replace(self, horizon=float(n_workers))

    def step(self, info):
        return self.lr * math.exp(-max(info.staleness) / self.horizon)"""),
        ("markdown", """## Checks against closed forms

Before trusting the new pieces: the Weibull law's sample mean against its mean; a synchronous round against the
expected maximum of n Weibull times (`theory.sync_round_time`, by integrating the survival function); the
asynchronous server's mean staleness against the staleness identity n - 1 (any law); and the new rule with
T = infinity against plain SGD, bit for bit."""),
        ("code", """n = 8
cluster = Cluster(workers=n, compute=law)
draws = law.sample(np.random.default_rng(0), 200_000)
assert abs(draws.mean() - law.mean) < 3 * draws.std() / np.sqrt(len(draws))
rounds = np.diff(simulate(cluster, Sync(), 4000 if QUICK else 40000, seed=0).update_times())
measured, se = rounds.mean(), rounds.std(ddof=1) / np.sqrt(len(rounds))
predicted = theory.sync_round_time(worker_laws(cluster))
print(f"sync round: {measured:.4f} +- {se:.4f} s simulated, {predicted:.4f} s predicted (E[max of {n} Weibull "
      f"times])")
assert abs(measured - predicted) < 4 * se + 0.01 * predicted
trace = simulate(cluster, Async(), 50_000, seed=0)
print(f"async mean staleness {trace.staleness.mean():.4f}, identity n - 1 = {n - 1}")
assert abs(trace.staleness.mean() - (n - 1)) < 0.01 * n

base = asyncsim.load_scenario(overrides=["cluster.compute={kind: weibull, shape: 0.6, scale: 0.6646}",
                                         "cluster.stragglers=[]", "run.updates=500"])
plain = asyncsim.run(base)
damped = asyncsim.run(replace(base, algorithm=DampedSGD(lr=base.algorithm.lr, horizon=float("inf"))))
assert np.array_equal(plain.x, damped.x)  # exp(-tau / inf) = 1: plain SGD, bit for bit
print("the law, the rule and the identity agree with their closed forms")"""),
        ("markdown", """## In a study against the built-in rules

A study takes the registered kinds like any other: three rules, 8 and 32 workers, Weibull compute times, each
rule's step tuned on its own seed; run in this process (a process pool would need the classes importable)."""),
        ("code", """spec = {
    "name": "your_own",
    "problem": {"kind": "least_squares", "n_samples": 2000, "dim": 50, "noise": 0.1},
    "cluster": {"workers": 8, "compute": {"kind": "weibull", "shape": 0.6, "scale": 0.6646}},
    "protocol": {"kind": "async"},
    "algorithm": {"kind": "sgd", "lr": 0.1, "batch_size": 16},
    "run": {"time": 150.0, "updates": 500000, "record_every": 10},
    "target": {"metric": "suboptimality", "level": 0.01},
    "seeds": 1 if QUICK else 4,
    "sweep": {"cluster.workers": [8, 32]},
    "tune": {"algorithm.lr": [0.1, 0.03] if QUICK else [0.3, 0.1, 0.03, 0.01], "seeds": 1},
    "compare": {"async_sgd": {}, "delay_adaptive": {"algorithm": {"kind": "delay_adaptive"}},
                "damped_sgd": {"algorithm": {"kind": "damped_sgd"}}},
}
result = run_study(study_from_dict(spec), plots=False, log=lambda *args: None)
table = result.table.rename(columns={"cluster.workers": "n"})
print(table[["variant", "n", "tuned algorithm.lr", "time_to_target_mean", "time_to_target_ci_low",
             "time_to_target_ci_high", "reached"]].round(2).to_string(index=False))"""),
        ("markdown", """## On a real system's delays

`scenarios/real_delays/` ships delay logs measured on real asynchronous runs. The `trace_file` protocol replays
one with its own delays, so the new rule meets the staleness a real system produced (here Sun et al.'s
asynchronous block coordinate descent on MNIST, 3,000 updates)."""),
        ("code", """LOG = Path(asyncsim.__file__).parents[1] / "scenarios" / "data" / "BCD_sun_MNIST.csv"  # (the repository's)


def on_the_log(rule):
    return asyncsim.run(asyncsim.load_scenario(overrides=[
        "problem={kind: logistic, n_samples: 4000, dim: 50, l2: 0.001}", "cluster.stragglers=[]",
        f"protocol={{kind: trace_file, path: {LOG}}}", "run.updates=3000",
        "run.record_every=30",
        f"algorithm={{kind: {rule}, lr: 2.0, batch_size: 16}}"]))


runs = {rule: on_the_log(rule) for rule in ("sgd", "delay_adaptive", "damped_sgd")}
tau = runs["sgd"].trace.staleness
print(f"logged delays: {len(tau)} updates, mean staleness {tau.mean():.2f}, max {tau.max()}")
for rule, res in runs.items():
    print(f"  {rule:<15} final f - f* = {res.metrics.suboptimality.iloc[-1]:.3g}")
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
for rule, res in runs.items():
    left.plot(res.metrics["update"], res.metrics["suboptimality"], label=rule)
right.hist(tau, bins=np.arange(0, tau.max() + 2) - 0.5, color="tab:gray")
left.set(yscale="log", xlabel="update", ylabel="f - f*", title="Logistic regression on the logged delays")
left.legend(loc="upper right")
left.grid(alpha=0.3)
right.set(xlabel="logged staleness (updates)", ylabel="updates", title="The delays of the real run")
fig.tight_layout()
if FIGURES:
    fig.savefig(f"{FIGURES}/06_your_own.png", dpi=110)
plt.show()"""),
        ("markdown", """**What it says.** Two registrations were enough for the new law and the new rule to run everywhere the
built-in ones do: in scenarios, in a study with tuning and confidence intervals, and on a real run's delays. The
closed-form checks come first: a law whose order statistics or a rule whose degenerate case disagree with theory
would be caught here, before any comparison is read. In the study, where each rule has its tuned step, the damped
step reaches the target first at both worker counts. On the log all three rules share the nominal step 2.0, so the
damped rule's lower floor there is largely its smaller effective step (exp(-7/8) = 0.42 of it at the typical
staleness 7), as its slower start shows; the study is the fair comparison.

**Try this.** Change `shape` (below 0.5 the tail is heavy enough for the synchronous round to suffer, as in
notebook 02); make `horizon` smaller than n; add your rule to notebook 04's study; or replay the other logs in
`scenarios/data/` (`BCD_sun_RCV1.csv`, `BCD_sun_CIFAR100.csv`)."""),
    ]


def real_vs_simulated() -> list[tuple[str, str]]:
    return [
        ("markdown", """# Real against simulated: a run on this machine, and a real system's delays

**Question.** How close is the simulator to a real run? We run the quickstart's asynchronous SGD on real worker
processes of this machine, calibrate the simulator's timing laws from the trace the run observed, simulate the
calibrated scenario, and read the fidelity report. Then we take a delay log measured on a real asynchronous
system (Sun et al.'s block coordinate descent), fit the simulator's compute-time law to it, and overlay the two
delay distributions."""),
        ("code", SETUP + """
import shutil
import tempfile
from pathlib import Path

import asyncsim
from asyncsim import theory
from asyncsim.calibrate import calibrated, delay_calibrated, describe, describe_fit, fit_delays, observed
from asyncsim.fidelity import compare, format_report
from asyncsim.real import run_real
from asyncsim.results import write_results
from asyncsim.scenario import from_dict
from asyncsim.timing import simulate

work = Path(tempfile.mkdtemp(prefix="asyncsim-notebook-"))
UPDATES = 300 if QUICK else 3000"""),
        ("markdown", """## A real run, its calibration and the fidelity report

The quickstart (least squares, 8 workers, one straggler emulated 10x slower) on 8 real processes: the main process
is the parameter server and applies the same update rule as the simulator. `observed` reads the compute, link and
server times the run actually had from its trace; `calibrated` makes a scenario with those empirical laws; the
fidelity report (`asyncsim compare`) puts the two runs side by side."""),
        ("code", """scenario = asyncsim.load_scenario(overrides=[f"run.updates={UPDATES}"])
real = run_real(scenario)
write_results(real, work / "real", plots=False)
laws = observed(real.trace, scenario.protocol)
print("timing observed in the real run (seconds):")
print(describe(laws))
sim = asyncsim.run(from_dict(calibrated(scenario, laws)))
write_results(sim, work / "sim", plots=False)
report = compare(work / "sim", work / "real")
print()
print("\\n".join(format_report(report).splitlines()[2:]))  # (its first two lines name the temporary directories)
shutil.rmtree(work)"""),
        ("markdown", """Whatever the machine, one identity must hold in both traces: with n always-busy workers, each update's staleness
sums to n - 1 - (1/K) sum_w ages_w over K updates (`theory.async_mean_staleness`), because every worker reads the
version right after its own write. The real server obeys it as the simulated one does (asserted):"""),
        ("code", """def identity(trace, n):
    applied = trace.used()
    last = pd.Series(np.arange(len(applied.worker))).groupby(applied.worker).max().reindex(range(n)).to_numpy()
    return applied.staleness.mean(), theory.async_mean_staleness(n, ages=len(applied.worker) - 1 - last,
                                                                   updates=len(applied.worker))


for name, result in (("real", real), ("calibrated simulation", sim)):
    measured, exact = identity(result.trace, scenario.cluster.workers)
    print(f"{name:>22}: mean staleness {measured:.4f}, identity {exact:.4f}")
    assert abs(measured - exact) < 1e-9

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
top = int(max(real.trace.staleness.max(), sim.trace.staleness.max())) + 2
for name, result, color in (("real processes", real, "tab:red"), ("calibrated simulation", sim, "tab:blue")):
    left.hist(result.trace.staleness, bins=np.arange(top) - 0.5, density=True, histtype="step", lw=1.6,
              color=color, label=name)
    right.plot(result.metrics["time"], result.metrics["suboptimality"], color=color, label=name)
left.set(yscale="log", xlabel="staleness (updates)", ylabel="fraction of updates",
         title=f"Staleness (KS distance {report.ks:.3f})")
right.set(yscale="log", xlabel="seconds (wall clock for the real run)", ylabel="f - f*", title="Convergence")
for ax in (left, right):
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()"""),
        ("markdown", """## A real system's delays: fit, simulate, overlay

`scenarios/data/BCD_sun_MNIST.csv` holds the delay of each of 3,001 updates of an asynchronous block coordinate
descent run with 8 workers. `fit_delays` searches the coefficient of variation of a lognormal compute-time law
whose simulated delays are closest to the log's (the KS distance, on common random numbers); the staleness
identity says the mean delay must be about n - 1 = 7 whatever the law, and the shape is what the fit adds."""),
        ("code", """LOG = Path(asyncsim.__file__).parents[1] / "scenarios" / "data" / "BCD_sun_MNIST.csv"  # (the repository's)
bcd = asyncsim.load_scenario(Path(asyncsim.__file__).parents[1] / "scenarios" / "real_delays" / "async_bcd.yaml")
fit = fit_delays(bcd, LOG)
print(describe_fit(fit))
fitted = from_dict(delay_calibrated(bcd, fit))
logged = np.loadtxt(LOG)
simulated = simulate(fitted.cluster, fitted.protocol, 20_000, fitted.seed).staleness
print(f"mean delay: log {logged.mean():.3f}, simulation {simulated.mean():.3f}, identity n - 1 = 7")
assert fit.ks <= 0.1  # (asyncsim reproduce delay-logs checks this for every shipped log)
assert abs(logged[100:].mean() - 7) < 0.1  # the identity, on a real system's delays

fig, ax = plt.subplots(figsize=(7, 4))
bins = np.arange(max(logged.max(), simulated.max()) + 2) - 0.5
ax.hist(logged, bins=bins, density=True, alpha=0.5, color="tab:red", label="logged (real system)")
ax.hist(simulated, bins=bins, density=True, histtype="step", lw=1.8, color="tab:blue",
        label=f"simulated, fitted lognormal (cv {fit.cv:.2f})")
ax.set(xlabel="delay (updates)", ylabel="fraction of updates",
       title=f"Asynchronous BCD on MNIST: KS distance {fit.ks:.3f}")
ax.set_ylim(0, 1.35 * ax.get_ylim()[1])  # (room for the legend above the bars)
ax.legend(loc="upper left", fontsize="small")
ax.grid(alpha=0.3)
fig.tight_layout()
if FIGURES:
    fig.savefig(f"{FIGURES}/05_real_delays.png", dpi=110)
plt.show()"""),
        ("markdown", """**What it says.** On this machine the calibrated simulation and the real run share the staleness identity exactly,
and the fidelity report says how close their distributions, throughput and shares are (its verdict line); the
real run's times include this machine's noise, so the numbers move from one execution to the next. On the real
system's log, one fitted parameter (the spread of the compute times) brings the simulated delay distribution within
the KS distance printed above, and the mean delay is the identity's 7: the simulator's delay model is the real
system's, up to that spread.

**Try this.** Set `real.time_scale` (`"real.time_scale=0.01"` in the overrides) to make the real workers also wait
the scenario's emulated times, and compare again; replay `BCD_sun_RCV1.csv` or `PIAG_sun_MNIST.csv` (a draining
server: use `scenarios/real_delays/piag.yaml`); fit a `gamma` law instead (`fit_delays(bcd, LOG, "gamma")`)."""),
    ]


NOTEBOOKS = {"02_sync_vs_async.ipynb": sync_vs_async, "03_backup_workers_and_codes.ipynb": backup_and_codes,
             "04_staleness_aware_methods.ipynb": staleness_aware, "05_real_vs_simulated.ipynb": real_vs_simulated,
             "06_your_own_algorithm.ipynb": your_own}


def notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 1800) -> None:
    import nbclient

    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE)}}).execute()


def main(argv: list[str]) -> None:
    chosen = [a for a in argv if a.endswith(".ipynb")]  # (default: every notebook)
    for name, cells in NOTEBOOKS.items():
        if chosen and name not in chosen:
            continue
        nb = notebook(cells())
        if "--write" not in argv:
            execute(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote notebooks/{name}")


if __name__ == "__main__":
    main(sys.argv[1:])
