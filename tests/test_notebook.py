"""The quickstart notebook executes top to bottom and shows its comparison."""


import nbclient
import nbformat


def test_quickstart_notebook_executes(root):
    nb = nbformat.read(root / "notebooks" / "01_quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "with straggler" in text and "without straggler" in text and "updates/s" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
