"""The README's examples are the code's behaviour: its Python snippet runs, its scenario block is the shipped one."""

import re
import shutil

import yaml

from asyncsim.scenario import default_scenario_text


def blocks(root, language):
    return re.findall(rf"```{language}\n(.*?)```", (root / "README.md").read_text(), flags=re.S)


def test_readme_python_snippet_runs(root, tmp_path, monkeypatch):
    (tmp_path / "scenarios").mkdir()
    shutil.copy(root / "scenarios" / "quickstart.yaml", tmp_path / "scenarios")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(next(b for b in blocks(root, "python") if "asyncsim.run(" in b), namespace)
    res = namespace["res"]
    assert res.summary["workers"] == 16
    assert (tmp_path / "results" / "q16" / "summary.json").is_file()


def test_readme_study_snippet_runs_as_a_script(root, tmp_path, monkeypatch):
    """The study snippet, as the main module of a script: a process pool, the tables it says."""
    (tmp_path / "scenarios" / "seed001").mkdir(parents=True)
    shutil.copy(root / "scenarios" / "seed001" / "admm.yaml", tmp_path / "scenarios" / "seed001")
    monkeypatch.chdir(tmp_path)
    snippet = next(b for b in blocks(root, "python") if "run_study(" in b)
    namespace = {"__name__": "__main__"}
    exec(snippet, namespace)
    result = namespace["result"]
    assert len(result.runs) == 7 and result.table["cluster.workers"].tolist() == [1, 2, 4, 8, 16, 32, 64]
    assert (tmp_path / "results" / "admm" / "table.csv").is_file()


def test_readme_scenario_block_is_the_shipped_quickstart(root):
    quickstart, study, availability, devices = blocks(root, "yaml")
    assert yaml.safe_load(quickstart) == yaml.safe_load(default_scenario_text())
    # the study example is the NMF study's sweep and algorithms
    shown = yaml.safe_load(study)
    nmf = yaml.safe_load((root / "scenarios" / "seed000" / "nmf.yaml").read_text())
    assert shown["sweep"] == nmf["sweep"]
    for name, variant in shown["compare"].items():
        assert variant["algorithm"] == nmf["compare"][name]["algorithm"]
    # the availability example is the shipped scenario's cluster
    shipped = yaml.safe_load((root / "scenarios" / "clusters" / "availability.yaml").read_text())
    for key, value in yaml.safe_load(availability)["cluster"].items():
        assert shipped["cluster"][key] == value
    # the device profiles example is the shipped FedBuff population's
    shipped = yaml.safe_load((root / "scenarios" / "federated" / "fedbuff_population.yaml").read_text())
    for key, value in yaml.safe_load(devices)["cluster"].items():
        assert shipped["cluster"][key] == value


def test_readme_error_examples_are_what_the_cli_prints(root, tmp_path, monkeypatch, capsys):
    import shlex

    from asyncsim.cli import main

    fenced, inside = [], None
    for line in (root / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fenced, inside = (fenced + ["\n".join(inside)], None) if inside is not None else (fenced, [])
        elif inside is not None:
            inside.append(line)
    block = next(b for b in fenced if "$ asyncsim run bad.yaml" in b)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(default_scenario_text().replace("lr: 0.01", "lr: -0.1"))
    lines = block.strip().splitlines()
    commands = [(i, ln[2:]) for i, ln in enumerate(lines) if ln.startswith("$ ")]
    assert len(commands) == 4
    for i, command in commands:
        words = shlex.split(command)
        env = words[:words.index("asyncsim")]  # VAR=value prefixes
        for assignment in env:
            monkeypatch.setenv(*assignment.split("=", 1))
        argv = words[words.index("asyncsim") + 1:]
        assert main(argv) == 2
        assert capsys.readouterr().err == lines[i + 1] + "\n"
        for assignment in env:
            monkeypatch.delenv(assignment.split("=")[0])
