"""The report's files: JSON reads back to the same result, and the plot shows error / bound truly."""

import math

import numpy as np
import pytest

from parity.harness import CheckResult, ParityResult
from parity.report import PLOT_FLOOR, merge_results, plot_ratios, read_json, table_rows, write_json
from resnext_spec.errors import ResNeXtError


def row(framework, form, check, error, bound, **kw):
    quantity = {"counts": "params", "copy": "weights"}.get(check, "logits")
    return CheckResult("m", framework, form, check, quantity, error, bound, error <= bound, **kw)


# Hand-made rows: error/bound is 0.5, 2 (a failure), 0 (exact) and 0.01; counts and copy
# are bitwise checks (bound 0) and tf32 is informational (bound inf): neither is plotted.
RESULT = ParityResult(
    results=[
        row("keras", "a", "eval", 5e-6, 1e-5, floor=1e-7),
        row("flax", "b", "grad_train", 0.2, 0.1, l2=0.01, l2_fp64=float("nan")),
        row("torch", "c", "sgd", 0.0, 1e-5),
        row("flax", "c", "train", 2e-7, 2e-5),
        row("keras", "c", "counts", 0.0, 0.0, detail="100 (formula 100)"),
        row("torch->keras", "c", "copy", 0.0, 0.0),
        row("torch", "c", "tf32", 3e-4, math.inf),
    ],
    meta={"models": ["m"], "device": "cpu", "wall_time_s": 1.0},
)


def test_json_reads_back_to_the_same_result_non_finite_numbers_included(tmp_path):
    path = tmp_path / "r.json"
    write_json(RESULT, path)
    back = read_json(path)
    assert back.meta == RESULT.meta
    assert len(back.results) == len(RESULT.results)
    for a, b in zip(back.results, RESULT.results, strict=True):
        for field in vars(b):
            x, y = getattr(a, field), getattr(b, field)
            assert x == y or (isinstance(y, float) and math.isnan(x) and math.isnan(y)), field


def test_a_file_that_is_not_a_report_is_refused(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"weights": []}')
    with pytest.raises(ResNeXtError, match="not a resnext-parity JSON report"):
        read_json(path)


def test_plot_puts_each_numeric_row_at_error_over_bound(tmp_path):
    fig = plot_ratios(RESULT, tmp_path / "r.png")
    ys = sorted(float(y) for coll in fig.axes[0].collections for _, y in coll.get_offsets())
    # 0 sits on the plot's floor; bitwise and informational rows are not drawn.
    assert ys == pytest.approx(sorted([0.5, 2.0, PLOT_FLOOR, 0.01]))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_columns_are_the_checks_and_the_format_follows_the_suffix(tmp_path):
    fig = plot_ratios(RESULT, tmp_path / "r.svg")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["eval", "train", "grad_eval", "grad_train", "sgd"]
    xs = {coll.get_label(): np.round(coll.get_offsets()[:, 0]).tolist() for coll in fig.axes[0].collections}
    assert xs["flax (b)"] == [labels.index("grad_train")] and xs["torch (c)"] == [labels.index("sgd")]
    assert b"<svg" in (tmp_path / "r.svg").read_bytes()[:500]
    assert [p.name for p in tmp_path.iterdir()] == ["r.svg"]  # no temporary file left behind


def one_model_run(model, seconds, **settings):
    meta = {
        "models": [model],
        "configs": {model: {"layers": [1]}},
        "batch": 4,
        "versions": {"torch": "2.13.0"},
        "model_time_s": {model: seconds},
        "wall_time_s": seconds + 0.5,
        **settings,
    }
    return ParityResult(results=[row("keras", "c", "eval", 1e-6, 1e-5)], meta=meta)


def test_runs_of_different_models_merge_into_one_report():
    merged = merge_results([one_model_run("x", 10.0), one_model_run("y", 20.0)])
    assert merged.meta["models"] == ["x", "y"]
    assert merged.meta["model_time_s"] == {"x": 10.0, "y": 20.0}
    assert merged.meta["wall_time_s"] == 31.0  # 10.5 + 20.5
    assert set(merged.meta["configs"]) == {"x", "y"} and len(merged.results) == 2


@pytest.mark.parametrize(
    "other, message",
    [
        (one_model_run("y", 1.0, batch=2), "different batch"),
        (one_model_run("y", 1.0, versions={"torch": "2.12.0"}), "different versions"),
        (one_model_run("x", 1.0), "more than one run"),
    ],
)
def test_runs_that_are_not_one_experiment_are_not_merged(other, message):
    with pytest.raises(ResNeXtError, match=message):
        merge_results([one_model_run("x", 1.0), other])


def _copies(failing: str | None = None) -> ParityResult:
    pairs = ["torch->keras", "keras->torch", "torch->flax", "flax->torch", "keras->flax", "flax->keras"]
    rows = [row(p, f, "copy", 1.0 if p == failing and f == "b" else 0.0, 0.0) for f in "ab" for p in pairs]
    return ParityResult(results=rows, meta={"models": ["m"]})


def test_a_forms_six_bitwise_copies_fold_into_one_row_and_verbose_shows_each():
    _, rows = table_rows(_copies(), "m")
    assert [cells[:2] for cells, _ in rows] == [["6 copies", "a"], ["6 copies", "b"]]
    assert all(cells[-1] == "PASS" for cells, _ in rows)
    _, every = table_rows(_copies(), "m", verbose=True)
    assert len(every) == 12


def test_a_failing_copy_is_never_folded_away():
    _, rows = table_rows(_copies(failing="flax->keras"), "m")
    names = [(cells[0], cells[1], cells[-1]) for cells, _ in rows]
    assert names[0] == ("6 copies", "a", "PASS")
    assert len(names) == 1 + 6  # form b's six directions, each on its own row
    assert ("flax->keras", "b", "FAIL") in names


def test_the_table_says_which_builds_ran_compiled():
    result = ParityResult(
        results=[row("flax", "a", "eval", 1e-7, 1e-5), row("torch", "a", "eval", 0.0, 1e-5)],
        meta={
            "models": ["m"],
            "builds": {"m: flax (a)": {"compiled": True, "compile_s": 2.0, "wall_s": 3.0}},
        },
    )
    header, rows = table_rows(result, "m")
    ran = {cells[0]: cells[header.index("ran")] for cells, _ in rows}
    assert ran == {"torch": "", "flax": "compiled"}
