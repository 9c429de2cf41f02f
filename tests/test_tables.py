"""The reports' tables fit a 100-column terminal, split into parts that keep each row's name, and
say what their words mean; ``--wide`` keeps the one wide table."""

import pytest

from parity.harness import CheckResult, ParityResult
from parity.report import LEGEND, print_table
from resnext_bench.run import RATIO_WHY
from resnext_bench.run import print_table as bench_table
from resnext_spec.tables import split_columns

CHECKS = ("counts", "roundtrip", "copy", "eval", "train", "grad_eval", "grad_train", "sgd")


def check(framework: str, form: str, name: str, error: float, bound: float, **kw) -> CheckResult:
    return CheckResult("resnext26_8x16d", framework, form, name, "logits", error, bound, error <= bound, **kw)


def default_models_report() -> ParityResult:
    """The shape of `make demo`'s table: nine builds, every check, floors beside the wide bounds."""
    rows = []
    for fw in ("torch", "keras", "flax"):
        for form in "abc":
            rows += [
                check(fw, form, "counts", 0.0, 0.0, detail="15,703,370 (formula 15,703,370)"),
                check(fw, form, "roundtrip", 0.0, 0.0),
                check(fw, form, "eval", 5.1e-7, 1e-5),
                check(fw, form, "train", 6.2e-7, 2e-5, floor=2e-6),
                check(fw, form, "grad_eval", 1.8e-4, 2e-2, floor=2e-3),
                check(fw, form, "grad_train", 5.5e-2, 5e-1, floor=5e-2),
                check(fw, form, "sgd", 1.0, 1.0, chaotic=True),
            ]
    rows.append(check("torch->keras", "a", "copy", 0.0, 0.0))
    builds = {
        f"resnext26_8x16d: {fw} ({form})": {"compiled": fw == "flax", "compile_s": 1.0, "wall_s": 2.0}
        for fw in ("torch", "keras", "flax")
        for form in "abc"
    }
    return ParityResult(results=rows, meta={"models": ["resnext26_8x16d"], "builds": builds})


def printed(capsys, monkeypatch, columns: int, show) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    show()
    return capsys.readouterr().out


def test_the_parity_table_fits_100_columns_and_keeps_every_cell(capsys, monkeypatch):
    out = printed(capsys, monkeypatch, 100, lambda: print_table(default_models_report()))
    table = out[: out.index("legend:")]
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "(1/" in table and "(2/" in table  # split, not wrapped
    for word in ("15,703,370", "6.2e-07 (floor 2e-06)", "5.5e-02 (floor 5e-02)", "chaotic", "PASS"):
        assert word in table
    assert table.count("keras ") >= 2 * 3  # each part names its rows


def test_wide_keeps_one_table(capsys, monkeypatch):
    out = printed(capsys, monkeypatch, 100, lambda: print_table(default_models_report(), wide=True))
    assert "(1/" not in out and max(len(line) for line in out.splitlines()) > 100


def test_the_legend_under_the_table_is_the_one_docs_parity_shows(capsys, monkeypatch):
    from pathlib import Path

    out = printed(capsys, monkeypatch, 100, lambda: print_table(default_models_report()))
    assert " ".join(LEGEND.split()) in " ".join(out.split())
    for word in ("(floor F)", "chaotic", "bitwise", "N copies"):
        assert word in LEGEND
    docs = " ".join((Path(__file__).resolve().parents[1] / "docs" / "parity.md").read_text().split())
    assert " ".join(LEGEND.split()) in docs


@pytest.mark.parametrize("width", [60, 100, 160])
def test_split_columns_keeps_the_named_columns_in_every_part_and_each_other_column_once(width):
    header = ["build", "form", *(f"check{i}" for i in range(9)), "result"]
    rows = [["torch", "a", *("9.9e-07 (floor 2e-06)" for _ in range(9)), "PASS"]]
    parts = split_columns(header, rows, width, keep_left=2, keep_right=1)
    assert all(p[:2] == [0, 1] and p[-1] == len(header) - 1 for p in parts)
    middle = [i for p in parts for i in p[2:-1]]
    assert middle == list(range(2, len(header) - 1))


def test_bench_leaves_out_a_ratio_column_it_cannot_fill_and_says_why(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    spec = {
        "framework": "torch",
        "backend": None,
        "impl": "ours",
        "model": "tiny",
        "form": "c",
        "mode": "infer",
    }
    spec |= {"precision": "float32", "conv_impl": None}
    bench_table(
        [{"spec": spec, "img_s": 10.0, "ms": 5.0, "peak_mib": 100.0, "error_vs_fp32": None, "note": ""}], "t"
    )
    out = capsys.readouterr().out
    assert "vs peer" not in out.split("(vs peer")[0] and "vs resnet50" not in out.split("(vs peer")[0]
    assert f"(vs peer: {RATIO_WHY['vs peer']})" in out
    assert max(len(line) for line in out.splitlines() if not line.startswith("(")) <= 100
