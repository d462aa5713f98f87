"""``delay-logs``: the delay logs measured on real asynchronous runs (Wu et al., ICML 2022) obey the staleness
identity in the form that applies to them, and a simulated cluster calibrated from each log reproduces its delay
distribution (``calibrate.fit_delays``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..calibrate import LAWS, delay_log, fit_delays
from ..fidelity import KS_TOL
from ..params import ParamError, ScenarioError, require, resolve_path
from ..theory import batched_mean_staleness
from .base import Outcome, Reproduction


@dataclass(frozen=True, kw_only=True)
class LogModel:
    """A delay log and the scenario whose cluster is calibrated to it (paths relative to the reproduction file),
    both read when the definition loads, so that a mistake in either is found before anything runs."""

    path: str
    scenario: str

    def __post_init__(self):
        from ..scenario import load_scenario

        for name, check in (("path", lambda p: delay_log(p, "path")), ("scenario", load_scenario)):
            p = resolve_path(getattr(self, name))
            require(p.is_file(), name, "must be an existing file", str(p))
            object.__setattr__(self, name, str(p))
            try:
                check(p)
            except ScenarioError as err:
                raise ParamError(f"{name} ({p.name}): {err}") from None


@Reproduction.registry.register("delay_logs")
@dataclass(frozen=True, kw_only=True)
class DelayLogs(Reproduction):
    """For each log: the staleness identity, exactly, in its finite-K form (``theory.batched_mean_staleness``: n - 1
    for one contribution per update, n/m - 1 when updates batch m on average) within ``identity_tolerance``; and
    the KS distance between the log's delays and those of its scenario calibrated by ``calibrate.fit_delays``
    (compute law ``law``) at most ``ks_tolerance`` (for a per-worker-age matrix: both the fresh gradients' delays
    and the per-iteration maximum)."""

    logs: tuple[LogModel, ...]
    law: str = "lognormal"
    ks_tolerance: float = KS_TOL
    identity_tolerance: float = 1e-9

    def __post_init__(self):
        require(len(self.logs) >= 1, "logs", "must name at least one log", self.logs)
        require(self.law in LAWS, "law", f"must be one of {', '.join(LAWS)}", self.law)
        require(0 < self.ks_tolerance <= 1, "ks_tolerance", "must be in (0, 1]", self.ks_tolerance)
        require(self.identity_tolerance > 0, "identity_tolerance", "must be > 0", self.identity_tolerance)

    def run(self, seed):
        from ..scenario import load_scenario

        rows, fits = [], []
        for model in self.logs:
            log = delay_log(model.path)
            trace = log.trace
            K, C, n = trace.n_updates, len(trace), trace.n_workers
            last = np.full(n, -1)
            np.maximum.at(last, trace.worker, trace.update)
            exact = batched_mean_staleness(n, K, C, K - 1 - last)
            fit = fit_delays(load_scenario(model.scenario), model.path, self.law)
            fits.append(fit)
            rows.append({"log": Path(model.path).name, "layout": "per_worker" if log.per_worker else "per_update",
                         "workers": n, "updates": K, "per_update": C / K, "mean_delay": float(log.fresh.mean()),
                         "long_run_identity": batched_mean_staleness(n, K, C), "finite_K_identity": exact,
                         "identity_gap": abs(float(log.fresh.mean()) - exact), "law": fit.law, "cv": fit.cv,
                         "service_ratio": np.nan if fit.service_ratio is None else fit.service_ratio,
                         "ks": fit.ks, "ks_max_delay": np.nan if fit.ks_max is None else fit.ks_max,
                         "sim_mean_delay": float(fit.fresh.mean()),
                         "log_p99": float(np.percentile(log.fresh, 99)),
                         "sim_p99": float(np.percentile(fit.fresh, 99))})
        table = pd.DataFrame(rows)
        gap = float(table["identity_gap"].max())
        worst_ks = float(np.nanmax(table[["ks", "ks_max_delay"]].to_numpy()))
        passed = bool(gap <= self.identity_tolerance and worst_ks <= self.ks_tolerance)
        criterion = (f"the staleness identity in its finite-K form to {self.identity_tolerance:g} on every log (gap "
                     f"{gap:.1e}) and the calibrated simulation's KS distance to every log <= {self.ks_tolerance:g} "
                     f"(worst {worst_ks:.3f})")
        return Outcome(table, passed, criterion, extra={"fits": fits})

    def plot(self, outcome):
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        fits = outcome.extra["fits"]
        panels = [(fit, "fresh") for fit in fits] + [(fit, "maximum") for fit in fits if fit.log.per_worker]
        cols = 3
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
        for ax, (fit, which) in zip(axes.flat, panels):
            logged = fit.log.fresh if which == "fresh" else fit.log.maximum
            simulated = fit.fresh if which == "fresh" else fit.maximum
            ks = fit.ks if which == "fresh" else fit.ks_max
            top = int(max(logged.max(), np.percentile(simulated, 99.9))) + 1
            bins = np.arange(top + 1) - 0.5
            ax.hist(logged, bins=bins, density=True, color="0.75", label="measured (log)")
            ax.hist(simulated, bins=bins, density=True, histtype="step", lw=1.6, color="C3",
                    label="calibrated simulation")
            name = Path(fit.log.path).stem.replace("_sun_", " ")
            if fit.log.per_worker:
                name += ", fresh gradients" if which == "fresh" else ", per iteration"
            what = "delay" if not fit.log.per_worker else (
                "fresh-gradient delay" if which == "fresh" else "iteration's max delay tau_k")
            ax.set_title(f"{name}: KS {ks:.3f}", fontsize=10)
            ax.set_xlabel(f"{what} (updates)")
            ax.set_ylabel("fraction of updates" if which == "maximum" or not fit.log.per_worker
                          else "fraction of gradients")
            ax.grid(True, alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.flat[0].legend(fontsize=8, loc="upper left")
        rest = list(axes.flat)[len(panels):]
        for ax in rest[1:]:
            ax.axis("off")
        if rest:  # the staleness identity of each log
            ax, table = rest[0], outcome.table
            x = np.arange(len(table))
            ax.bar(x, table["mean_delay"], color="0.75", label="measured mean delay")
            ax.plot(x, table["finite_K_identity"], "k_", ms=22, mew=2, label="identity, finite K (exact)")
            ax.plot(x, table["long_run_identity"], "o", color="C0", label="n/m - 1 (long run)")
            ax.set_xticks(x, [Path(name).stem.replace("_sun_", "\n") for name in table["log"]], fontsize=8)
            ax.set_ylabel("mean delay (updates)")
            ax.set_ylim(0, 1.35 * table["mean_delay"].max())
            ax.set_title("mean delay and the staleness identity", fontsize=10)
            ax.legend(fontsize=7, loc="upper right", ncol=1)
            ax.grid(True, axis="y", alpha=0.3)
        fig.suptitle("Real delay logs (Wu et al., ICML 2022) against the simulated cluster calibrated to each",
                     fontsize=11)
        fig.tight_layout()
        return fig

