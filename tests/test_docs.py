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


# ---- README.md and docs/*.md: every link, every Python block, every shell command ----------

ROOT = DOCS.parent
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((DOCS / "results").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _blocks(lang: str) -> list[tuple[str, int, str]]:
    out = []
    for page in PAGES:
        found = [m.group(2) for m in FENCE.finditer(page.read_text()) if m.group(1) == lang]
        out += [(str(page.relative_to(ROOT)), i, code) for i, code in enumerate(found)]
    return out


def test_readme_is_a_front_page_not_a_manual():
    assert len((ROOT / "README.md").read_text()) <= 8000


def test_every_topic_page_is_one_click_from_the_readme():
    linked = {m.group(1).split("#")[0] for m in LINK.finditer((ROOT / "README.md").read_text())}
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert pages <= linked, f"not linked from README.md: {sorted(pages - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_to_a_file_or_heading(page):
    broken = []
    for m in LINK.finditer(FENCE.sub("", page.read_text())):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):  # http(s): and mailto: are outside the repository
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in _anchors(file)):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def _tiny(config):
    """A config of the same kind (block, stem, classes, channels) small enough to build in a second."""
    from dataclasses import replace

    paths = dict(cardinality=2, base_width=4) if config.block == "bottleneck" else {}
    return replace(config, layers=(1, 1), **paths)


@pytest.mark.parametrize("where, index, code", _blocks("python"), ids=lambda v: str(v)[:40])
def test_python_blocks_run_as_written(where, index, code, tmp_path, monkeypatch):
    """Each block on its own, in an empty folder: what a reader pasting it would see. Every preset
    is mapped to a tiny config of its kind, so a block naming resnext50_32x4d runs in seconds."""
    from resnext_spec import config as presets

    for name, config in list(presets.PRESETS.items()):
        monkeypatch.setitem(presets.PRESETS, name, _tiny(config))
    monkeypatch.chdir(tmp_path)
    registries = _part_registries()
    saved = [dict(r) for r in registries]
    try:
        exec(compile(code, f"{where} block {index}", "exec"), {"__name__": "__docs__"})
    finally:  # docs/development.md registers a toy part; no other test may see it
        for registry, before in zip(registries, saved, strict=True):
            registry.clear()
            registry.update(before)


def _part_registries() -> list[dict]:
    import resnext_flax.model
    import resnext_keras.model
    import resnext_torch.model
    from resnext_spec import parts

    return [
        parts.ATTENTION,
        resnext_torch.model.ATTENTION,
        resnext_keras.model.ATTENTION,
        resnext_flax.model.ATTENTION,
    ]


def _commands(code: str) -> list[list[str]]:
    import shlex

    joined = code.replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def _tool_flags() -> dict[str, set[str]]:
    from parity.cli import parser as parity_parser
    from resnext_bench.cli import parser as bench_parser
    from resnext_explain.cli import parser as explain_parser
    from resnext_export.cli import parser as export_parser
    from resnext_port.cli import parser as port_parser
    from resnext_train.cli import parser as train_parser

    tools = {"parity": parity_parser, "port": port_parser, "train": train_parser}
    tools |= {"bench": bench_parser, "explain": explain_parser, "export": export_parser}
    return {verb: set(make()._option_string_actions) for verb, make in tools.items()}


def test_every_shell_command_shown_uses_flags_its_tool_accepts():
    """`resnext-VERB`, `resnext VERB`, `python -m parity` and `make TARGET` lines, wherever they sit
    in a command (after torchrun, env settings, a venv path): each flag must be one the tool knows."""
    flags = _tool_flags()
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    checked, wrong = 0, []
    inline = [  # commands shown in running text and tables: `resnext train --framework ...`
        (str(page.relative_to(ROOT)), -1, m.group(1))
        for page in PAGES
        for m in re.finditer(r"`(resnext[ -][a-z]+ [^`]*--[^`]*)`", FENCE.sub("", page.read_text()))
    ]
    for where, index, code in _blocks("bash") + inline:
        for argv in _commands(code):
            names = [Path(a).name for a in argv]
            verb, rest = None, []
            for i, name in enumerate(names):
                if name.startswith("resnext-") and name[len("resnext-") :] in flags:
                    verb, rest = name[len("resnext-") :], argv[i + 1 :]
                elif name == "resnext" and i + 1 < len(argv):
                    verb, rest = argv[i + 1], argv[i + 2 :]
                elif name == "-m" and i + 1 < len(argv) and argv[i + 1] == "parity":
                    verb, rest = "parity", argv[i + 2 :]
                elif name == "make" and i == 0:
                    wrong += [f"{where}: make {t}" for t in argv[1:] if t not in targets]
                    checked += 1
                if verb:
                    break
            if verb is None:
                continue
            checked += 1
            if verb not in flags:
                wrong.append(f"{where}: no command resnext {verb}")
                continue
            for arg in rest:
                if arg.startswith("-") and arg not in ("-",) and arg.split("=")[0] not in flags[verb]:
                    wrong.append(f"{where} block {index}: resnext {verb} has no flag {arg}")
    assert checked > 20 and not wrong, wrong


@pytest.mark.slow
def test_the_fine_tuning_example_runs_and_writes_its_table_and_plot(tmp_path):
    """docs/finetune_example.py, cut to one epoch of each run in torch: what backbones.md shows."""
    example = _load("finetune_example")
    assert (
        example.main(
            ["--out", str(tmp_path), "--epochs", "1", "--pretrain-epochs", "1", "--frameworks", "torch"]
        )
        == 0
    )
    table = (tmp_path / "finetune.md").read_text()
    assert all(f"| {setup}, torch |" in table for setup in example.SETUPS)
    assert (tmp_path / "finetune.png").read_bytes()[:4] == b"\x89PNG"
