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
    exec(blocks(root, "python")[0], namespace)
    res = namespace["res"]
    assert res.summary["workers"] == 16
    assert (tmp_path / "results" / "q16" / "summary.json").is_file()


def test_readme_scenario_block_is_the_shipped_quickstart(root):
    quickstart, study = blocks(root, "yaml")
    assert yaml.safe_load(quickstart) == yaml.safe_load(default_scenario_text())
    # the study example is the NMF study's sweep and algorithms
    shown = yaml.safe_load(study)
    nmf = yaml.safe_load((root / "scenarios" / "seed000" / "nmf.yaml").read_text())
    assert shown["sweep"] == nmf["sweep"]
    for name, variant in shown["compare"].items():
        assert variant["algorithm"] == nmf["compare"][name]["algorithm"]
