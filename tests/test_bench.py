"""resnext-bench: every row it measures has a positive figure, its files round-trip, bad input exits 2.

No timing is asserted: speed belongs in the benchmark's output and docs/results/.
"""

import json

import pytest
from helpers import TINY

from resnext_bench import markdown_table, plot, read_json, run_bench, write_json
from resnext_bench.cli import main
from resnext_bench.run import grid, label, ratios
from resnext_spec import get_config


@pytest.fixture(scope="module")
def rows():
    wanted = [
        (["torch"], ["infer", "infer_bf16", "train"], None),
        (["flax"], ["infer", "train"], None),
        (["keras"], ["infer"], ["tensorflow"]),
    ]
    out = []
    for frameworks, modes, backends in wanted:
        out += run_bench(
            [],
            configs={"tiny": TINY},
            frameworks=frameworks,
            keras_backends=backends,
            modes=modes,
            batch=2,
            image_size=16,
            warmup=1,
            repeats=2,
        )
    return out


def test_every_row_has_positive_speed_and_memory(rows):
    assert len(rows) == 6
    for r in rows:
        assert "failed" not in r, r
        assert r["img_s"] > 0 and r["ms"] > 0 and r["peak_mib"] > 0, r
        assert len(r["seconds"]) == 2
        assert r["img_s"] == pytest.approx(2 / (r["ms"] / 1000))


def test_reduced_precision_rows_report_their_error_against_fp32(rows):
    bf16 = [r for r in rows if r["spec"]["mode"] == "infer_bf16"]
    assert bf16
    for r in bf16:
        # bfloat16 keeps 8 bits of mantissa: an error far from both 0 and 1.
        assert 1e-5 < r["error_vs_fp32"] < 0.1, r["error_vs_fp32"]
    assert all(r["error_vs_fp32"] is None for r in rows if r["spec"]["mode"] != "infer_bf16")


def test_json_round_trips_and_tables_and_plot_are_written(rows, tmp_path):
    write_json(rows, {"batch": 2}, tmp_path / "bench.json")
    back, info = read_json(tmp_path / "bench.json")
    assert back == json.loads(json.dumps(rows)) and info == {"batch": 2}
    table = markdown_table(back)
    assert table.count("\n") == len(rows) + 2 and "keras-tensorflow" in table
    plot(back, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_ratios_compare_with_the_peer_and_with_resnet50_of_the_same_framework_and_mode():
    def row(model, impl, img_s, mode="train", backend="jax"):
        spec = {
            "framework": "keras",
            "backend": backend,
            "model": model,
            "impl": impl,
            "mode": mode,
            "form": "c",
        }
        return {"spec": spec, "img_s": img_s}

    got = ratios(
        [
            row("resnet50", "ours", 6.0),
            row("resnet50", "peer", 8.0),
            row("resnext50_32x4d", "ours", 4.5),
            row("resnext50_32x4d", "ours", 1.0, mode="infer"),  # no ResNet-50 infer row to compare with
            row("resnet50", "ours", 2.0, backend="tensorflow"),
        ]
    )
    assert got[0] == {"vs_peer": 0.75}
    assert got[2] == {"vs_resnet50": 0.75}
    assert got[3] == {} and got[4] == {}


def test_rows_name_a_grouped_conv_lowering_asked_for_by_name():
    """A --conv-impl patches row must not read like the default one in the same table."""
    spec = {"framework": "flax", "backend": None, "impl": "ours", "conv_impl": "patches"}
    assert label(spec) == "flax [patches]"
    assert label({**spec, "conv_impl": "auto"}) == "flax"
    assert label({**spec, "framework": "torch"}) == "torch"  # torch has one grouped conv: no lowering


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--modes", "infer,fastest"], "unknown mode"),
        (["--models", "resnet51"], "unknown preset"),
        (["--frameworks", "mxnet"], "unknown framework"),
        (["--batch-size", "0"], "at least 1"),
        (["--config", "/nonexistent.json"], "--config"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_keras_peer_is_compared_with_our_resnet50_built_as_v1():
    # keras.applications.ResNet50 strides on the first 1x1 conv (ResNet v1); our resnet50
    # strides on the 3x3 (v1.5), so the fair pair is our build with stride_on="1x1".
    specs = grid(["keras"], ["jax"], {"resnet50": get_config("resnet50")}, ["c"], ["train"], peers=True)
    got = [(s.model, s.impl, s.config["stride_on"]) for s in specs]
    assert got == [
        ("resnet50", "ours", "3x3"),
        ("resnet50_v1", "ours", "1x1"),
        ("resnet50_v1", "peer", "1x1"),
    ]
    assert (
        grid(["keras"], ["jax"], {"resnet50": get_config("resnet50")}, ["c"], ["train"], peers=False)
        == specs[:1]
    )


def test_image_size_follows_the_stem_unless_given():
    """A CIFAR-stem model at 224 px costs 49x its own 32 px: the default is each model's own size."""
    models = {"resnext26_8x16d": get_config("resnext26_8x16d"), "resnet50": get_config("resnet50")}
    sizes = {
        s.model: s.image_size for s in grid(["torch"], [], models, ["c"], ["infer"], False, image_size=None)
    }
    assert sizes == {"resnext26_8x16d": 32, "resnet50": 224}
    given = grid(["torch"], [], models, ["c"], ["infer"], False, image_size=64)
    assert {s.image_size for s in given} == {64}


def test_a_torchvision_that_fails_to_import_is_no_peer(monkeypatch):
    import sys

    import resnext_bench.run as run

    monkeypatch.setattr(run, "find_spec", lambda name: object())  # "installed"...
    monkeypatch.setitem(sys.modules, "torchvision", None)  # ...but its import fails
    assert not run.peer_installed("torch") and run.peer_installed("keras")


def test_lowerings_script_lists_resnext50s_grouped_convs_as_the_paper_lays_them_out():
    """ResNeXt-50 (32x4d) at 224 px: stages at 56, 28, 14 and 7 px with 128, 256, 512 and 1024
    grouped channels (the paper's Table 1); each later stage's first block takes the stride on
    its 3x3 (torchvision's v1.5), from the previous stage's size."""
    from resnext_bench.lowerings import grouped_layers

    assert grouped_layers("resnext50_32x4d", 224) == [
        (56, 128, 32, 1),
        (56, 256, 32, 2),
        (28, 256, 32, 1),
        (28, 512, 32, 2),
        (14, 512, 32, 1),
        (14, 1024, 32, 2),
        (7, 1024, 32, 1),
    ]
    assert grouped_layers("resnet50", 224) == []


def test_lowerings_script_times_both_lowerings_and_finds_them_equal(tmp_path, monkeypatch):
    """Two small layers, one each side of auto's taps limit (4 and 16 channels a group)."""
    from resnext_bench import lowerings

    monkeypatch.setattr(lowerings, "grouped_layers", lambda model, size: [(6, 16, 4, 1), (5, 32, 2, 2)])
    out, table = tmp_path / "lowerings.json", tmp_path / "lowerings.md"
    assert (
        lowerings.main(["--batch", "1", "--repeats", "1", "--json", str(out), "--markdown", str(table)]) == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["group_channels"] for r in rows] == [4, 16]
    assert all(
        r["taps_error"] < 1e-5 and r["taps_train_ms"] > 0 and r["patches_forward_ms"] > 0 for r in rows
    )
    assert table.read_text().count("\n| 6×6, 16 ch | 4 | 1 |") == 1
