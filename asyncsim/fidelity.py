"""The fidelity report: how closely two result directories agree (``asyncsim compare A B``).

Typically A is a simulated run (``"mode": "sim"`` in summary.json; result directories without a ``mode`` count as
simulated) and B a real execution of the same scenario (``"mode": "real"``, times in wall-clock seconds since the
run's start; ``"partial": true`` when it was cut short).  Only the applied rows of each trace are compared.

Quantities (K = number of updates, t_K = apply time of the last applied row, tau = update - read_version):

* staleness: mean, p50, p90, p99 and max of tau for each run, and the two-sample Kolmogorov-Smirnov distance
  D = sup_x |F_A(x) - F_B(x)| between their empirical CDFs (with its p-value, ``scipy.stats.ks_2samp``);
* throughput = K / t_K for each run, compared by the relative difference B/A - 1;
* shares: share_w = count_w / count, the fraction of applied contributions made by worker w, compared by
  max_w |share_B,w - share_A,w| (runs with different worker counts cannot be compared: ValueError);
* phase means over the applied rows: read = t_read_end - t_read, compute = t_done - t_read_end,
  uplink = t_arrive - t_done, server = t_apply - t_arrive;
* loss: the loss at the same fractions of each run (LOSS_FRACTIONS of its last recorded update; the last recorded
  row at or before that update), the final loss, and the time to a common target: target = the worse (higher) of
  the two final losses, time to target = the first recorded time at which a run's loss is <= target.

Verdict: the runs *agree* when all three hold, else they *differ*:
|throughput B/A - 1| <= THROUGHPUT_TOL (0.25), staleness KS D <= KS_TOL (0.10) and max share difference
<= SHARE_TOL (0.05).  Different protocols, algorithms or update counts, and partial runs, are reported as warnings:
the comparison is then not like for like.

A real run with emulated timing (``real.time_scale`` c in its summary.json) compared with a simulation of a
scenario with the same c is compared in simulated seconds: its times are divided by c, so throughput, phase means
and loss against time are on the simulation's clock.  Against anything else (another real run, a scenario
calibrated in wall seconds) both keep their own times.

Output: :func:`write_report` writes ``fidelity.csv`` (:func:`report_table`), ``summary.json`` and
``plots/{staleness,loss,throughput_shares,timeline}.png``.  The CLI's default output directory is
``results/compare/<nameA>-vs-<nameB>``, the names being the result directories' basenames (:func:`default_out`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import ks_2samp

from .results import atomic_directory, read_results
from .summary import Summary
from .timing.trace import TIME_COLUMNS, Trace

THROUGHPUT_TOL = 0.25
"""Largest |throughput_B / throughput_A - 1| for the runs to agree."""
KS_TOL = 0.10
"""Largest Kolmogorov-Smirnov distance between the staleness distributions for the runs to agree."""
SHARE_TOL = 0.05
"""Largest max_w |share_B,w - share_A,w| for the runs to agree."""
LOSS_FRACTIONS = (0.25, 0.5, 1.0)
"""Fractions of the run (of its updates) at which the losses are compared."""
QUANTILES = (50, 90, 99)
PHASES = ("read", "compute", "uplink", "server")


@dataclass(frozen=True, eq=False)
class RunStats:
    """The numbers of one result directory (``trace`` and ``metrics`` are kept for the plots)."""

    dir: str
    name: str
    mode: str
    partial: bool
    protocol: str
    algorithm: str | None
    workers: int
    updates: int
    staleness: dict[str, float]
    throughput: float
    shares: tuple[float, ...]
    phases: dict[str, float]
    loss_at: tuple[float, ...]
    final_loss: float
    trace: Trace = field(repr=False)
    metrics: pd.DataFrame = field(repr=False)
    time_scale: float | None = None
    """A real run's ``real.time_scale`` c: its times were divided by c (None: times as recorded)."""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.mode}{f', time / {self.time_scale:g}' if self.time_scale else ''})"


@dataclass(frozen=True, eq=False)
class FidelityReport:
    """A against B: per-run numbers, the pairwise measures, warnings and the verdict."""

    a: RunStats
    b: RunStats
    ks: float
    ks_pvalue: float
    throughput_diff: float
    share_diff: float
    target_loss: float
    time_to_target: tuple[float, float]
    warnings: tuple[str, ...]
    agree: bool
    verdict: str


def emulated_scale(directory, other) -> float | None:
    """c when ``directory`` is a real run with emulated timing (``real.time_scale`` c) and ``other`` a simulation
    of a scenario with the same c (so in simulated seconds); else None (both on the same clock, e.g. a scenario
    calibrated in wall seconds against the real run)."""
    def summary(d):  # None where there is no readable summary (compare's own reading then says what is wrong)
        try:
            data = json.loads((Path(d) / "summary.json").read_text())
            return Summary.from_json(data) if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):
            return None

    mine, theirs = summary(directory), summary(other)
    c = mine.real.settings.get("time_scale") if mine is not None and mine.real is not None else None
    if not c or theirs is None or theirs.mode != "sim" or not (Path(other) / "scenario.yaml").is_file():
        return None
    other_real = (yaml.safe_load((Path(other) / "scenario.yaml").read_text()) or {}).get("real") or {}
    return c if other_real.get("time_scale") == c else None


def run_stats(directory, scale: float | None = None) -> RunStats:
    """Load a result directory (FileNotFoundError if it is not one) and compute its numbers, with its times
    divided by ``scale`` when given (a real run with emulated timing, see :func:`emulated_scale`)."""
    res = read_results(directory)
    metrics, trace, summary = res.metrics, res.trace, res.summary
    if scale:
        trace = replace(trace, **{c: getattr(trace, c) / scale for c in TIME_COLUMNS + ("t_read_end",)})
        metrics = metrics.assign(time=metrics["time"] / scale)
    used = trace.used()
    tau = used.staleness.astype(float)
    stale = {"mean": float(tau.mean())}
    stale.update({f"p{q}": float(np.percentile(tau, q)) for q in QUANTILES})
    stale["max"] = float(tau.max())
    spans = {"read": used.t_read_end - used.t_read, "compute": used.t_done - used.t_read_end,
             "uplink": used.t_arrive - used.t_done, "server": used.t_apply - used.t_arrive}
    shares = np.bincount(used.worker, minlength=used.n_workers) / len(used)
    path = Path(directory)
    return RunStats(
        dir=str(path), name=path.resolve().name, mode=summary.mode,
        partial=summary.real is not None and summary.real.partial, protocol=used.protocol,
        algorithm=summary.algorithm,
        workers=used.n_workers, updates=used.n_updates, staleness=stale,
        throughput=used.n_updates / float(used.t_apply[-1]), shares=tuple(float(s) for s in shares),
        phases={k: float(v.mean()) for k, v in spans.items()},
        loss_at=tuple(loss_at(metrics, f) for f in LOSS_FRACTIONS), final_loss=float(metrics["loss"].iloc[-1]),
        trace=trace, metrics=metrics, time_scale=scale)


def loss_at(metrics: pd.DataFrame, fraction: float) -> float:
    """The loss of the last recorded row at or before update ``fraction`` x (the last recorded update)."""
    update = metrics["update"].to_numpy()
    row = max(int(np.searchsorted(update, fraction * update[-1], side="right")) - 1, 0)
    return float(metrics["loss"].iloc[row])


def time_to_loss(metrics: pd.DataFrame, target: float) -> float:
    """The first recorded time at which the loss is <= target (NaN if never)."""
    reached = metrics.loc[metrics["loss"] <= target, "time"]
    return float(reached.iloc[0]) if len(reached) else math.nan


def compare(a_dir, b_dir) -> FidelityReport:
    """Compare result directory B against A (see the module docstring for the quantities and the verdict)."""
    a, b = run_stats(a_dir, emulated_scale(a_dir, b_dir)), run_stats(b_dir, emulated_scale(b_dir, a_dir))
    if a.workers != b.workers:
        raise ValueError(f"cannot compare runs with different worker counts: A has {a.workers}, B has {b.workers}")
    ks = ks_2samp(a.trace.used().staleness, b.trace.used().staleness)
    throughput_diff = b.throughput / a.throughput - 1.0
    share_diff = float(np.max(np.abs(np.subtract(b.shares, a.shares))))
    target = max(a.final_loss, b.final_loss)
    warnings = [f"different {what}: A {x}, B {y}; the comparison is not like for like"
                for what, x, y in (("protocols", a.protocol, b.protocol), ("algorithms", a.algorithm, b.algorithm),
                                   ("updates", a.updates, b.updates)) if x != y]
    warnings += [f"{s} is a partial run ({run.updates} updates)" for s, run in (("A", a), ("B", b)) if run.partial]
    checks = [(abs(throughput_diff) <= THROUGHPUT_TOL,
               f"throughput {throughput_diff:+.1%} {{}} ±{THROUGHPUT_TOL:.0%}", ("within", "outside")),
              (ks.statistic <= KS_TOL, f"staleness KS {ks.statistic:.2f} {{}} {KS_TOL:.2f}", ("<=", ">")),
              (share_diff <= SHARE_TOL, f"max share difference {share_diff:.3f} {{}} {SHARE_TOL:.2f}", ("<=", ">"))]
    agree = all(ok for ok, _, _ in checks)
    parts = [text.format(words[0] if ok else words[1]) for ok, text, words in checks]
    verdict = f"VERDICT: {'agree' if agree else 'differ'} ({(', ' if agree else '; ').join(parts)})"
    return FidelityReport(a=a, b=b, ks=float(ks.statistic), ks_pvalue=float(ks.pvalue),
                          throughput_diff=float(throughput_diff), share_diff=share_diff, target_loss=target,
                          time_to_target=(time_to_loss(a.metrics, target), time_to_loss(b.metrics, target)),
                          warnings=tuple(warnings), agree=agree, verdict=verdict)


def report_table(report: FidelityReport) -> pd.DataFrame:
    """One row per quantity: columns quantity, "A (mode)", "B (mode)", difference and difference_is (``B - A``,
    ``B/A - 1``, or ``A vs B`` for the pairwise KS numbers, which have no per-run value)."""
    a, b, nan = report.a, report.b, math.nan
    rows = [("updates", a.updates, b.updates, b.updates - a.updates, "B - A")]
    rows += [(f"staleness {k}", a.staleness[k], b.staleness[k], b.staleness[k] - a.staleness[k], "B - A")
             for k in a.staleness]
    rows += [("staleness KS D", nan, nan, report.ks, "A vs B"),
             ("staleness KS p-value", nan, nan, report.ks_pvalue, "A vs B")]
    rows += [("throughput (updates/s)", a.throughput, b.throughput, report.throughput_diff, "B/A - 1")]
    rows += [(f"share worker {w}", x, y, y - x, "B - A") for w, (x, y) in enumerate(zip(a.shares, b.shares))]
    rows += [("shares max |difference|", nan, nan, report.share_diff, "A vs B")]
    rows += [(f"mean {p} time (s)", a.phases[p], b.phases[p], b.phases[p] - a.phases[p], "B - A") for p in PHASES]
    rows += [(f"loss at {f:.0%} of updates", x, y, y - x, "B - A")
             for f, x, y in zip(LOSS_FRACTIONS, a.loss_at, b.loss_at)]
    ta, tb = report.time_to_target
    rows += [("common loss target", report.target_loss, report.target_loss, 0.0, "B - A"),
             ("time to common loss (s)", ta, tb, tb / ta - 1.0 if ta > 0 else nan, "B/A - 1")]
    columns = ["quantity", f"A ({a.mode})", f"B ({b.mode})", "difference", "difference_is"]
    return pd.DataFrame(rows, columns=columns).astype({columns[1]: float, columns[2]: float, "difference": float})


def format_report(report: FidelityReport) -> str:
    """A plain-text table for the terminal: the two runs, warnings, the table, and the verdict line last."""
    lines = [f"{s}: {run.dir}  ({run.mode}{', partial' if run.partial else ''}, {run.protocol}, "
             f"{run.workers} workers, {run.updates} updates)" for s, run in (("A", report.a), ("B", report.b))]
    lines += [f"warning: {w}" for w in report.warnings]
    table = report_table(report)
    cells = [[str(v) for v in table.columns[:4]]]
    cells += [[q, _num(x), _num(y), f"{d:+.1%}" if how == "B/A - 1" and math.isfinite(d) else _num(d)]
              for q, x, y, d, how in table.itertuples(index=False)]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    for row in cells:
        lines.append("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    lines.append(report.verdict)
    return "\n".join(lines)


def _num(x: float) -> str:
    return "" if isinstance(x, float) and math.isnan(x) else f"{x:.4g}"


def report_summary(report: FidelityReport) -> dict:
    """The numbers of the report's summary.json (plain data)."""
    def run(r: RunStats) -> dict:
        return {"dir": r.dir, "name": r.name, "mode": r.mode, "partial": r.partial, "protocol": r.protocol,
                "algorithm": r.algorithm, "workers": r.workers, "updates": r.updates, "staleness": r.staleness,
                "throughput": r.throughput, "shares": list(r.shares), "phases": r.phases,
                "loss_at": dict(zip([str(f) for f in LOSS_FRACTIONS], r.loss_at)), "final_loss": r.final_loss}

    return {"a": run(report.a), "b": run(report.b), "ks": report.ks, "ks_pvalue": report.ks_pvalue,
            "throughput_diff": report.throughput_diff, "share_diff": report.share_diff,
            "target_loss": report.target_loss, "time_to_target": list(report.time_to_target),
            "thresholds": {"throughput": THROUGHPUT_TOL, "ks": KS_TOL, "share": SHARE_TOL},
            "warnings": list(report.warnings), "agree": report.agree, "verdict": report.verdict}


def default_out(a_dir, b_dir) -> Path:
    """``results/compare/<nameA>-vs-<nameB>``, the names being the result directories' basenames."""
    return Path("results") / "compare" / f"{Path(a_dir).resolve().name}-vs-{Path(b_dir).resolve().name}"


def write_report(report: FidelityReport, out_dir, plots: bool = True) -> Path:
    """Write fidelity.csv, summary.json and plots/*.png into ``out_dir`` atomically; return it."""
    with atomic_directory(out_dir) as tmp:
        report_table(report).to_csv(tmp / "fidelity.csv", index=False, float_format="%.17g")
        (tmp / "summary.json").write_text(json.dumps(report_summary(report), indent=2) + "\n")
        if plots:
            from . import plotting  # matplotlib is only imported when plots are made

            (tmp / "plots").mkdir()
            a, b = report.a, report.b
            labels = (f"A: {a.label}", f"B: {b.label}")
            figures = {
                "staleness": plotting.plot_fidelity_staleness(a.trace.used().staleness, b.trace.used().staleness,
                                                              labels, report.ks),
                "loss": plotting.plot_fidelity_loss(a.metrics, b.metrics, labels, report.target_loss),
                "throughput_shares": plotting.plot_fidelity_shares(a.shares, b.shares, labels,
                                                                   (a.throughput, b.throughput)),
                "timeline": plotting.plot_fidelity_timeline(a.trace.to_frame(), b.trace.to_frame(), labels),
            }
            for name, fig in figures.items():
                plotting.save_figure(fig, tmp / "plots" / f"{name}.png")
    return Path(out_dir)
