"""docs/: the notebook runs and stays stripped, the figure script draws every figure the page shows."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebook_is_the_scripts_and_has_no_outputs():
    import nbformat

    committed = nbformat.read(DOCS / "forms.ipynb", as_version=4)
    built = _load("make_notebook").build()
    assert [c.source for c in committed.cells] == [c.source for c in built.cells]
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in committed.cells
        if c.cell_type == "code"
    )


@pytest.mark.slow
def test_notebook_executes_and_shows_the_forms_agree():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(DOCS / "forms.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(DOCS)}}
    ).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "grouped vs C separate convs, max |difference|: 0.0" in text
    assert "the same function: True" in text
    gaps = [float(g) for g in re.findall(r"vs (?:torch )?\(c\): ([0-9.e+-]+)", text)]
    assert len(gaps) == 5 and max(gaps) < 1e-5  # torch (a), (b) and flax (a), (b), (c) against torch (c)


def test_figure_script_draws_every_figure_the_page_shows(tmp_path):
    figures = _load("figures")
    written = figures.main(["--out", str(tmp_path), "--results", str(DOCS / "results" / "forms_cost.json")])
    assert all(p.stat().st_size > 10_000 for p in written)
    shown = set(re.findall(r"figures/([a-z_]+\.png)", (DOCS / "forms.md").read_text()))
    assert shown and shown <= {p.name for p in written}
    assert all((DOCS / "figures" / name).exists() for name in shown)  # committed too
