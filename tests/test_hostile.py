"""Malformed and hostile inputs: each gets one line naming the field (or file), exit code 2, no traceback, and
nothing at or beside --out; ``validate`` and ``run`` give the same line.  Resource bombs run in a subprocess under
a memory cap, and must be refused in about the time of an import (the timeouts here only catch hangs)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import asyncsim
from asyncsim.cli import main

BASE = {"name": "h", "seed": 0, "problem": {"kind": "least_squares", "n_samples": 200, "dim": 5},
        "cluster": {"workers": 4, "compute": {"kind": "exponential", "mean": 1.0}},
        "protocol": {"kind": "async"}, "algorithm": {"kind": "sgd", "lr": 0.01, "batch_size": 4},
        "run": {"updates": 50}}
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def scenario(tmp_path, change=None, text=None, name="s.yaml") -> Path:
    """A scenario file: BASE with ``change`` merged in (section by section), or the raw ``text``."""
    path = tmp_path / name
    if text is not None:
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        return path
    data = json.loads(json.dumps(BASE))
    for key, value in (change or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and "kind" not in value:
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(json.dumps(data).replace('"__nan__"', ".nan"))
    return path


def refused(capsys, argv, cwd: Path) -> str:
    """Run the CLI, check exit 2 and a single ``error:`` line, and that the directory holds nothing new; return
    the message after ``error: ``."""
    before = set(cwd.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert set(cwd.iterdir()) == before, f"left behind: {sorted(set(cwd.iterdir()) - before)}"
    return lines[0][len("error: "):]


def both(capsys, tmp_path, path, extra=()) -> str:
    """``validate`` and ``run`` on one scenario: both refuse it with the same line; return it."""
    out = tmp_path / "out"
    first = refused(capsys, ["validate", str(path), *extra], tmp_path)
    second = refused(capsys, ["run", str(path), "--out", str(out), "--no-plots", *extra], tmp_path)
    assert first == second
    return first


# -- files and YAML ------------------------------------------------------------------------------------------------

FILES = {
    "empty file": (b"", "scenario file '{p}' is empty"),
    "only comments": ("# nothing here\n\n", "scenario file '{p}' is empty"),
    "binary file": (PNG, "scenario file '{p}' is not UTF-8 text (byte 0x89 at offset 0): is it a binary file?"),
    "NUL bytes": ("name: a\x00b\n", "scenario file '{p}' is not text (it holds NUL bytes): is it a binary file?"),
    "unclosed bracket": ("name: [a, b\n", "{p}: invalid YAML at line 2, column 1: expected ',' or ']', but got "
                                          "'<stream end>'"),
    "duplicate key": ("name: a\ncluster:\n  workers: 4\n  workers: 16\n",
                      "{p}: invalid YAML at line 4, column 3: duplicate key 'workers' (first at line 3); give each "
                      "key once"),
    "recursive alias": ("name: &a [*a]\n", "{p}: invalid YAML at line 1, column 7: an alias refers to a collection "
                                           "that contains it"),
    "deep nesting": ("name: " + "[" * 100_000 + "]" * 100_000 + "\n",
                     "{p}: invalid YAML at line 1, column 70: nesting deeper than 64 levels"),
    "top-level list": ("- 1\n- 2\n", "a scenario must be a mapping at the top level, got list"),
    "tab indentation": ("name: a\ncluster:\n\tworkers: 4\n",
                        "{p}: invalid YAML at line 3, column 1: found character '\\t' that cannot start any token"),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_a_bad_file_is_one_line(tmp_path, capsys, kind):
    text, message = FILES[kind]
    path = scenario(tmp_path, text=text)
    assert both(capsys, tmp_path, path) == message.format(p=path)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = scenario(tmp_path, text="name: bomb\njunk:\n" + "".join(f"  {ln}\n" for ln in lines))
    assert path.stat().st_size < 1024  # 9^9 = 387 million values once expanded
    assert both(capsys, tmp_path, path) == (f"{path}: invalid YAML at line 8, column 7: aliases expand the "
                                            "document to more than 100,000 values")


def test_merge_keys_are_not_duplicates_and_a_byte_order_mark_is_dropped(tmp_path, capsys):
    text = json.dumps(BASE)[1:-1]  # the mapping's body, as flow YAML
    path = scenario(tmp_path, text="\ufeff{" + text + "}\n")
    assert main(["validate", str(path)]) == 0
    merged = ("base: &b {kind: exponential, mean: 1.0}\n" + "\n".join(
        f"{k}: {json.dumps(v)}" for k, v in BASE.items() if k != "cluster")
        + "\ncluster: {workers: 4, compute: {<<: *b, mean: 2.0}}\n")
    path = scenario(tmp_path, text=merged)
    assert refused(capsys, ["validate", str(path)], tmp_path).startswith("base is not a known key")


def test_a_directory_missing_and_huge_files(tmp_path, capsys):
    assert both(capsys, tmp_path, tmp_path) == f"scenario file '{tmp_path}' is a directory, not a file"
    missing = tmp_path / "nope.yaml"
    assert both(capsys, tmp_path, missing) == f"scenario file '{missing}' not found"
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(65 * 2**20)  # sparse: no disk used
    assert both(capsys, tmp_path, huge) == f"scenario file '{huge}' is 68,157,440 bytes; at most 2,097,152 are read"


# -- values --------------------------------------------------------------------------------------------------------

VALUES = {
    "unknown key": ({"cluster": {"wrokers": 4}}, "cluster.wrokers is not a known key (allowed: availability, "
                    "compute, compute_trace, data_sizes, devices, downlink, failures, flops_per_second, network, "
                    "server, serverless, speeds, stragglers, transient, uplink, workers)"),
    "string for an integer": ({"cluster": {"workers": "eight"}},
                              "cluster.workers must be an integer, got 'eight' (str)"),
    "negative step": ({"algorithm": {"lr": -0.1}}, "algorithm.lr must be > 0, got -0.1"),
    "NaN": ({"algorithm": {"lr": "__nan__"}}, "algorithm.lr must be finite, got nan"),
    "unknown kind": ({"protocol": {"kind": "bogus"}}, "protocol.kind must be one of {protocols}; got 'bogus'"),
    "bool for a number": ({"run": {"updates": True}}, "run.updates must be an integer, got True (bool)"),
    "list for a mapping": ({"problem": [1, 2]}, "problem must be a mapping with a 'kind' key, got [1, 2] (list)"),
    "bad name": ({"name": "../etc"}, "name must be letters, digits, '_', '.' or '-' (it names the result "
                 "directory), got '../etc'"),
    "seed out of range": ({"seed": 2**64}, "seed must be an integer of at most 2**63 - 1 in size, got "
                          "18446744073709551616"),
    "seed negative": ({"seed": -1}, "seed must be in [0, 2**63), got -1"),
    "k above the workers": ({"protocol": {"kind": "k_of_n", "k": 20}},
                            "protocol.k must be <= cluster.workers (4), got 20"),
    "unbounded delays for seacd": ({"algorithm": {"kind": "seacd", "tau": 3, "L": 1.0}},
                                   "algorithm.tau must bound every update's staleness: SEACD assumes delays bounded "
                                   "by tau = 3, but protocol async does not bound them (random or interacting "
                                   "durations); run it under protocol ringmaster (max_staleness: 3) or serial_async "
                                   "(tau: 3), got 3"),
    "seacd over its delay bound": ({"algorithm": {"kind": "seacd", "tau": 1, "L": 1.0},
                                    "protocol": {"kind": "serial_async", "tau": 3}},
                                   "algorithm.tau must bound every update's staleness: SEACD assumes delays bounded "
                                   "by tau = 1, but protocol serial_async bounds them only by 3; run it under "
                                   "protocol ringmaster (max_staleness: 1) or serial_async (tau: 1), or set tau >= "
                                   "3, got 1"),
    "admm_nn on least squares": ({"algorithm": {"kind": "admm_nn"}, "protocol": {"kind": "sync"},
                                  "cluster": {"flops_per_second": 1e9}},
                                 "problem.loss must be hinge for admm_nn (its z_L-update is the hinge's closed "
                                 "form), got None"),
    "admm_nn with more workers than samples": (
        {"algorithm": {"kind": "admm_nn"}, "protocol": {"kind": "sync"},
         "problem": {"kind": "mlp", "loss": "hinge", "bias": False, "n_train": 3},
         "cluster": {"flops_per_second": 1e9}},
        "cluster.workers must be <= the training samples (3) for admm_nn, got 4"),
    "admm_nn without a flop rate": ({"algorithm": {"kind": "admm_nn"}, "protocol": {"kind": "sync"},
                                     "problem": {"kind": "mlp", "loss": "hinge", "bias": False}},
                                    "algorithm admm_nn times its serial step in flops: set cluster.flops_per_second"),
    "flops for a problem that does not count them": (
        {"cluster": {"flops_per_second": 1e9}, "problem": {"kind": "logistic"}},
        "cluster.flops_per_second needs the problem's gradient flops, which problem logistic does not count; "
        "give compute times in seconds instead (null), got 1000000000.0"),
    "local steps under async": ({"algorithm": {"kind": "local_sgd", "lr": 0.1, "local_steps": 2}},
                                "protocol.kind must be one of buffered, periodic for algorithm local_sgd, got 'async'"),
    "rennala_sgd on sync": ({"algorithm": {"kind": "rennala_sgd", "lr": 0.1}, "protocol": {"kind": "sync"}},
                            "protocol.kind must be one of rennala for algorithm rennala_sgd, got 'sync'"),
    "more read blocks than coordinates": ({"protocol": {"kind": "shared_memory", "blocks": 9}},
                                          "protocol.blocks must be <= the problem's dim (5), got 9"),
    "latency under shared memory": ({"protocol": {"kind": "shared_memory"},
                                     "cluster": {"uplink": {"kind": "constant", "value": 0.1}}},
                                    "cluster.uplink must be 0 under protocol shared_memory (threads share memory; "
                                    "the read law times reads), got {'kind': 'constant', 'value': 0.1}"),
    "no known smoothness for koloskova": ({"algorithm": {"kind": "koloskova", "lr": 0.1},
                                           "problem": {"kind": "matrix_factorization"}},
                                          "algorithm.L must be given: problem matrix_factorization has no known "
                                          "smoothness constant, got None"),
    "no block constants for asyscd": ({"algorithm": {"kind": "asyscd", "gamma": 0.5}},
                                      "algorithm.gamma needs the block Lipschitz constants L_i, which problem "
                                      "least_squares does not provide; set lr instead, got 0.5"),
    "straggler out of range": ({"cluster": {"stragglers": [{"worker": 7, "slowdown": 2.0}]}},
                               "cluster.stragglers[0].worker must be < workers (4), got 7"),
}


@pytest.mark.parametrize("kind", list(VALUES))
def test_a_bad_value_is_one_line_naming_the_field(tmp_path, capsys, kind):
    change, message = VALUES[kind]
    protocols = ", ".join(asyncsim.Protocol.registry.kinds())  # tests may register kinds of their own
    assert both(capsys, tmp_path, scenario(tmp_path, change)) == message.replace("{protocols}", protocols)


def test_data_files_errors_name_the_field_and_the_file(tmp_path, capsys):
    (tmp_path / "delays.txt").write_text("0\n1\n1\n")
    (tmp_path / "impossible.txt").write_text("0\n1\n5\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "image.csv").write_bytes(PNG)
    (tmp_path / "short.csv").write_text("1.0,1.0,1.0,1.0\n" * 10)
    delays = {"protocol": {"kind": "trace_file", "path": "delays.txt"}, "cluster": {"workers": 2}}
    cases = [
        (delays | {"run": {"updates": 5}}, f"run.updates must be <= the 3 delays in {tmp_path / 'delays.txt'} "
                                           "(leave it out to replay the whole file), got 5"),
        (delays | {"cluster": {"workers": 4}}, "cluster.workers must be the 2 workers of the log in protocol.path (as "
                                               "its updates imply them), got 4"),
        ({"protocol": {"kind": "trace_file", "path": "impossible.txt"}},
         f"protocol.path '{tmp_path / 'impossible.txt'}' line 3: delay 5 of update 2 is larger than the number of "
         "earlier updates (2)"),
        ({"protocol": {"kind": "trace_file", "path": "empty.txt"}},
         f"protocol.path '{tmp_path / 'empty.txt'}' is empty"),
        ({"cluster": {"compute": None, "compute_trace": {"path": "image.csv"}}},
         f"cluster.compute_trace.path '{tmp_path / 'image.csv'}' is not UTF-8 text (byte 0x89 at offset 0): is it a "
         "binary file?"),
        ({"cluster": {"compute": None, "compute_trace": {"path": "empty.txt"}}},
         "cluster.compute_trace.path must hold at least one row of numbers (the file is empty), got "
         f"'{tmp_path / 'empty.txt'}'"),
        ({"cluster": {"compute": None, "compute_trace": {"path": "short.csv", "cycle": False}},
          "protocol": {"kind": "sync"}},
         "cluster.compute_trace.path has 10 rows but every worker takes 50 steps in 50 rounds; set "
         "cluster.compute_trace.cycle: true or run fewer updates"),
        ({"cluster": {"compute": None, "compute_trace": {"path": "short.csv", "cycle": False}}},
         "cluster.compute_trace.path has 10 rows but worker 0 needs step 10; set cluster.compute_trace.cycle: true "
         "or run fewer updates"),
    ]
    for change, message in cases:
        assert both(capsys, tmp_path, scenario(tmp_path, change)) == message


# -- resource bombs, under a memory cap ----------------------------------------------------------------------------

CAP = 3 * 2**30


def capped(argv, cwd, env=None, timeout=60):
    """Run the CLI in a subprocess whose address space is capped at CAP bytes; (exit code, stderr, seconds)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "asyncsim.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=limit, timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stderr, time.perf_counter() - start


BOMBS = {
    "a billion workers": ("cluster.workers=1000000000", "cluster.workers must keep the run within the memory limit "
                          "of {limit} (ASYNCSIM_MEMORY_LIMIT); got 1000000000, an estimated 41.6 TB in all "
                          "(timing state of 1000000000 workers: 40 TB)"),
    "1e15 updates": ("run.updates=1000000000000000", "run.updates must keep the run within the memory limit of "
                     "{limit} (ASYNCSIM_MEMORY_LIMIT); got 1000000000000000, an estimated 1.21e+06 TB in all (1e+15 "
                     "trace rows: 1.20e+06 TB)"),
    "a huge data matrix": ("problem.n_samples=100000000000", "problem.n_samples must keep the run within the memory "
                           "limit of {limit} (ASYNCSIM_MEMORY_LIMIT); got 100000000000, an estimated 240 TB in all "
                           "(the 100000000000 x 100 data matrix: 240 TB)"),
    "a trillion local steps": ("protocol={kind: periodic, local_steps: 1000000000000}\0algorithm={kind: local_sgd, "
                               "lr: 0.01}", "algorithm.local_steps must keep the run within the memory limit of "
                               "{limit} (ASYNCSIM_MEMORY_LIMIT); got 1000000000000, an estimated 5.24e+05 TB in all "
                               "(1000000000000 minibatches of 32 for 256 steps of 8 workers: 5.24e+05 TB)"),
    "a dense Hessian of dim 1e7": ("problem={kind: quadratic, dim: 10000000}", "problem.dim must keep the run within "
                                   "the memory limit of {limit} (ASYNCSIM_MEMORY_LIMIT); got 10000000, an estimated "
                                   "4e+03 TB in all (the 10000000 x 10000000 Hessian: 4e+03 TB)"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_resource_bombs_are_refused_at_once_under_a_memory_cap(tmp_path, name):
    setting, message = BOMBS[name]
    env = {"ASYNCSIM_MEMORY_LIMIT": "8GB"}
    sets = [word for s in setting.split("\0") for word in ("--set", s)]
    for command in (["validate"], ["run", "--out", str(tmp_path / "out")]):
        code, err, seconds = capped([*command, *sets], tmp_path, env)
        assert (code, err) == (2, f"error: {message.format(limit='8 GB')}\n")
        assert list(tmp_path.iterdir()) == []


def test_an_alias_bomb_and_deep_nesting_under_a_memory_cap(tmp_path):
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("name: bomb\nanchors:\n" + "".join(f"  {ln}\n" for ln in lines)
                                        + "problem:\n  kind: quadratic\n  eigenvalues: [" + ", ".join(["*a7"] * 9)
                                        + "]\n")
    (tmp_path / "deep.yaml").write_text("name: " + "[" * 200_000 + "]" * 200_000 + "\n")
    for name, message in (("bomb.yaml", "bomb.yaml: invalid YAML at line 8, column 7: aliases expand the "
                                        "document to more than 100,000 values"),
                          ("deep.yaml", "deep.yaml: invalid YAML at line 1, column 70: nesting deeper than 64 "
                                        "levels")):
        code, err, _ = capped(["validate", name], tmp_path)
        assert (code, err) == (2, f"error: {message}\n")


def test_the_memory_limit_is_configurable_and_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ASYNCSIM_MEMORY_LIMIT", "1MB")
    assert refused(capsys, ["validate"], tmp_path) == (
        "problem.n_samples must keep the run within the memory limit of 1 MB (ASYNCSIM_MEMORY_LIMIT); got 10000, an "
        "estimated 30.9 MB in all (the 10000 x 100 data matrix: 24 MB)")
    monkeypatch.setenv("ASYNCSIM_MEMORY_LIMIT", "lots")
    assert refused(capsys, ["validate"], tmp_path) == ("ASYNCSIM_MEMORY_LIMIT must be a size such as 8GB, 500MB or "
                                                       "2GiB (or none), got 'lots'")
    monkeypatch.setenv("ASYNCSIM_MEMORY_LIMIT", "none")
    assert main(["validate", "--set", "run.updates=1000000000000000"]) == 0


# -- the command line ----------------------------------------------------------------------------------------------

def test_command_line_mistakes_are_one_line(tmp_path, capsys, root):
    study = root / "scenarios" / "seed000" / "nmf.yaml"
    cases = [
        (["run", "--seed", "abc"], "argument --seed: invalid int value: 'abc' (see asyncsim run --help)"),
        (["validate", "--engine", "fast"], "unrecognized arguments: --engine (see asyncsim --help)"),
        (["validate", "--set", "algorithm.lr"], "--set needs dotted.key=value, got 'algorithm.lr'"),
        (["validate", "--set", "run.updates.x=1"], "--set run.updates.x: run.updates is not a mapping"),
        (["validate", "--set", "algorithm.lr=[1"], "--set algorithm.lr: invalid YAML at line 1, column 3: expected "
                                                   "',' or ']', but got '<stream end>'"),
        (["validate", str(study), "--set", "problem.rank=3"],
         "--set problem.rank: the study sweeps problem.rank (6, 11, 21, 42, 84, 112, ...), so the --set would "
         "replace the swept values while the results still name them; edit the sweep instead"),
        (["validate", str(study), "--set", "problem={kind: nmf}"],
         "--set problem: the study sweeps problem.rank (6, 11, 21, 42, 84, 112, ...), so the --set would replace "
         "the swept values while the results still name them; edit the sweep instead"),
        (["run", str(root / "scenarios" / "clusters" / "failures.yaml"), "--engine", "fast", "--out",
          str(tmp_path / "o")], "engine fast cannot simulate a cluster whose workers interact (failures); use "
                                "--engine simpy or auto"),
        (["predict", "--updates", "0"], "--updates must be >= 1, got 0"),
        (["reproduce", "no-such-thing"], "reproduction must be one of async-momentum, asysg-speedup, buffered-staleness, coded-es, "
                                         "coded-latency, compression-variance, debiased-newton, delay-adaptive, "
                                         "delay-logs, delayed-gd-stability, gradient-coding, optimal-time, "
                                         "order-statistics, sketch-averaging, staleness-identity (or a YAML file), "
                                         "got 'no-such-thing'"),
        (["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")],
         f"{tmp_path / 'a'} is not a directory (a result directory written by asyncsim run)"),
        (["plot", str(tmp_path / "none")], f"{tmp_path / 'none'} is not a directory (a result directory written "
                                           "by asyncsim run)"),
    ]
    for argv, start, end, listed in ((["run", "--engine", "turbo"], "argument --engine: invalid choice: 'turbo'",
                                      "(see asyncsim run --help)", "simpy"),
                                     (["frobnicate"], "argument command: invalid choice: 'frobnicate'",
                                      "(see asyncsim --help)", "validate")):
        message = refused(capsys, argv, tmp_path)  # how argparse quotes the choices depends on its version
        assert message.startswith(start) and message.endswith(end) and listed in message, message
    for argv, message in cases:
        if "reproduce" in argv:
            os.chdir(root)
        try:
            assert refused(capsys, argv, tmp_path) == message, argv
        finally:
            os.chdir(tmp_path)


def test_version(capsys):
    assert main(["--version"]) == 0 and capsys.readouterr().out == f"asyncsim {asyncsim.__version__}\n"


def test_out_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    assert refused(capsys, ["run", "--out", str(out)], tmp_path) == (f"--out {out}: cannot write in "
                                                                     f"'{tmp_path / 'file'}' (not a directory)")
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter.tex").write_text("keep")
    assert refused(capsys, ["run", "--out", str(precious)], tmp_path) == (
        f"--out {precious} exists and is not an asyncsim result directory; choose another")
    (precious / "summary.json").write_text("{}")  # a summary.json beside the user's own files is not a result
    assert refused(capsys, ["run", "--out", str(precious)], tmp_path) == (
        f"--out {precious} holds files asyncsim did not write (chapter.tex); choose another")
    assert (precious / "chapter.tex").read_text() == "keep"


def test_a_second_run_on_a_held_out_is_refused_at_once_and_a_dead_holder_does_not_block(tmp_path, capsys):
    out = tmp_path / "res"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom asyncsim.results import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        start = time.perf_counter()
        assert main(["run", "--out", str(out), "--set", "run.updates=50", "--no-plots"]) == 2
        assert time.perf_counter() - start < 30
        assert capsys.readouterr().err == (f"error: --out {out} is in use by another asyncsim run (pid "
                                           f"{holder.pid}); wait for it to finish or choose another --out\n")
    finally:
        holder.kill()  # a crash: the lock file stays, but nobody holds it
        holder.wait()
    assert (tmp_path / ".res.lock").exists()
    assert main(["run", "--out", str(out), "--set", "run.updates=50", "--no-plots"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # the lock file is gone with the run


def test_sigterm_stops_a_run_cleanly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "asyncsim.cli", "run", "--set", "run.updates=2000000",
                             "--set", "run.record_every=1000", "--out", str(tmp_path / "out")], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err == "terminated (SIGTERM); no result was written\n"
    assert list(tmp_path.iterdir()) == []


def test_result_directories_are_readable_by_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["run", "--out", str(tmp_path / "r"), "--set", "run.updates=50", "--no-plots"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o755


# -- real mode and calibration -------------------------------------------------------------------------------------

REAL = {
    "no real loop": ({"protocol": {"kind": "ssp", "bound": 2}},
                     "protocol.kind must be one of async, periodic, sync, shared_memory in real mode; got 'ssp'"),
    "failures without a time scale": (
        {"cluster": {"failures": {"rate": 0.1, "downtime": {"kind": "constant", "value": 1.0}}}},
        "cluster.failures must be null in real mode: failures are not emulated (workers fail for real there; see "
        "real.on_worker_failure), got {'rate': 0.1, 'downtime': {'kind': 'constant', 'value': 1.0}}"),
    "continue under a barrier": ({"protocol": {"kind": "sync"}, "real": {"on_worker_failure": "continue"}},
                                 "real.on_worker_failure continue needs an asynchronous protocol (a barrier waits for "
                                 "every worker); got protocol sync, which runs in rounds"),
    "hogwild with a state that is not the vector": (
        {"protocol": {"kind": "shared_memory"}, "algorithm": {"kind": "seacd", "tau": 3, "L": 1.0},
         "cluster": {"compute": {"kind": "constant", "value": 1.0}}},
        "algorithm.kind must be an algorithm whose state is the parameter vector for protocol shared_memory in "
        "real mode (sgd, asyscd, asysg, delay_adaptive, koloskova, rennala_sgd, ringmaster_asgd, minibatch_sgd, coded_gd, "
        "gd, fedasync, local_sgd, downpour{tests}), got 'seacd'"),
}


@pytest.mark.parametrize("kind", list(REAL))
def test_real_mode_conditions_are_checked_when_the_scenario_loads(tmp_path, capsys, kind):
    change, message = REAL[kind]
    tests = "".join(f", {k}" for k, c in asyncsim.Algorithm.registry.items() if k.startswith("test") and c.vector_state)
    message = message.replace("{tests}", tests)
    path = scenario(tmp_path, change)
    assert main(["validate", str(path)]) == 0  # a fine simulation
    capsys.readouterr()
    assert both(capsys, tmp_path, path, ["--mode", "real"]) == message


def test_a_failed_real_run_is_one_line_with_exit_1(tmp_path, capsys, monkeypatch):
    import asyncsim.real

    def fails(scenario, progress=None):
        raise asyncsim.real.RealRunError("worker 1 was killed by signal 9 at update 3 of 50; the run was stopped")

    monkeypatch.setattr(asyncsim.real, "run_real", fails)
    assert main(["run", "--mode", "real", "--out", str(tmp_path / "out"), "--set", "run.updates=50"]) == 1
    assert capsys.readouterr().err == ("error: real run: worker 1 was killed by signal 9 at update 3 of 50; the run "
                                       "was stopped\n")
    assert list(tmp_path.iterdir()) == []


def test_calibrate_refuses_a_simulated_result_and_keeps_the_calibrated_file(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["run", "--out", str(sim), "--set", "run.updates=50", "--no-plots"]) == 0
    target = tmp_path / "cal.yaml"
    target.write_text("# an earlier calibration\n")
    capsys.readouterr()
    assert refused(capsys, ["calibrate", "--from", str(sim), "--out", str(target)], tmp_path) == (
        f"--from {sim} is a simulated run (summary.json mode: sim); calibrate from a real run (asyncsim run --mode "
        "real)")
    assert target.read_text() == "# an earlier calibration\n"


# -- damaged results and plots that survive divergence -------------------------------------------------------------

def test_a_diverged_run_writes_its_plots_and_plot_redraws_them(tmp_path, capsys):
    out = tmp_path / "div"
    assert main(["run", "--out", str(out), "--set", "algorithm.lr=100"]) == 0
    assert "DIVERGED         loss not finite at update 250" in capsys.readouterr().out
    assert {p.name for p in (out / "plots").iterdir()} == {"loss.png", "staleness.png", "shares.png",
                                                          "timeline.png"}
    assert main(["plot", str(out)]) == 0


def test_damaged_result_files_are_one_line(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--set", "run.updates=50", "--no-plots"]) == 0
    capsys.readouterr()
    (out / "summary.json").write_text("{not json")
    assert refused(capsys, ["plot", str(out)], tmp_path).startswith(
        f"{out / 'summary.json'} is not an asyncsim summary (JSONDecodeError: ")
    (out / "summary.json").write_text("{}")
    (out / "trace.parquet").write_bytes(PNG)
    assert refused(capsys, ["plot", str(out)], tmp_path).startswith(
        f"{out / 'trace.parquet'} is not a readable trace (ArrowInvalid: ")


def test_reproduction_files_use_the_safe_loader(tmp_path, capsys, root):
    path = tmp_path / "r.yaml"
    path.write_text("")
    assert refused(capsys, ["reproduce", str(path)], tmp_path) == f"reproduction file '{path}' is empty"
    source = (root / "scenarios" / "reproductions" / "delayed-gd-stability.yaml").read_text()
    path.write_text(source + "\nseed: 1\n")
    assert refused(capsys, ["reproduce", str(path)], tmp_path).startswith(f"{path}: invalid YAML at line ")


# -- more: outputs that must never be replaced, devices, time and size bombs, hand-made results ------------------

MORE = {
    "a compute time that vanishes in the sums": ({"cluster": {"compute": {"kind": "constant", "value": 1e-320}}},
                                                 "cluster.compute must have a finite mean in [1e-12, 1e+100] s (a "
                                                 "pareto law needs alpha > 1), got Constant(value=1e-320)"),
    "an infinite mean": ({"cluster": {"compute": {"kind": "pareto", "alpha": 0.5, "scale": 1.0}}},
                         "cluster.compute must have a finite mean in [1e-12, 1e+100] s (a pareto law needs alpha > "
                         "1), got Pareto(alpha=0.5, scale=1.0)"),
    "a mean that overflows": ({"cluster": {"compute": {"kind": "lognormal", "mu": 1000, "sigma": 1}}},
                              "cluster.compute must have a finite mean in [1e-12, 1e+100] s (a pareto law needs alpha "
                              "> 1), got LogNormal(mu=1000.0, sigma=1.0)"),
    "crashes faster than steps": ({"cluster": {"failures": {"rate": 1e6, "downtime": {"kind": "constant",
                                                                                      "value": 1.0}}}},
                                  "cluster.failures.rate must leave time to finish a step: rate x the longest mean "
                                  "step (1 s) must be <= 5 (each step would need about e^(rate x step) attempts), got "
                                  "1000000.0"),
    "a huge minibatch": ({"algorithm": {"batch_size": 10**10}}, "algorithm.batch_size must keep the run within the "
                         "memory limit of {limit} (ASYNCSIM_MEMORY_LIMIT); got 10000000000, an estimated 81.9 TB in "
                         "all (minibatch indices for 256 steps of 4 workers: 81.9 TB)"),
    "an integer too large for any field": ({"run": {"updates": 10**30}}, "run.updates must be an integer of at most "
                                           "2**63 - 1 in size, got 100000000000...000000 (31 digits)"),
    "null where a value is needed": ({"algorithm": {"kind": "admm_nn", "beta": None}, "protocol": {"kind": "sync"}},
                                     "algorithm.beta must not be null, got null"),
    "a name of dots": ({"name": ".."}, "name must be at most 100 characters, not only dots, got '..'"),
}


@pytest.mark.parametrize("kind", list(MORE))
def test_more_bad_values(tmp_path, capsys, monkeypatch, kind):
    monkeypatch.setenv("ASYNCSIM_MEMORY_LIMIT", "8GB")
    change, message = MORE[kind]
    assert both(capsys, tmp_path, scenario(tmp_path, change)) == message.replace("{limit}", "8 GB")


def test_yaml_that_is_too_big_or_not_plain(tmp_path, capsys):
    many = scenario(tmp_path, text="name: a\njunk: [" + ", ".join(["1"] * 120_000) + "]\n", name="many.yaml")
    assert both(capsys, tmp_path, many) == (f"{many}: invalid YAML at line 2, column 299993: more than 100,000 "
                                            "values in one document")
    tagged = scenario(tmp_path, text="name: !!set {a, b}\n", name="tagged.yaml")
    assert both(capsys, tmp_path, tagged) == (f"{tagged}: invalid YAML at line 1, column 7: tag !!set is not allowed "
                                              "here (plain numbers, strings, booleans, lists and mappings only)")
    digits = scenario(tmp_path, text="name: a\nseed: " + "9" * 5000 + "\n", name="digits.yaml")
    assert both(capsys, tmp_path, digits) == f"{digits}: invalid YAML: a number of more than 4300 digits"
    huge = scenario(tmp_path, text=json.dumps(BASE).replace('"lr": 0.01', '"lr": 1' + "0" * 400), name="huge.yaml")
    assert both(capsys, tmp_path, huge) == "algorithm.lr must be finite, got 100000000000...000000 (401 digits)"


def test_devices_and_pipes_are_not_read(tmp_path, capsys):
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    assert both(capsys, tmp_path, zero) == f"scenario file '{zero}' is not a regular file (a device, a pipe or a socket)"
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert both(capsys, tmp_path, fifo) == f"scenario file '{fifo}' is not a regular file (a device, a pipe or a socket)"
    trace = scenario(tmp_path, {"cluster": {"compute": None, "compute_trace": {"path": "zero.yaml"}}}, name="t.yaml")
    assert both(capsys, tmp_path, trace) == ("cluster.compute_trace.path '/dev/zero' is not a regular file (a device, "
                                             "a pipe or a socket)")


def test_outputs_that_would_replace_the_inputs_or_the_working_directory_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert refused(capsys, ["run", "--out", ".", "--set", "run.updates=20"], tmp_path) == (
        "--out . is the working directory or one of its parents; a run replaces its --out, so give a directory below "
        "it")
    assert refused(capsys, ["run", "--out", "..", "--set", "run.updates=20"], tmp_path).startswith("--out .. is the")
    assert main(["run", "--out", "r", "--set", "run.updates=20", "--no-plots"]) == 0
    (tmp_path / "link").symlink_to(tmp_path / "r")
    assert refused(capsys, ["run", "--out", "link", "--set", "run.updates=20"], tmp_path) == (
        "--out link is a symbolic link; give the directory itself")
    assert main(["run", "--out", "s", "--set", "run.updates=20", "--no-plots"]) == 0
    capsys.readouterr()
    assert refused(capsys, ["compare", "r", "s", "--out", "s"], tmp_path) == (
        "--out s is (or holds) the compared result s; choose another")
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "s" / "summary.json").is_file()


def test_hand_made_results_are_one_line_in_compare_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        assert main(["run", "--out", name, "--set", "run.updates=20", "--no-plots"]) == 0
    capsys.readouterr()
    (tmp_path / "b" / "metrics.csv").write_text("update,time\n0,0.0\n")
    message = ("b/metrics.csv is not a readable metrics table (ValueError: it needs numeric columns update, time, loss "
               "and at least one row)")
    assert refused(capsys, ["compare", "a", "b", "--out", "c"], tmp_path) == message
    assert refused(capsys, ["plot", "b"], tmp_path) == message
    (tmp_path / "a" / "summary.json").write_text("[]")
    assert refused(capsys, ["compare", "a", "b", "--out", "c"], tmp_path) == (
        "a/summary.json is not an asyncsim summary (TypeError: a mapping is needed, got list)")


def test_study_mistakes_are_found_when_the_study_loads(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(BASE)[:-1] + ", 1: {}}".replace("1: {}", '"compare": {1: {}}'))  # a number as a name
    assert both(capsys, tmp_path, path) == ("compare: a variant name must be a string (it names the run's "
                                            "directory), got 1 (int)")
    cases = [
        ({"compare": {"a": {}}, "sweep": {"problem.dim": [3, 3]}}, "sweep.problem.dim must list each value once, got [3, 3]"),
        ({"compare": {"a": {}}, "target": {"test_accuracy": 0.9}},
         "target: metric 'test_accuracy' is not recorded by compare.a; recorded: loss, grad_norm, suboptimality"),
        ({"compare": {"a/b": {}}}, "compare.a/b must be letters, digits, '_', '.' or '-' (it names the variant's "
                                   "runs), got 'a/b'"),
    ]
    for change, message in cases:
        path.write_text(json.dumps(BASE | change))
        assert both(capsys, tmp_path, path) == message


def test_an_idx_file_that_declares_gigabytes_is_refused_before_it_is_read(tmp_path, capsys):
    from asyncsim.problems.datasets import MNIST_FILES, write_idx

    import numpy as np

    write_idx(tmp_path / MNIST_FILES[0], np.zeros((2, 28, 28), np.uint8))
    (tmp_path / MNIST_FILES[1]).write_bytes(bytes([0, 0, 0x08, 1]) + (2**32 - 1).to_bytes(4, "big"))
    for name in MNIST_FILES[2:]:
        write_idx(tmp_path / name, np.zeros((2, 28, 28), np.uint8) if "images" in name else np.zeros(2, np.uint8))
    path = scenario(tmp_path, {"problem": {"kind": "mlp", "data": "mnist", "path": "."}})
    assert both(capsys, tmp_path, path) == (f"IDX file '{tmp_path / MNIST_FILES[1]}' declares 4,294,967,295 bytes of "
                                            "data (shape (4294967295,)); at most 2,147,483,648 are read")


def test_predict_updates_are_in_the_budget(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ASYNCSIM_MEMORY_LIMIT", "8GB")
    assert refused(capsys, ["predict", "--updates", "1000000000000"], tmp_path) == (
        "--updates must keep the run within the memory limit of 8 GB (ASYNCSIM_MEMORY_LIMIT); got 1000000000000, an "
        "estimated 1.2e+04 TB in all (the rows of 1000000000000 updates simulated three ways: 1.2e+04 TB)")
