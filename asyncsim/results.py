"""Writing and reading result directories (docs/ARCHITECTURE.md, "Results").

A result directory holds the resolved ``scenario.yaml``, ``trace.parquet``, ``metrics.csv``, ``summary.json`` and
``plots/*.png``.  It is written into a temporary sibling directory and renamed into place in one step, so an
interrupted run never leaves a directory that looks complete; the temporary directory is removed on any error,
Ctrl-C or SIGTERM.  While a run writes (and, from the CLI, while it runs) it holds a lock beside its output,
``.<name>.lock``, so a second run on the same directory is refused at once; the lock is an advisory ``flock``,
released by the system when its process dies, so a crashed run never leaves it held.  Directories are created
with the permissions of the user's umask, like any other output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .params import ScenarioError
from .summary import Summary
from .timing.trace import Trace, TraceError

try:
    import fcntl
except ImportError:  # not on Windows: runs there are not locked against each other
    fcntl = None

FILES = ("scenario.yaml", "trace.parquet", "metrics.csv", "summary.json")
METRICS = ("update", "time", "loss")
"""The columns every metrics.csv has (others depend on the problem and the algorithm)."""
WRITTEN = {*FILES, "plots", "comparison.csv", "table.csv", "table.md", "plot.png", "fidelity.csv", "map.csv",
           "map.png", "runs", "tuning", "runs.parquet", "curves.parquet", "tuning.csv", "run.key"}
"""Every name asyncsim writes at the top of a result directory (a run's, a study's, a reproduction's, a comparison's,
a stability map's); a study's runs are result directories inside it."""
_held: dict[Path, int] = {}
"""The output locks this process holds: resolved --out path -> lock file descriptor."""


@contextmanager
def output_lock(out_dir):
    """Hold the lock of ``out_dir`` (re-entrant within a process).  Raises ScenarioError at once if another live
    process holds it, and a one-line error if the directory beside which it lives cannot be written."""
    out = Path(out_dir).resolve()
    if fcntl is None or out in _held:
        yield
        return
    path = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise ScenarioError(f"--out {out_dir} is in use by another asyncsim run (pid {holder or '?'}); wait "
                                    "for it to finish or choose another --out") from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the holder removed it as we opened it: take the new one
    except OSError as err:
        why = "not a directory" if out.parent.exists() and not out.parent.is_dir() else err.strerror or err
        raise ScenarioError(f"--out {out_dir}: cannot write in {str(out.parent)!r} ({why})") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[out] = fd
    try:
        yield
    finally:
        del _held[out]
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def check_replaceable(out_dir) -> None:
    """Raise FileExistsError unless ``out_dir`` is absent, empty or an earlier asyncsim result (which a run
    replaces): a directory of anything else is never replaced."""
    out = Path(out_dir)
    if out.is_symlink():
        raise FileExistsError(f"--out {out} is a symbolic link; give the directory itself")
    here, resolved = Path.cwd().resolve(), out.resolve()
    if resolved == here or resolved in here.parents or not resolved.name:
        raise FileExistsError(f"--out {out} is the working directory or one of its parents; a run replaces its "
                              "--out, so give a directory below it")
    if not out.exists() or _replaceable(out):
        return
    if out.is_dir() and (out / "summary.json").is_file():
        foreign = sorted(e.name for e in out.iterdir() if e.name not in WRITTEN and not _replaceable(e))
        raise FileExistsError(f"--out {out} holds files asyncsim did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); choose another")
    raise FileExistsError(f"--out {out} exists and is not an asyncsim result directory; choose another")


@contextmanager
def atomic_directory(out_dir):
    """Yield a temporary sibling directory to fill; on success it replaces ``out_dir`` (an earlier asyncsim result
    or an empty directory) in one rename, on any error (Ctrl-C and SIGTERM included) it is removed."""
    out = Path(out_dir)
    check_replaceable(out)
    with output_lock(out), renamed_into(out) as tmp:
        yield tmp


@contextmanager
def renamed_into(out: Path):
    """Yield a temporary sibling ``.<name>.<random>`` of ``out`` to fill; on success it replaces ``out`` in one
    rename, on any error (Ctrl-C and SIGTERM included) it is removed."""
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}"
    try:
        tmp.mkdir()  # permissions from the umask (a mkdtemp directory would be private to the user)
    except OSError as err:
        raise ScenarioError(f"--out {out}: cannot write in {str(out.parent)!r} ({err.strerror or err})") from None
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_results(result, out_dir, plots: bool = True) -> Path:
    """Write a RunResult to ``out_dir`` atomically (replacing an earlier asyncsim result there)."""
    with atomic_directory(out_dir) as tmp:
        (tmp / "scenario.yaml").write_text(result.scenario.to_yaml())
        result.trace.save(tmp / "trace.parquet")
        result.metrics.to_csv(tmp / "metrics.csv", index=False, float_format="%.17g")
        if plots:
            from .plotting import save_image, save_plots  # matplotlib is only imported when plots are made

            (tmp / "plots").mkdir()
            save_plots(result.metrics, result.trace.to_frame(), tmp / "plots", result.scenario.name,
                       result.summary.predicted, source_of(result.summary), population_of(result.summary))
            if getattr(result.problem, "is_image", False):  # the picture the run ends with, pixel for pixel
                save_image(result.problem.reconstruction(result.x), tmp / "plots" / "reconstruction.png")
        (tmp / "summary.json").write_text(json.dumps(result.summary.to_json(), indent=2) + "\n")
    return Path(out_dir)


def draw_plots(directory) -> list[str]:
    """Draw a result directory's plots from its files into ``plots/``; return their names."""
    from .plotting import save_plots

    d = Path(directory)
    res = read_results(d)
    (d / "plots").mkdir(exist_ok=True)
    return save_plots(res.metrics, res.trace.to_frame(), d / "plots", res.summary.scenario, res.summary.predicted,
                      source_of(res.summary), population_of(res.summary))


def population_of(summary) -> bool:
    """True when a run's workers are a population of clients, some of them taking part at a time (the protocol's
    ``concurrency``, which summary.json's ``protocol_notes`` records)."""
    return summary.protocol_notes.get("concurrency") is not None


def source_of(summary) -> str:
    """Where a run's trace comes from, for the plots' legends: measured (real mode), simulated, or given by a
    protocol that does not simulate (a delay log's ``trace_file``)."""
    from .timing.protocols import Protocol

    if summary.mode == "real":
        return "measured"
    cls = Protocol.registry.get(summary.protocol) if summary.protocol in Protocol.registry.kinds() else None
    return "simulated" if cls is None or cls.simulated else f"from {summary.protocol}"


def _replaceable(path: Path) -> bool:
    """An empty directory, or one that holds a summary.json and nothing but what asyncsim writes: a file the user
    put there (notes, a thesis) makes it not replaceable, so it is never deleted."""
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    return not entries or ((path / "summary.json").is_file() and all(
        e.name in WRITTEN or (e.is_dir() and not e.is_symlink() and _replaceable(e)) for e in entries))


@dataclass(frozen=True)
class ResultDir:
    """A result directory read back: ``metrics`` (DataFrame), ``trace`` (Trace) and ``summary`` (Summary).
    ``result["trace"]`` reads an attribute by name, for scripts."""

    metrics: pd.DataFrame
    trace: Trace
    summary: Summary

    def __getitem__(self, key: str):
        return getattr(self, key)


def read_results(directory) -> ResultDir:
    """Load a result directory; a missing or damaged file is a one-line error naming it."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} is not a directory (a result directory written by asyncsim run)")
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} is not a complete asyncsim result directory (missing {', '.join(missing)})")
    try:
        data = json.loads((d / "summary.json").read_text())
        if not isinstance(data, dict):
            raise TypeError(f"a mapping is needed, got {type(data).__name__}")
        summary = Summary.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError) as err:
        raise ScenarioError(f"{d / 'summary.json'} is not an asyncsim summary ({type(err).__name__}: "
                            f"{' '.join(str(err).split())[:200]})") from None
    try:
        trace = Trace.load(d / "trace.parquet")
    except TraceError:
        raise
    except Exception as err:  # noqa: BLE001  (pyarrow raises many kinds on a damaged file)
        raise ScenarioError(f"{d / 'trace.parquet'} is not a readable trace ({type(err).__name__}: "
                            f"{' '.join(str(err).split())[:200]})") from None
    try:
        metrics = pd.read_csv(d / "metrics.csv")
        missing = [c for c in METRICS if c not in metrics]
        if missing or metrics.empty or not all(pd.api.types.is_numeric_dtype(metrics[c]) for c in METRICS):
            raise ValueError(f"it needs numeric columns {', '.join(METRICS)} and at least one row")
    except (ValueError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{d / 'metrics.csv'} is not a readable metrics table ({type(err).__name__}: "
                            f"{' '.join(str(err).split())[:200]})") from None
    return ResultDir(metrics=metrics, trace=trace, summary=summary)
