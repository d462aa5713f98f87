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
    (block,) = blocks(root, "yaml")
    assert yaml.safe_load(block) == yaml.safe_load(default_scenario_text())
