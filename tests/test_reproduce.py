"""``asyncsim reproduce``: every reproduction's quick version passes through the CLI, writes its files and ends with
the verdict line; a wrong prediction or a broken algorithm makes it FAIL with exit code 1."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from asyncsim import reproduce
from asyncsim.algorithms import SGD
from asyncsim.cli import main

NAMES = sorted(p.stem for p in (Path(__file__).parents[1] / "scenarios" / "reproductions").glob("*.yaml"))
ISSUE = {"staleness-identity", "order-statistics", "delayed-gd-stability", "optimal-time", "delay-adaptive",
         "asysg-speedup", "async-momentum", "delay-logs", "coded-es", "coded-latency", "gradient-coding",
         "sketch-averaging", "debiased-newton", "compression-variance", "buffered-staleness"}


def test_every_reproduction_of_the_issue_is_defined_and_listed_with_its_source(capsys):
    assert set(NAMES) == ISSUE
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for definition in reproduce.available():
        assert definition.name in out and definition.source[:40] in " ".join(out.split())
        assert len(definition.source) > 40  # a full citation, not a label


@pytest.mark.parametrize("name", NAMES)
def test_quick_version_passes_and_writes_its_results(name, tmp_path, capsys, monkeypatch, quick_outcome):
    def once(definition, full=False):  # the session's run of the quick version (other modules check it too)
        assert definition.name == name and not full
        return quick_outcome(name)

    monkeypatch.setattr(reproduce, "run_definition", once)
    out = tmp_path / name
    assert main(["reproduce", name, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("PASS: ") and len(lines[-1]) > 40
    table = pd.read_csv(out / "table.csv")
    assert len(table) >= 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True and summary["version"] == "quick" and summary["criterion"] in lines[-1]
    assert (out / "table.md").read_text().rstrip().endswith(lines[-1])
    assert (out / "plot.png").stat().st_size > 10_000


def small(tmp_path, name, **changes):
    """A copy of reproduction ``name`` with its quick version changed."""
    data = yaml.safe_load((Path(reproduce.directory()) / f"{name}.yaml").read_text())
    data["quick"] = {**data.get("quick", {}), **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_wrong_prediction_fails(tmp_path, monkeypatch, capsys):
    path = small(tmp_path, "delayed-gd-stability", taus=[0, 3, 10])
    assert main(["reproduce", path, "--out", str(tmp_path / "right"), "--no-plots"]) == 0
    true_bound = reproduce.delayed_gd.delayed_gd_critical_step
    monkeypatch.setattr(reproduce.delayed_gd, "delayed_gd_critical_step", lambda tau: 1.05 * true_bound(tau))
    assert main(["reproduce", path, "--out", str(tmp_path / "wrong"), "--no-plots"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: measured critical step eta lambda within 2%") and "worst 4.76" in last
    assert json.loads((tmp_path / "wrong" / "summary.json").read_text())["passed"] is False


def test_a_wrong_coded_latency_formula_fails(tmp_path, monkeypatch, capsys):
    from asyncsim.reproduce import coded_latency

    path = small(tmp_path, "coded-latency", cases=[{"n": 6, "mu": 4.0}], rounds=3000)
    true_time = coded_latency.coded_round_time
    monkeypatch.setattr(coded_latency, "coded_round_time", lambda code, n, law: 1.03 * true_time(code, n, law))
    assert main(["reproduce", path, "--out", str(tmp_path / "wrong"), "--no-plots"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL: round times of uncoded")


def test_a_broken_decoder_fails_gradient_coding(tmp_path, monkeypatch, capsys):
    from asyncsim.reproduce import gradient_coding

    path = small(tmp_path, "gradient-coding", workers=[6], stragglers=[1], rounds=8000)
    assert main(["reproduce", path, "--out", str(tmp_path / "right"), "--no-plots"]) == 0
    true_decode = gradient_coding.GradientCoding.decode
    broken = staticmethod(lambda code, F, n: true_decode(code, F, n) * (1 + 1e-6 * (len(F) % 2)))
    monkeypatch.setattr(gradient_coding.GradientCoding, "decode", broken)  # off by 1e-6 for odd |F|
    assert main(["reproduce", path, "--out", str(tmp_path / "broken"), "--no-plots"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL: all 12 straggler sets decode")


def test_a_broken_algorithm_fails(tmp_path, monkeypatch, capsys):
    path = small(tmp_path, "async-momentum", workers=[4, 8], runs=60)
    monkeypatch.setattr(SGD, "step", lambda self, info: self.lr * 1.1)  # a 10% larger step than asked for
    assert main(["reproduce", path, "--out", str(tmp_path / "broken"), "--no-plots"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL: mean async-SGD trajectory")


def test_bad_names_and_bad_files_are_one_line_errors(tmp_path, capsys):
    assert main(["reproduce", "no-such-thing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: reproduction must be one of ") and "delay-adaptive" in err and "\n" not in err
    path = small(tmp_path, "staleness-identity", updates=-5)
    assert main(["reproduce", path]) == 2
    assert capsys.readouterr().err.strip() == "error: quick.updates must be >= 100, got -5"
    assert main(["reproduce"]) == 2
    assert "needs a NAME" in capsys.readouterr().err
