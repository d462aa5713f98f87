"""Writing and reading result directories (DESIGN.md, "Results layout").

A result directory holds the resolved ``scenario.yaml``, ``trace.parquet``, ``metrics.csv``, ``summary.json`` and
``plots/*.png``.  It is written into a temporary sibling directory and renamed into place in one step, so an
interrupted run never leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .timing.trace import Trace

FILES = ("scenario.yaml", "trace.parquet", "metrics.csv", "summary.json")


@contextmanager
def atomic_directory(out_dir):
    """Yield a temporary sibling directory to fill; on success it replaces ``out_dir`` (an earlier asyncsim result
    or an empty directory) in one rename, on any error it is removed."""
    out = Path(out_dir)
    if out.exists() and not _replaceable(out):
        raise FileExistsError(f"--out {out} exists and is not an asyncsim result directory; choose another")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
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
            from .plotting import save_plots  # matplotlib is only imported when plots are made

            (tmp / "plots").mkdir()
            save_plots(result.metrics, result.trace.to_frame(), tmp / "plots", result.scenario.name,
                       result.summary.get("predicted"))
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
    return Path(out_dir)


def _replaceable(path: Path) -> bool:
    return path.is_dir() and (not any(path.iterdir()) or (path / "summary.json").is_file())


def read_results(directory) -> dict:
    """Load a result directory: ``metrics`` (DataFrame), ``trace`` (Trace), ``summary`` (dict)."""
    d = Path(directory)
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} is not a complete asyncsim result directory (missing {', '.join(missing)})")
    return {"metrics": pd.read_csv(d / "metrics.csv"), "trace": Trace.load(d / "trace.parquet"),
            "summary": json.loads((d / "summary.json").read_text())}
