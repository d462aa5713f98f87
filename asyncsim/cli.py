"""Command line: ``asyncsim run | study | validate | predict | plot | stability | compare | calibrate | reproduce``.

User mistakes (a bad scenario or option, a missing or damaged file, an output directory that is not a result or
is in use by another run, a directory that cannot be written) print one line ``error: ...`` and exit 2, before
anything is computed; a real run that fails (a worker died or raised) prints one line and exits 1, and so does a
reproduction that FAILs, and a study some of whose runs failed.  Ctrl-C exits 130 and SIGTERM (a batch scheduler's
time limit) 143, both with one line and no result or temporary directory left behind (a study keeps its completed
runs, which the next invocation reuses).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

from .params import ParamError, ScenarioError, kind
from .timing.trace import TraceError
from .version import __version__

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so that every cleanup runs."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``error: argument --seed: invalid int value: 'abc'``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup that follows is not interrupted again
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="asyncsim", description="Discrete-event simulator of asynchronous optimization.")
    parser.add_argument("--version", action="version", version=f"asyncsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_run = sub.add_parser("run", help="run a scenario and write its results")
    p_run.add_argument("scenario", nargs="?", help="scenario YAML file (default: the built-in quickstart)")
    p_run.add_argument("--out", help="result directory (default: results/<scenario name>)")
    _scenario_options(p_run)
    p_run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p_run.add_argument("--mode", choices=("sim", "real"), default="sim",
                       help="sim: simulate the timing (default); real: run the update rules on worker processes "
                            "and record the observed trace (settings in the scenario's real: section)")
    _engine_option(p_run)
    _study_options(p_run)

    p_study = sub.add_parser("study", help="run a study file (variants x swept values x seeds, tuned steps) on "
                                           "local processes or Dask, resumably")
    p_study.add_argument("scenario", metavar="study", help="study YAML file (a scenario with a compare section)")
    p_study.add_argument("--out", help="study directory (default: results/<study name>)")
    _scenario_options(p_study, "the study's first evaluation seed (seeds: N counts from it)")
    p_study.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _engine_option(p_study)
    _study_options(p_study)

    p_val = sub.add_parser("validate", help="check a scenario file without running it (the same checks as run)")
    p_val.add_argument("scenario", nargs="?", help="scenario YAML file (default: the built-in quickstart)")
    _scenario_options(p_val)
    p_val.add_argument("--mode", choices=("sim", "real"), default="sim",
                       help="also check what a real run needs (--mode real)")

    p_pred = sub.add_parser("predict", help="closed-form predictions next to the values a simulation measures")
    p_pred.add_argument("scenario", nargs="?", help="scenario YAML file (default: the built-in quickstart)")
    _scenario_options(p_pred)
    _engine_option(p_pred)
    p_pred.add_argument("--updates", type=int, help="updates per simulation (default: run.updates, at least 20000)")
    p_pred.add_argument("--csv", help="also write the table to this CSV file")

    p_plot = sub.add_parser("plot", help="redraw the plots of a result directory")
    p_plot.add_argument("result", help="a result directory written by 'asyncsim run'")

    p_stab = sub.add_parser("stability", help="the EASGD stability map: simulated divergence against the spectral "
                                                "radius, over eta h, alpha and p")
    p_stab.add_argument("--out", default="results/easgd_stability", help="output directory (map.csv, map.png)")
    p_stab.add_argument("--rounds", type=int, default=1000, help="synchronous rounds per run (default 1000)")

    p_cmp = sub.add_parser("compare", help="fidelity report of two result directories (e.g. simulated vs real)")
    p_cmp.add_argument("a", help="a result directory (the reference, e.g. the simulation)")
    p_cmp.add_argument("b", help="another result directory (e.g. the real run)")
    p_cmp.add_argument("--out", help="report directory (default: results/compare/<A>-vs-<B>)")
    p_cmp.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    p_cal = sub.add_parser("calibrate", help="write a copy of a scenario with timing laws measured on this machine")
    p_cal.add_argument("scenario", nargs="?", help="scenario YAML file (default: the built-in quickstart)")
    _scenario_options(p_cal)
    p_cal.add_argument("--from", dest="source", metavar="RESULT",
                       help="take the laws from a real run's observed trace (a result directory of --mode real) "
                            "instead of timing the computation here")
    p_cal.add_argument("--from-delays", dest="delays", metavar="LOG",
                       help="fit the cluster's compute-time dispersion (and a draining server's service time) to a "
                            "delay log, by the KS distance of the simulated delays")
    p_cal.add_argument("--law", help="the compute-time law fitted with --from-delays: lognormal (default) or gamma")
    p_cal.add_argument("--steps", type=int, help="steps to time without --from or --from-delays (default 200)")
    p_cal.add_argument("--out", help="scenario file to write (default: results/<name>-calibrated.yaml)")

    p_rep = sub.add_parser("reproduce", help="run a named reproduction of a published result: measured against "
                                             "predicted, then PASS or FAIL with the criterion")
    p_rep.add_argument("name", nargs="?", help="a reproduction name (see --list) or a reproduction YAML file")
    p_rep.add_argument("--list", action="store_true", help="list the reproductions with their sources")
    p_rep.add_argument("--full", action="store_true", help="the full version (default: the quick one, under a minute)")
    p_rep.add_argument("--out", help="output directory (default: results/reproductions/<name>[-full])")
    p_rep.add_argument("--no-plots", action="store_true", help="skip the PNG plot")

    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed in one line
        return stop.code
    previous = _install(signal.SIGTERM, _on_sigterm)
    try:
        return {"run": _run, "study": _study_command, "validate": _validate, "predict": _predict, "plot": _plot,
                "stability": _stability, "compare": _compare, "calibrate": _calibrate,
                "reproduce": _reproduce}[args.command](args)
    except (ScenarioError, ParamError, TraceError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # the file system refused (permissions, a full disk): say what and where
        where = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as err:
        what = {"RealRunError": "real run", "StudyFailed": "study"}.get(type(err).__name__)
        if what is None:
            raise
        print(f"error: {what}: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; no result was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated (SIGTERM); no result was written", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        _install(signal.SIGTERM, previous)


def _install(signum, handler):
    """Set a signal handler where Python allows it (the main thread), returning the previous one."""
    try:
        return signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    except ValueError:  # not the main thread: leave the signal as it is
        return None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _reproduce(args) -> int:
    import time

    from .reproduce import available, load, markdown, run_definition, verdict, write_outcome
    from .results import check_replaceable, output_lock

    if args.list:
        for r in available():
            print(f"{r.name:22s} {r.title}\n{'':22s} source: {r.source}")
        return 0
    if args.name is None:
        raise ScenarioError("reproduce needs a NAME (see asyncsim reproduce --list)")
    definition = load(args.name)
    out = Path(args.out) if args.out else Path("results") / "reproductions" / (
        definition.name + ("-full" if args.full else ""))
    check_replaceable(out)
    print(f"{definition.name} ({'full' if args.full else 'quick'} version): {definition.title}")
    print(f"source: {definition.source}")
    start = time.perf_counter()
    with output_lock(out):
        outcome = run_definition(definition, args.full)
        write_outcome(definition, outcome, out, args.full, plots=not args.no_plots)
    print(markdown(outcome.table))
    for note in outcome.notes:
        print(note)
    print(f"results in {out}/ (table.csv, table.md, summary.json{', plot.png' if not args.no_plots else ''}); "
          f"{time.perf_counter() - start:.1f} s")
    print(verdict(outcome))
    return 0 if outcome.passed else EXIT_FAILED


def _scenario_options(p: argparse.ArgumentParser, seed: str = "replace the scenario's root seed (of a study: its "
                      "first evaluation seed)") -> None:
    p.add_argument("--seed", type=int, help=seed)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario value, e.g. --set algorithm.lr=0.02 (repeatable)")


def _study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, help="study runs at once: local processes (default: the machine's "
                                               "cores; 1 runs them in this process), or Dask workers with --dask local")
    p.add_argument("--dask", metavar="ADDRESS", help="run the study on Dask distributed: 'local' starts a "
                                                     "LocalCluster, tcp://host:8786 connects to a scheduler")
    p.add_argument("--seeds", type=int, help="evaluation seeds per cell (replaces the study file's seeds)")
    p.add_argument("--force", action="store_true", help="recompute runs whose results are already in --out")
    p.add_argument("--run-plots", action="store_true", help="also draw every run's own plots (slower; "
                                                           "asyncsim plot runs/<label> draws one later)")


def _engine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("auto", "simpy", "fast"), default="auto",
                   help="trace generator: the vectorized fast path where it is exact (auto), or always SimPy")


def _load(args, mode: str = "sim"):
    """The scenario of the command line (``--mode real``: with the real mode's checks too)."""
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario, args.overrides, args.seed)
    if mode == "real":
        from .real import check_real

        check_real(scenario)
    return scenario


def _study(args):
    """The study in the scenario file (a ``compare`` section), or None for a plain scenario."""
    from .files import load_yaml
    from .params import relative_to
    from .study import is_study, study_from_dict

    if args.scenario is None:
        return None
    path = Path(args.scenario)
    data = load_yaml(path, "scenario file")
    if not is_study(data):
        return None
    if getattr(args, "mode", "sim") == "real":
        raise ScenarioError(f"--mode real runs one scenario; {path} is a study (a compare section)")
    if getattr(args, "seeds", None) is not None and not 1 <= args.seeds <= 10_000:
        raise ScenarioError(f"--seeds must be between 1 and 10000, got {args.seeds}")
    with relative_to(path.parent):
        return study_from_dict(data, args.overrides, args.seed, getattr(args, "seeds", None))


def _describe_study(study) -> str:
    def count(n: int, what: str) -> str:
        return f"{n} {what}{'s' * (n != 1)}"

    tuning = len(study.tuning_runs())
    return (f"{count(len(study.cells), 'cell')} ({count(len(study.variants), 'variant')} x "
            f"{count(len(study.points), 'point')}) x {count(len(study.seeds), 'seed')} = "
            f"{count(len(study.cells) * len(study.seeds), 'run')}"
            + (f", plus {count(tuning, 'tuning run')} of {', '.join(study.tuned_keys)}" if tuning else ""))


def _validate(args) -> int:
    study = _study(args)
    if study is not None:
        print(f"ok: study {study.name}: {_describe_study(study)}")
        return 0
    s = _load(args, args.mode)
    compressed = "" if s.compression is None else f" compressed by {kind(s.compression)}"
    print(f"ok: {s.name} ({s.cluster.workers} workers, protocol {kind(s.protocol)}, algorithm {kind(s.algorithm)}"
          f"{compressed}, "
          f"problem {kind(s.problem)}, {s.run.updates} updates)" + (" in real mode" if args.mode == "real" else ""))
    return 0


def _out(args, name: str) -> Path:
    """The output directory, checked before anything runs: not a directory of other files (FileExistsError)."""
    from .results import check_replaceable

    out = Path(args.out) if args.out else Path("results") / name
    check_replaceable(out)
    return out


def _run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .results import output_lock, write_results
    from .runner import run

    study = _study(args)
    if study is not None:
        return _run_study(args, study)
    given = [f"--{name}" for name in ("workers", "dask", "seeds") if getattr(args, name) is not None]
    given += [f"--{name.replace('_', '-')}" for name in ("force", "run_plots") if getattr(args, name)]
    if given:
        raise ScenarioError(f"{given[0]} applies to study files (a compare section); "
                            f"{args.scenario or 'the built-in quickstart'} is a single scenario")
    scenario = _load(args, args.mode)
    out = _out(args, scenario.name)
    with output_lock(out):
        with _bar("real run" if args.mode == "real" else "replay") as progress:
            if args.mode == "real":
                from .real import run_real

                result = run_real(scenario, progress=progress)
            else:
                result = run(scenario, progress=progress, engine=args.engine)
        write_results(result, out, plots=not args.no_plots)
    print(format_summary(result.summary))
    print(f"results in {out}/ (scenario.yaml, trace.parquet, metrics.csv, summary.json"
          f"{', plots/' if not args.no_plots else ''})")
    return 0


def _study_command(args) -> int:
    study = _study(args)
    if study is None:
        _load(args)  # a file that is no scenario either gets the scenario's message, as from validate
        raise ScenarioError(f"{args.scenario} is not a study file (it has no compare section); use asyncsim run")
    return _run_study(args, study)


def _run_study(args, study) -> int:
    import time
    from contextlib import ExitStack

    import matplotlib

    matplotlib.use("Agg")
    from .results import output_lock
    from .study import format_table, run_study

    if args.workers is not None and not 1 <= args.workers <= 4096:
        raise ScenarioError(f"--workers must be between 1 and 4096, got {args.workers}")
    out = _out(args, study.name)
    start = time.perf_counter()
    result = stop = None
    previous = signal.getsignal(signal.SIGINT)
    try:
        with ExitStack() as stack:
            stack.enter_context(output_lock(out))
            executor, where = _executor(args, stack)
            print(f"{study.name}: {_describe_study(study)}, {where}")
            try:
                result = run_study(study, out, executor, engine=args.engine, plots=not args.no_plots,
                                   run_plots=args.run_plots, force=args.force, bar=sys.stderr.isatty())
            finally:
                _install(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C does not cut the clean-up short
    except (KeyboardInterrupt, Terminated) as err:  # while running, or while the executor started
        stop = err
    finally:
        _install(signal.SIGINT, previous)
    if stop is not None:
        from .study import Store

        kept = Store(out).count()
        print(f"{'interrupted' if isinstance(stop, KeyboardInterrupt) else 'terminated (SIGTERM)'}; "
              + (f"{kept} completed runs are kept in {out}/; run the study again to resume" if kept else
                 "no run was complete, nothing was kept"), file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(stop, KeyboardInterrupt) else EXIT_TERMINATED
    print(format_table(result, study))
    print(f"results in {out}/ (runs/, runs.parquet, curves.parquet, table.csv, table.md"
          f"{', tuning.csv' if study.tune else ''}, summary.json{', plots/' if not args.no_plots else ''}); "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _executor(args, stack):
    """The executor of a study and a few words on it: None (this process), a LocalPool, or Dask's."""
    import os

    workers = args.workers or os.cpu_count() or 1
    if args.dask is not None:
        try:
            from distributed import Client
        except ImportError:
            raise ScenarioError("--dask needs Dask distributed, which is not installed: python -m pip install "
                                "'dask[distributed]' (or the dask extra)") from None
        if args.dask == "local":
            from .study.execute import local_dask_cluster

            cluster = stack.enter_context(local_dask_cluster(workers))  # a Ctrl-C while it starts is not seen
            client = stack.enter_context(Client(cluster))
            return client.get_executor(), f"on a Dask LocalCluster of {workers} worker processes"
        try:
            client = stack.enter_context(Client(args.dask, timeout="5s"))
        except (OSError, TimeoutError, ValueError) as err:
            raise ScenarioError(f"--dask {args.dask}: cannot connect to a Dask scheduler there ({_one_line(err)})"
                                ) from None
        return client.get_executor(), f"on the Dask scheduler at {args.dask}"
    if workers == 1:
        return None, "one at a time in this process"
    from .study import LocalPool

    pool = LocalPool(workers)
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    return pool, f"on {workers} local processes"


def _predict(args) -> int:
    from .predict import format_table, predict

    scenario = _load(args)
    if args.updates is not None and args.updates < 1:
        raise ScenarioError(f"--updates must be >= 1, got {args.updates}")
    table = predict(scenario, args.updates, args.engine)
    print(format_table(table, scenario))
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.10g")
        print(f"table in {args.csv}")
    return 0


def _plot(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .results import draw_plots

    d = Path(args.result)
    if (d / "runs").is_dir() and not (d / "metrics.csv").exists():
        raise ScenarioError(f"{d} is a study directory: asyncsim study draws its plots/ (run it again: completed "
                            f"runs are reused); asyncsim plot {d / 'runs'}/<label> draws one run's")
    names = draw_plots(d)
    print(f"wrote {', '.join('plots/' + n for n in names)} in {d}/")
    return 0


def _stability(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from .plotting import plot_stability_map, save_figure
    from .results import atomic_directory
    from .stability import agreement, easgd_map

    if args.rounds < 1:
        raise ScenarioError(f"--rounds must be >= 1, got {args.rounds}")
    out = Path(args.out)
    with atomic_directory(out) as tmp:  # checked, locked and left clean before the map is computed
        frame = easgd_map(np.linspace(0.02, 2.5, 40), np.linspace(0.01, 0.99, 30), (1, 2, 4, 8), args.rounds)
        agree, compared = agreement(frame)
        frame.to_csv(tmp / "map.csv", index=False, float_format="%.10g")
        save_figure(plot_stability_map(frame), tmp / "map.png")
        (tmp / "summary.json").write_text(json.dumps({"study": "easgd_stability", "rounds": args.rounds,
                                                      "points": len(frame), "compared": compared,
                                                      "agree": agree}, indent=2) + "\n")
    print(f"synchronous EASGD on h x^2 / 2: {len(frame)} grid points (eta h, alpha, p = 1, 2, 4, 8), "
          f"{args.rounds} rounds each")
    print(f"observed divergence agrees with spectral radius > 1 at {agree} of {compared} points "
          f"(|radius - 1| > 1e-3; {len(frame) - compared} left out)")
    print(f"results in {out}/ (map.csv, map.png, summary.json)")
    return 0


def _compare(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .fidelity import compare, default_out, format_report, write_report
    from .results import check_replaceable, output_lock

    out = Path(args.out) if args.out else default_out(args.a, args.b)
    for given in (args.a, args.b):
        inside = Path(given).resolve()
        if out.resolve() == inside or out.resolve() in inside.parents:
            raise FileExistsError(f"--out {out} is (or holds) the compared result {given}; choose another")
    check_replaceable(out)
    with output_lock(out):
        report = compare(args.a, args.b)
        write_report(report, out, plots=not args.no_plots)
    print(format_report(report))
    print(f"report in {out}/ (fidelity.csv, summary.json{', plots/' if not args.no_plots else ''})")
    return 0


def _calibrate(args) -> int:
    from .calibrate import (calibrated, check_source, delay_calibrated, describe, describe_fit, fit_delays, measure,
                            observed)
    from .results import read_results

    if args.source and args.delays:
        raise ScenarioError("give one of --from (a real run) and --from-delays (a delay log), not both")
    if args.law and not args.delays:
        raise ScenarioError("--law is the law fitted with --from-delays; give --from-delays LOG")
    if args.steps is not None and (args.source or args.delays):
        raise ScenarioError("--steps is the number of steps timed on this machine; it does not apply with --from "
                            "or --from-delays")
    scenario = _load(args)
    out = Path(args.out) if args.out else Path("results") / f"{scenario.name}-calibrated.yaml"
    _check_out_file(out, [args.scenario, args.delays, args.source])
    if args.delays:
        fit = fit_delays(scenario, args.delays, args.law or "lognormal")
        data, where = delay_calibrated(scenario, fit), f"the delay log {args.delays}"
        _write_scenario(out, f"# {scenario.name} with timing fitted to {where} (asyncsim calibrate)\n", data)
        print(f"fitted to {where} ({fit.log.updates} updates, {fit.log.workers} workers):")
        print(describe_fit(fit))
        print(f"calibrated scenario in {out}")
        return 0
    if args.source:
        source = read_results(args.source)
        check_source(scenario, source, args.source)
        laws, where = observed(source.trace, scenario.protocol), f"the observed trace in {args.source}"
    else:
        steps = 200 if args.steps is None else args.steps
        laws, where = measure(scenario, steps), f"{steps} timed steps on this machine"
    _write_scenario(out, f"# {scenario.name} with timing laws measured from {where} (asyncsim calibrate)\n",
                    calibrated(scenario, laws))
    print(f"measured from {where} (seconds):")
    print(describe(laws))
    print(f"calibrated scenario in {out}")
    return 0


def _check_out_file(out: Path, inputs) -> None:
    """Refuse, before any work, an ``--out`` file that cannot be written or that is one of the command's inputs."""
    if out.is_dir():
        raise ScenarioError(f"--out {out} is a directory; give the calibrated scenario's file name")
    for given in inputs:
        if given and out.resolve() == Path(given).resolve():
            raise ScenarioError(f"--out {out} is an input of this command ({given}); give another file")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        why = "not a directory" if not parent.is_dir() else "permission denied"
        raise ScenarioError(f"--out {out}: cannot write in {str(parent)!r} ({why})")


def _write_scenario(out: Path, header: str, data: dict) -> None:
    """Write a scenario file atomically (a temporary file renamed into place)."""
    import yaml

    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))
        tmp.replace(out)
    except BaseException as err:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ScenarioError(f"--out {out}: cannot write ({err.strerror or err})") from None
        raise


@contextmanager
def _bar(what: str):
    """A progress callback (done, total) drawing a tqdm bar of updates on a terminal, else None."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(desc=what, unit="update", file=sys.stderr, dynamic_ncols=True, leave=False, mininterval=0,
               miniters=1)  # the run calls back once per 1% of its updates

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def format_summary(s) -> str:
    """The short table printed after a run (``s``: a :class:`~asyncsim.summary.Summary`)."""
    st = s.staleness
    real = s.real is not None
    loss = f"{s.final_loss:.6g}"
    if s.final_suboptimality is not None:
        loss += f"   (f - f* = {s.final_suboptimality:.3g})"
    lines = [
        f"{s.scenario}  ({s.protocol}, {s.algorithm}, {s.workers} workers, seed {s.seed})",
        f"  updates          {s.updates}",
        f"  {'wall-clock time ' if real else 'simulated time  '} {s.simulated_time:.6g} s   "
        f"({s.updates_per_second:.4g} updates/s)",
        f"  final loss       {loss}",
        f"  staleness        mean {st.mean:.3f}   p50 {st.p50:g}   p99 {st.p99:g}   max {st.max}",
        "  unused work      " + "   ".join(f"{k} {v}" for k, v in s.unused.items()),
        f"  engine           {'real processes (' + s.real.settings['start_method'] + ')' if real else s.engine or 'simpy'}",
    ] + (_real_lines(s.real) if real else []) + (
        [f"  stopped          at update {s.stopped_at} (the algorithm finished: e.g. a declared local minimum)"]
        if s.stopped_at is not None else []) + (
        [f"  reached          run.stop_at at update {s.reached_at}"] if s.reached_at is not None else []) + [
        f"  wall time        {s.wall_time_s:.2f} s",
    ]
    if real and s.real.partial:
        lines.append(f"  PARTIAL          {s.updates} of {s.real.updates_requested} updates (stopped by "
                     f"{s.real.stopped_by})")
    if s.diverged_at is not None:
        lines.append(f"  DIVERGED         loss not finite at update {s.diverged_at}; try a smaller algorithm.lr")
    return "\n".join(lines)


def _real_lines(r) -> list[str]:
    check = r.replay_check
    if check["exact"] is None:
        verdict = f"final loss {check['replay_final_loss']:.6g} (not exact: {check['reason']})"
    elif check["exact"]:
        verdict = "final parameters equal bit for bit"
    else:
        verdict = f"MISMATCH, max |difference| {check['max_abs_difference']:.3g}"
    lost = [f"worker {x['worker']} at update {x['at_update']}" for x in r.lost_workers]
    return [f"  replay check     {verdict}"] + ([f"  lost workers     {', '.join(lost)}"] if lost else [])


if __name__ == "__main__":
    sys.exit(main())
