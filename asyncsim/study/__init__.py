"""Studies: a scenario file that compares variants over a grid of swept values and seeds, each variant at its own
tuned value of a key (``asyncsim.study.spec`` describes the file), run serially, on a process pool or on Dask.

``run_study(study, out_dir, executor)`` runs the tuning runs, chooses each tuned cell's value, runs the
evaluation runs, and writes into ``out_dir``:

- ``runs/<label>/`` and ``tuning/<label>/``: one result directory per run (``asyncsim.study.execute``);
- ``runs.parquet``, ``curves.parquet``, ``table.csv``, ``table.md`` and ``tuning.csv``
  (``asyncsim.study.tables``);
- ``plots/``: ``curves.png`` (the loss, or f - f*, against time with confidence bands), ``accuracy.png`` for
  classification problems, ``time_to_target.png``, ``final.png`` (the final loss against the swept key) for a
  study with a sweep, and ``images.png`` for image factorizations;
- ``summary.json``: the study's settings, the values chosen and ``complete`` (false while it runs or after an
  interruption, when the completed runs stay for the next invocation to reuse).

The tables are computed from the files on disk, so a study interrupted and run again gives the same tables, byte
for byte, as one run straight through, whatever executor ran it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import Executor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..params import ScenarioError
from ..targets import Target
from .execute import KEY_FILE, LocalPool, Progress, Store, execute, run_files
from .spec import Cell, Run, Study, Tune, is_study, load_study, merge, study_from_dict
from .tables import cell_table, curve_table, markdown, mean_ci, run_table, target_rule, tuning_table

FORMAT = 2
"""The layout of a study directory (``summary.json`` ``format``); a directory of another layout is replaced."""
OUTPUTS = ("runs.parquet", "curves.parquet", "table.csv", "table.md", "tuning.csv", "plots")
PLOTS = ("curves.png", "accuracy.png", "time_to_target.png", "final.png", "images.png")


class StudyFailed(RuntimeError):
    """Some runs of a study failed; the completed ones are kept for the next invocation."""


@dataclass(frozen=True)
class StudyResult:
    """The tidy tables of a study (``asyncsim.study.tables``)."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    table: pd.DataFrame
    tuning: pd.DataFrame
    directory: Path | None = None
    """Where the results were written (None when ``run_study`` had no ``out_dir``)."""


def run_study(study: Study, out_dir=None, executor: Executor | None = None, *, engine: str = "auto",
              plots: bool = True, run_plots: bool = False, force: bool = False, log=print,
              bar: bool = False) -> StudyResult:
    """Run a study and write its directory; return its tables.

    ``executor``: any ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, ``LocalPool``, or a Dask
    ``Client(...).get_executor()``), or None to run in this process; every executor gives the same bytes.
    ``out_dir`` None works in a temporary directory that is removed afterwards.  ``plots``: the study's figures;
    ``run_plots``: also each evaluation run's own (``asyncsim plot`` draws them later just as well).  ``force``
    recomputes runs whose results are already there.  ``bar``: a tqdm progress bar (else one line per run through
    ``log``).
    """
    from ..results import output_lock

    with ExitStack() as stack:
        if out_dir is None:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asyncsim-study-"))) / "study"
        else:
            out = Path(out_dir)
            stack.enter_context(output_lock(out))
        new = not out.exists()
        _prepare(out, study)
        store = Store(out, plots and run_plots)
        progress = stack.enter_context(closing(Progress(len(study), log, bar)))
        try:
            tuning_runs = study.tuning_runs()
            failed = execute(tuning_runs, store, executor, engine, force, progress)
            if failed:
                raise _failure(failed, out, "tuning runs", len(tuning_runs))
            chosen, tuning = (tuning_table(study, tuning_runs, [store.read(r) for r in tuning_runs])
                              if tuning_runs else ({}, pd.DataFrame()))
            runs = study.evaluation_runs(chosen)
            failed = execute(runs, store, executor, engine, force, progress)
            if failed:
                raise _failure(failed, out, "evaluation runs", len(runs))
        except BaseException:
            if new and not store.count():  # nothing to resume from: leave nothing behind
                shutil.rmtree(out, ignore_errors=True)
            raise
        progress.close()
        results = [store.read(r) for r in runs]
        frame = run_table(study, runs, results)
        result = StudyResult(runs=frame, curves=curve_table(study, runs, results), table=cell_table(study, frame),
                             tuning=tuning, directory=None if out_dir is None else out)
        _write(out, study, result, runs, plots)
        return result


def _prepare(out: Path, study: Study) -> None:
    """Make ``out`` a study directory of this layout, keeping completed runs of an earlier invocation; remove the
    study-level outputs of that invocation (they are rewritten when every run is done)."""
    from ..results import check_replaceable

    check_replaceable(out)
    for part, allowed in (("runs", None), ("tuning", None), ("plots", PLOTS)):
        folder = out / part
        if folder.is_dir() and not folder.is_symlink():
            for entry in folder.iterdir():
                ours = entry.name.startswith(".") or (entry.name in allowed if allowed else
                                                      entry.is_dir() and (entry / KEY_FILE).is_file())
                if not ours:
                    raise FileExistsError(f"--out {out} holds files asyncsim did not write ({part}/{entry.name}); "
                                          f"choose another")
    summary = out / "summary.json"
    try:
        ours = json.loads(summary.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if out.exists() and not ours:
        shutil.rmtree(out)  # an earlier asyncsim result of another kind (check_replaceable allowed it)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ScenarioError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    for name in OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    _replace_text(summary, json.dumps(_header(study) | {"complete": False}, indent=2) + "\n")


def _header(study: Study) -> dict:
    target = {"metric": study.target.metric, "level": study.target.level} if isinstance(study.target, Target) \
        else study.target
    return {"study": study.name, "format": FORMAT, "keys": list(study.keys), "seeds": list(study.seeds),
            "tune": None if study.tune is None else {"keys": study.tuned_keys, "seeds": list(study.tune.seeds),
                                                     "by": study.tune.by},
            "target": target, "cells": len(study.cells), "runs": len(study)}


def _write(out: Path, study: Study, result: StudyResult, runs: list[Run], plots: bool) -> None:
    """The study-level files, each written to a temporary name and renamed into place."""
    _replace_bytes(out / "runs.parquet", _parquet(result.runs))
    _replace_bytes(out / "curves.parquet", _parquet(result.curves))
    _replace_text(out / "table.csv", result.table.to_csv(index=False, float_format="%.10g"))
    _replace_text(out / "table.md", markdown(study, result.table))
    if study.tune is not None:
        _replace_text(out / "tuning.csv", result.tuning.to_csv(index=False, float_format="%.10g"))
    if plots:
        _write_plots(out, study, result, runs)
    chosen = {c.name: {c.key: r[f"tuned {c.key}"]} for c, (_, r) in zip(study.cells, result.table.iterrows())
              if c.grid}
    _replace_text(out / "summary.json", json.dumps(_header(study) | {"complete": True, "chosen": chosen},
                                                   indent=2, default=str) + "\n")


def _write_plots(out: Path, study: Study, result: StudyResult, runs: list[Run]) -> None:
    tmp = out / f".plots.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _draw(out, study, result, runs, tmp)
        os.replace(tmp, out / "plots")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _draw(out: Path, study: Study, result: StudyResult, runs: list[Run], tmp: Path) -> None:
    from ..plotting import plot_images, save_figure
    from .plots import plot_curves, plot_final, plot_time_to_target

    metrics = set(result.curves["metric"])
    loss = "suboptimality" if "suboptimality" in metrics else "loss"
    names = {}  # a study of one point: each tuned variant's legend entry names its value
    if len(study.points) == 1 and len(result.tuning):
        for _, row in result.tuning[result.tuning["chosen"]].iterrows():
            names[row["variant"]] = f"{row['variant']} ({row['key'].rsplit('.', 1)[-1]} {row['value']:g})"
    save_figure(plot_curves(result.curves, study, loss, "f(x) - f*" if loss == "suboptimality" else "loss f(x)",
                            names), tmp / "curves.png")
    if "test_accuracy" in metrics:
        save_figure(plot_curves(result.curves, study, "test_accuracy", "test accuracy", names), tmp / "accuracy.png")
    save_figure(plot_time_to_target(result.table, study, target_rule(study)), tmp / "time_to_target.png")
    if study.keys:
        save_figure(plot_final(result.runs, study, loss, "f(x) - f*" if loss == "suboptimality" else "loss f(x)"),
                    tmp / "final.png")
    images = {}
    for run in runs:
        picture = out / "runs" / run.label / "plots" / "reconstruction.png"
        if run.seed == study.seeds[0] and picture.is_file():
            import matplotlib.image

            images[run.cell.name] = matplotlib.image.imread(picture)[..., 0]
    if images:
        first = runs[0].scenario
        from ..rng import Stream, generator

        original = first.problem.build(generator(first.seed, Stream.DATA)).target
        save_figure(plot_images({"original": original, **images}), tmp / "images.png")


def format_table(result: StudyResult, study: Study) -> str:
    """The table printed after a study: table.md's rows."""
    return markdown(study, result.table)


def _failure(failed: dict[str, str], out: Path, what: str, total: int) -> StudyFailed:
    first = "; ".join(f"{label}: {why}" for label, why in list(failed.items())[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    kept = Store(out).count()
    return StudyFailed(f"{len(failed)} of {total} {what} failed ({first}{more}); " + (
        f"the {kept} completed runs are kept in {out}/ and a rerun retries the others" if kept else
        "no run completed"))


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _replace_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary sibling renamed into place (removed on any error, Ctrl-C included)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _replace_text(path: Path, text: str) -> None:
    _replace_bytes(path, text.encode())


__all__ = ["Cell", "LocalPool", "Run", "Store", "Study", "StudyFailed", "StudyResult", "Tune", "format_table",
           "is_study", "load_study", "mean_ci", "merge", "run_files", "run_study", "study_from_dict"]
