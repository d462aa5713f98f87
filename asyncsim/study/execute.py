"""Running a study's runs on an executor, resumably.

Every run is a pure function of its resolved scenario, :func:`run_files`, that returns its result directory as
bytes; any ``concurrent.futures.Executor`` (a process pool, a Dask ``Client(...).get_executor()``) can run it, and
no file system is shared with the workers.  The driver (:func:`execute`) writes each run's files into
``runs/<label>/`` (``tuning/<label>/`` for tuning runs) atomically, with a ``run.key`` file: the hash of the
resolved scenario, the engine and the package version.  A run whose directory holds the same key and its files is
done, so a study that is run again skips it (``force`` recomputes); a run's own plots, when asked for, are drawn
from its files if they are missing.  Run directories that the current study does not use are left alone, so a
study with fewer seeds or points keeps the others for later.

A worker process that dies (a ``BrokenProcessPool``, Dask's ``KilledWorker``) is retried once, then reported; an
error raised by the run itself is reported at once (it would happen again), and a ``ScenarioError`` (a mistake
in the input that only the run could see, such as a ``run.time`` before the first update) stops the study with
that one line.  Ctrl-C or SIGTERM cancels the runs not yet done and leaves the completed ones.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import signal
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from ..params import ScenarioError
from ..results import FILES, ResultDir, draw_plots, read_results, renamed_into
from ..version import __version__
from .spec import Run

KEY_FILE = "run.key"


def run_key(run: Run, engine: str) -> str:
    """The hash that names a run's results: its resolved scenario, the engine, the version."""
    text = f"asyncsim {__version__}\nengine {engine}\n{run.scenario.to_yaml()}"
    return hashlib.sha256(text.encode()).hexdigest()


def run_files(scenario, engine: str = "auto", plots: bool = False) -> dict[str, bytes]:
    """Run ``scenario`` (``asyncsim.run``, BLAS on one thread) and return its result directory as
    {relative path: bytes}: what ``write_results`` writes, made in a private temporary directory.  Without
    ``plots``, an image problem still gets ``plots/reconstruction.png`` (the study shows it)."""
    if "matplotlib.pyplot" not in sys.modules:  # a worker process or the CLI: no display.  (A notebook running
        import matplotlib                        # its study in the kernel keeps its backend, or its own figures
                                                 # would stop showing.)
        matplotlib.use("Agg")
    from ..plotting import save_image
    from ..results import write_results
    from ..runner import run

    result = run(scenario, engine=engine)
    with tempfile.TemporaryDirectory(prefix="asyncsim-run-") as tmp:
        out = Path(tmp) / "run"
        write_results(result, out, plots=plots)
        if not plots and getattr(result.problem, "is_image", False):
            (out / "plots").mkdir()
            save_image(result.problem.reconstruction(result.x), out / "plots" / "reconstruction.png")
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


class Store:
    """The run directories of a study directory ``root``; ``plots``: whether evaluation runs draw their own plots
    (tuning runs never do)."""

    def __init__(self, root: Path, plots: bool = False):
        self.root, self.plots = Path(root), plots

    def plots_of(self, run: Run) -> bool:
        return self.plots and not run.tuning

    def path(self, run: Run) -> Path:
        return self.root / ("tuning" if run.tuning else "runs") / run.label

    def done(self, run: Run, key: str) -> bool:
        """True when the run's directory holds the results of exactly this run, complete."""
        d = self.path(run)
        try:
            same = (d / KEY_FILE).read_text() == key
        except (OSError, UnicodeDecodeError):
            return False
        return same and all((d / f).is_file() for f in FILES)

    def write(self, run: Run, key: str, files: dict[str, bytes]) -> None:
        """Write the run's files into a temporary sibling, then rename it into place in one step."""
        d = self.path(run)
        d.parent.mkdir(parents=True, exist_ok=True)
        with renamed_into(d) as tmp:
            for name, data in files.items():
                target = tmp / name
                if target.resolve().parent != tmp.resolve() / Path(name).parent:  # no '..' from a worker
                    raise ValueError(f"a run returned the file name {name!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            (tmp / KEY_FILE).write_text(key)

    def read(self, run: Run) -> ResultDir:
        return read_results(self.path(run))

    def count(self) -> int:
        """The run directories here (tuning runs included)."""
        return sum(1 for part in ("runs", "tuning") if (self.root / part).is_dir()
                   for d in (self.root / part).iterdir() if d.is_dir() and (d / KEY_FILE).is_file())


class LocalPool(cf.Executor):
    """A pool of ``workers`` processes (forkserver where the platform has it, else spawn) that ignore Ctrl-C (the
    driver stops them) and starts a fresh pool when a worker has died and broken the old one."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: cf.ProcessPoolExecutor | None = None

    def _new(self) -> cf.ProcessPoolExecutor:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:  # workers fork from a server that has imported the package once
            ctx.set_forkserver_preload(["asyncsim.study.execute", "asyncsim.runner"])
            from multiprocessing import forkserver

            with ignoring_interrupts():  # the server, and every worker it forks, starts with Ctrl-C ignored
                forkserver.ensure_running()
        return cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_ignore_interrupts)

    def submit(self, fn, /, *args, **kwargs):
        if self._pool is None:
            self._pool = self._new()
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def terminate(self) -> None:
        """Kill the worker processes at once (Ctrl-C, SIGTERM)."""
        if self._pool is not None:
            for p in list(getattr(self._pool, "_processes", {}).values()):
                p.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)


def local_dask_cluster(workers: int):
    """A ``dask.distributed.LocalCluster`` of ``workers`` single-threaded worker processes for studies, started
    with Ctrl-C ignored in its processes (the driver stops them), without Dask's ``MALLOC_TRIM_THRESHOLD_``
    setting for its workers (that variable turns off glibc's adaptive mmap threshold, and the many small arrays
    of a replay then cost a system call each: runs were about 40% slower), without the workers' statistical
    profiler and with a slower event-loop health tick (both take the interpreter lock from the run).  Use it as a
    context manager."""
    import logging

    import dask
    from distributed import LocalCluster

    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    settings = {"distributed.nanny.pre-spawn-environ": environ,
                "distributed.worker.profile.enabled": False,  # its sampling thread takes the GIL every 10 ms
                "distributed.admin.tick.interval": "500ms",  # as does the event loop's 20 ms health tick
                "distributed.admin.system-monitor.interval": "5s"}
    with dask.config.set(settings), ignoring_interrupts():
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.ERROR)


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def ignoring_interrupts():
    """Ignore Ctrl-C (SIGINT) for a moment while a process starts, so that it inherits the signal ignored and only
    this process handles Ctrl-C (then stops it).  A no-op outside the main thread."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_died(err: BaseException) -> bool:
    """Whether ``err`` says the process running a run died (rather than the run failing)."""
    if isinstance(err, BrokenProcessPool):
        return True
    try:
        from distributed import KilledWorker
    except ImportError:
        return False
    return isinstance(err, KilledWorker)


class Progress:
    """Runs done, in flight and failed, elapsed and remaining time: a tqdm bar on a terminal, else one line per
    finished run through ``log``."""

    def __init__(self, total: int, log: Callable[[str], None] = print, bar: bool = False):
        self.total, self.log, self.done, self.failed = total, log, 0, 0
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True, leave=False)

    def skip(self, n: int) -> None:
        """``n`` runs found complete on disk."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif n:
            self.log(f"  {n} runs already complete (resumed)")

    def finished(self, run: Run, note: str, in_flight: int, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        if self.bar is not None:
            self.bar.set_postfix_str(f"in flight {in_flight}, failed {self.failed}", refresh=False)
            self.bar.update(1)
        else:
            width = len(str(self.total))
            self.log(f"  [{self.done:>{width}}/{self.total}] {run.label:<40} {note}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def execute(runs: list[Run], store: Store, executor: cf.Executor | None, engine: str, force: bool,
            progress: Progress) -> dict[str, str]:
    """Run every run of ``runs`` whose results are not already in ``store`` (all with ``force``); return the
    failures as {label: one-line reason}.  ``executor`` None runs them one after another in this process."""
    keys = {r.label: run_key(r, engine) for r in runs}
    todo = [r for r in runs if force or not store.done(r, keys[r.label])]
    progress.skip(len(runs) - len(todo))
    waiting = {r.label for r in todo}
    for run in runs:  # runs done without their own plots get them from their files
        missing = not (store.path(run) / "plots" / "loss.png").exists()
        if run.label not in waiting and store.plots_of(run) and missing:
            draw_plots(store.path(run))
    failures: dict[str, str] = {}

    def finish(run, files=None, error=None):
        if error is None:
            store.write(run, keys[run.label], files)
            summary = json.loads(files["summary.json"])
            note = (f"{summary['updates']:>7} updates  time {summary['simulated_time']:<10.6g} "
                    f"loss {summary['final_loss']:.6g}")
        else:
            failures[run.label] = error
            note = f"FAILED: {error}"
        progress.finished(run, note, in_flight=len(pending), failed=error is not None)

    pending: dict[cf.Future, tuple[Run, int]] = {}

    def submit(run, attempt):
        pending[executor.submit(run_files, run.scenario, engine, store.plots_of(run))] = (run, attempt)

    if executor is None:
        for run in todo:
            try:
                files = run_files(run.scenario, engine, store.plots_of(run))
            except ScenarioError as err:
                raise ScenarioError(f"run {run.label}: {err}") from None
            except Exception as err:  # noqa: BLE001  (reported with the run's name; the others go on)
                finish(run, error=_reason(err))
            else:
                finish(run, files)
        return failures
    try:
        for run in todo:
            submit(run, 1)
        while pending:
            ready, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for future in ready:
                run, attempt = pending.pop(future)
                try:
                    files = future.result()
                except ScenarioError as err:
                    raise ScenarioError(f"run {run.label}: {err}") from None
                except Exception as err:  # noqa: BLE001  (reported with the run's name; the others go on)
                    if worker_died(err) and attempt == 1:
                        submit(run, 2)
                        continue
                    finish(run, error=("its worker process died twice" if worker_died(err) else _reason(err)))
                else:
                    finish(run, files)
    except BaseException:
        for future in pending:
            future.cancel()
        stop = getattr(executor, "terminate", None)
        if stop is not None:
            stop()
        raise
    return failures


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
