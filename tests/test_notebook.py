"""The notebooks execute top to bottom: the quickstart shows its comparison; each exploration notebook runs its
quick version (ASYNCSIM_QUICK=1) with its own assertions, and its committed full version holds its outputs."""

from pathlib import Path

import nbclient
import nbformat
import pytest


def test_quickstart_notebook_executes(root):
    nb = nbformat.read(root / "notebooks" / "01_quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "with straggler" in text and "without straggler" in text and "updates/s" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


EXPLORATIONS = sorted(p.name for p in (Path(__file__).parents[1] / "notebooks").glob("0[2-9]_*.ipynb"))


@pytest.mark.parametrize("name", EXPLORATIONS)
def test_exploration_notebook_executes_quick_and_holds_its_assertions(root, tmp_path, monkeypatch, name):
    """Each exploration notebook in its ASYNCSIM_QUICK=1 version: no error (its own assertions of the closed-form
    predictions included), a figure, and a committed full version that holds its outputs."""
    committed = nbformat.read(root / "notebooks" / name, as_version=4)
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{name}: the committed version was not executed"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), f"{name}: no committed figure"
    assert committed.cells[0].cell_type == "markdown" and "**Question.**" in committed.cells[0].source
    assert "**Try this.**" in committed.cells[-1].source
    monkeypatch.setenv("ASYNCSIM_QUICK", "1")
    nb = nbformat.read(root / "notebooks" / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert not list(tmp_path.iterdir())  # the quick version writes nothing
