"""Exported artifacts compute the same function as torch form (c), each in its own runtime.

Every supported (framework, format) pair is exported from the tiny config with BN randomised, loaded
by its runtime alone (onnxruntime, LiteRT, ``tf.saved_model.load``, ``jax.export.deserialize``,
``torch.export.load``) and fed the harness's images; its logits are held to 1e-5 of an
independently built torch form (c) at batch 8 and at batch 1 (the dynamic batch). Form (c) of
every pair runs in the fast tier, forms (a) and (b) in the full tier. Refused pairs, missing
packages and failed writes leave nothing behind.
"""

import importlib
import json

import keras
import numpy as np
import pytest
import torch
from helpers import TINY, TINY_1X1

import resnext_cli
import resnext_torch as rt
from resnext_export import REFUSED, ExportError, artifacts, export, sidecar_path
from resnext_export import cli as export_cli
from resnext_export.formats import EXPORTERS, FORMATS
from resnext_spec import ArchConfig, get_config, random_weights, save_checkpoint

export_module = importlib.import_module("resnext_export.export")  # the module, not its export()
TOL = 1e-5  # the harness's eval tolerance; the worst of docs/results/export.md's 44 rows is 1.7e-6
# TINY with an identity-shortcut block in its first stage: form (a)'s summed paths feeding BN and
# then an identity add is where jax2onnx's Flax plugins once broke the graph (onnxruntime refused it)
EXPORTED = ArchConfig(layers=(2, 1), cardinality=4, base_width=4, stem="cifar", num_classes=5)
BACKEND = keras.backend.backend()


def config_file(folder, config: ArchConfig) -> str:
    path = folder / "config.json"
    path.write_text(config.to_json())
    return str(path)


def out_path(folder, fmt: str) -> str:
    return str(folder / f"model{FORMATS[fmt].suffix or '_saved_model'}")


def exported(
    tmp_path,
    framework: str,
    fmt: str,
    form: str,
    config: ArchConfig = EXPORTED,
    image_size: int | None = None,
):
    """Export ``config`` (random weights, BN randomised) and verify it, one timed call a figure."""
    return export(
        config_file(tmp_path, config),
        out_path(tmp_path, fmt),
        framework,
        fmt=fmt,
        form=form,
        image_size=image_size,
        verify=True,
        repeats=1,
    )


def assert_same_function(result) -> None:
    """Within the bound of torch (c), at batch 8 and 1, fused and not; and the artifact carries the
    sidecar's words in its own metadata wherever its format has a place for them."""
    meta = json.loads(sidecar_path(result.out).read_text())
    assert meta["input"]["layout"] == result.layout and meta["form"] == result.form
    inside = artifacts.read_metadata(result.format, result.out)
    assert inside == (None if result.format == "stablehlo" else meta)
    assert_named_as_the_sidecar_says(result.format, result.out, meta)
    v = result.verification
    where = f"{result.framework} -> {result.format}, form ({result.form})"
    assert v.errors["reference"] <= TOL, f"{where}: {v.errors}"
    assert v.errors["batch 1"] <= TOL, f"{where}: {v.errors}"
    assert v.errors["source"] <= TOL, f"{where}: {v.errors}"
    assert v.errors.get("unfused", 0.0) <= TOL, f"{where}: {v.errors}"
    assert v.passed
    assert set(v.latency_ms) == {"1", "8"} and all(t["artifact"] > 0 for t in v.latency_ms.values())


def assert_named_as_the_sidecar_says(fmt: str, out: str, meta: dict) -> None:
    """The input and output names read back from the file, with the format's own library, are the
    sidecar's, and those are docs/export.md's: ``images`` in, ``logits`` (``features`` headless) out,
    wherever the format holds names at all."""
    expected_out = "features" if meta["config"]["num_classes"] == 0 else "logits"
    expected = (
        None if fmt == "stablehlo" else "images",
        expected_out if fmt in ("onnx", "tflite", "saved_model") else None,
    )
    assert (meta["input"]["name"], meta["output"]["name"]) == expected
    assert artifacts.io_names(fmt, out) == expected, f"{fmt}: the file's names are not the sidecar's"


def pair_params(framework: str, fast: tuple[tuple[str, str], ...] = ()):
    """Every format of ``framework`` in every form; form (c) and the ``fast`` (format, form) pairs in
    the fast tier, the rest in the full tier."""
    formats = sorted({fmt for fw, fmt in EXPORTERS if fw == framework})
    return [
        pytest.param(fmt, form, marks=[] if (form == "c" or (fmt, form) in fast) else [pytest.mark.slow])
        for fmt in formats
        for form in "abc"
    ]


@pytest.mark.parametrize("fmt, form", pair_params("torch"))
def test_torch_artifacts_compute_torch_form_c(tmp_path, fmt, form):
    assert_same_function(exported(tmp_path, "torch", fmt, form))


@pytest.mark.parametrize("fmt, form", pair_params("flax", fast=(("onnx", "a"),)))
def test_flax_artifacts_compute_torch_form_c(tmp_path, fmt, form):
    assert_same_function(exported(tmp_path, "flax", fmt, form))


def keras_pair_params():
    smoke = {("jax", "stablehlo"), ("torch", "onnx")}  # the fast tier's pass on the other backends
    out = []
    for fmt in sorted({fmt for fw, fmt in EXPORTERS if fw == "keras"}):
        for form in "abc":
            marks = [] if form == "c" else [pytest.mark.slow]
            if form == "c" and any((b, fmt) in smoke for b in ("jax", "torch")):
                marks.append(pytest.mark.keras_smoke)
            out.append(pytest.param(fmt, form, marks=marks))
    return out


@pytest.mark.keras
@pytest.mark.parametrize("fmt, form", keras_pair_params())
def test_keras_artifacts_compute_torch_form_c(tmp_path, fmt, form):
    if BACKEND not in EXPORTERS["keras", fmt]:
        with pytest.raises(ExportError, match="KERAS_BACKEND="):
            exported(tmp_path, "keras", fmt, form)
        assert list(tmp_path.iterdir()) == [tmp_path / "config.json"]
        return
    assert_same_function(exported(tmp_path, "keras", fmt, form))


@pytest.mark.parametrize(
    "framework, fmt, form",
    [
        ("flax", "onnx", "c"),  # jax2onnx's NHWC max-pool, rewritten for onnxruntime
        pytest.param("torch", "onnx", "b", marks=pytest.mark.slow),
        pytest.param("flax", "stablehlo", "a", marks=pytest.mark.slow),
    ],
)
def test_an_imagenet_stem_with_the_stride_on_the_1x1_exports(tmp_path, framework, fmt, form):
    """The 7x7/2 stem and its 3x3/2 max-pool (absent from the CIFAR stem), and v1's strided 1x1."""
    result = exported(tmp_path, framework, fmt, form, TINY_1X1, image_size=64)
    assert result.input_shape[1:] == ([3, 64, 64] if framework == "torch" else [64, 64, 3])
    assert_same_function(result)


@pytest.mark.keras
@pytest.mark.keras_smoke
def test_keras_exports_an_imagenet_stem_to_onnx_on_every_backend(tmp_path):
    result = exported(tmp_path, "keras", "onnx", "c", TINY_1X1, image_size=64)
    assert result.keras_backend == BACKEND
    assert_same_function(result)


def test_the_sidecar_and_the_artifact_say_the_layout_shape_and_preprocessing(tmp_path):
    # a torchvision-layout state_dict: resnext-port's reader says it expects ImageNet statistics
    model = rt.create_model(config=TINY, form="c")
    rt.import_weights(model, random_weights(TINY, "c", seed=2))
    src = tmp_path / "tiny.pth"
    rt.save_state_dict(model, src)
    out = tmp_path / "tiny.onnx"
    result = export(str(src), out, "torch", image_size=40)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["input"] == {
        "name": "images",
        "layout": "NCHW",
        "shape": [None, 3, 40, 40],
        "dtype": "float32",
    }
    assert meta["output"] == {"name": "logits", "shape": [None, 5]}
    # torchvision's published normalisation (its ImageNet transforms), not this project's constant
    prep = meta["preprocessing"]
    assert prep["channels"] == "RGB" and prep["scale"] == "0..1"
    assert prep["mean"] == [0.485, 0.456, 0.406] and prep["std"] == [0.229, 0.224, 0.225]
    assert ArchConfig.from_dict(meta["config"]) == TINY and meta["form"] == result.form == "c"
    assert artifacts.read_metadata("onnx", str(out)) == meta  # also inside the ONNX file
    # the runtime sees the same input the sidecar names
    import onnxruntime as ort

    (inp,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()
    assert inp.name == "images" and inp.shape[1:] == [3, 40, 40] and isinstance(inp.shape[0], str)


@pytest.mark.keras
def test_the_caffe_preprocessing_said_is_keras_applications_preprocess_input():
    """A keras.applications source keeps its input: following the sidecar's words on an RGB image
    gives what keras.applications.resnet.preprocess_input gives."""
    prep = export_module.preprocessing("caffe")
    rgb = np.random.default_rng(5).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    assert prep["channels"] == "BGR" and prep["scale"] == "0..255"
    followed = (rgb[..., ::-1] - np.array(prep["mean"])) / np.array(prep["std"])
    want = keras.ops.convert_to_numpy(keras.applications.resnet.preprocess_input(rgb.copy()))
    np.testing.assert_allclose(followed, want, rtol=0, atol=1e-4)


def test_a_headless_network_exports_its_pooled_features(tmp_path):
    headless = ArchConfig.from_dict({**TINY.to_dict(), "num_classes": 0})
    result = exported(tmp_path, "torch", "onnx", "a", headless)
    meta = json.loads(sidecar_path(result.out).read_text())
    # the second stage's planes (128) times the bottleneck's expansion (4)
    assert meta["output"] == {"name": "features", "shape": [None, 512]}
    assert artifacts.read_metadata("onnx", result.out) == meta
    assert_same_function(result)


def test_a_checkpoint_exports_in_its_own_form_unless_asked(tmp_path):
    src = tmp_path / "tiny_b.safetensors"
    save_checkpoint(src, random_weights(TINY, "b", seed=4), TINY, "b")
    result = export(str(src), tmp_path / "m.pt2", "torch", verify=True, repeats=1)
    assert result.form == "b"
    assert_same_function(result)


@pytest.mark.parametrize("pair", sorted(REFUSED), ids=lambda p: f"{p[0]}-{p[1]}")
def test_refused_pairs_exit_2_with_the_reason_and_write_nothing(tmp_path, capsys, pair):
    framework, fmt = pair
    code = export_cli.main(
        ["resnet18", "--framework", framework, "--format", fmt, "--out", str(tmp_path / "m")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"resnext-export: {framework} -> {fmt} is not exported: {REFUSED[pair]}"
    assert list(tmp_path.iterdir()) == []


def test_a_missing_exporter_or_runtime_is_named_with_its_pip_command(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    for module, pip, argv in [
        ("onnxscript", "onnxscript", ["--format", "onnx"]),
        ("onnxruntime", "onnxruntime", ["--format", "onnx", "--verify"]),
    ]:
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda m, *a, _n=module: None if m == _n else real(m, *a)
        )
        with pytest.raises(ExportError, match=f"needs {pip}: pip install {pip}"):
            export_cli._main(["resnet18", "--framework", "torch", "--out", str(tmp_path / "m.onnx"), *argv])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_nothing_and_keeps_what_was_there(tmp_path, monkeypatch):
    def breaks_midway(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half an artifact")
        raise RuntimeError("the exporter failed")

    monkeypatch.setattr(artifacts, "_torch_pt2", breaks_midway)
    out = tmp_path / "m.pt2"
    with pytest.raises(RuntimeError, match="the exporter failed"):
        export(config_file(tmp_path, TINY), out, "torch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    out.write_bytes(b"the old artifact")
    with pytest.raises(RuntimeError):
        export(config_file(tmp_path, TINY), out, "torch", force=True)
    assert out.read_bytes() == b"the old artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "m.pt2"]
    with pytest.raises(ExportError, match="exists; pass --force"):
        export(config_file(tmp_path, TINY), out, "torch")


def test_an_artifact_its_runtime_refuses_fails_the_check_with_what_the_runtime_said(
    tmp_path, capsys, monkeypatch
):
    def broken_exporter(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 not a torch.export archive")

    monkeypatch.setattr(artifacts, "_torch_pt2", broken_exporter)
    argv = [config_file(tmp_path, TINY), "--framework", "torch", "--out", str(tmp_path / "m.pt2"), "--verify"]
    assert export_cli.main(argv) == 1
    said = capsys.readouterr().out
    assert "verify: FAILED: torch refused the artifact:" in said, said


def test_the_command_reports_exits_1_when_the_artifact_is_apart_and_writes_its_json(
    tmp_path, capsys, monkeypatch
):
    out, report = tmp_path / "m.onnx", tmp_path / "report.json"
    argv = [
        config_file(tmp_path, TINY),
        "--framework",
        "torch",
        "--out",
        str(out),
        "--verify",
        "--repeats",
        "1",
    ]
    assert resnext_cli.main(["export", *argv, "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "verify: max relative logit error" in text and ": ok" in text and "latency, batch 8" in text
    saved = json.loads(report.read_text())
    assert saved["verification"]["passed"] and saved["format"] == "onnx" and saved["layout"] == "NCHW"
    # a bound no fp32 artifact can meet stands in for a broken exporter: exit 1, the verdict says so
    monkeypatch.setattr(export_module, "BOUND", 0.0)
    assert export_cli.main([*argv, "--force"]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.slow
def test_a_real_preset_exports_from_every_framework_within_the_bound(tmp_path):
    """resnext26_8x16d (CIFAR stem, 32 px): the tiny config's proof on a real network's depth."""
    name = "resnext26_8x16d"
    for framework, fmt in [("torch", "onnx"), ("flax", "stablehlo"), ("keras", "tflite")]:
        if framework == "keras" and BACKEND != "tensorflow":
            continue
        result = export(
            name, tmp_path / f"{framework}{FORMATS[fmt].suffix}", framework, verify=True, repeats=1
        )
        assert result.config == get_config(name)
        assert_same_function(result)


def test_the_artifact_runs_without_this_project(tmp_path):
    """What --verify loads is the artifact alone: torch.export.load needs no resnext module."""
    out = tmp_path / "m.pt2"
    export(config_file(tmp_path, TINY), out, "torch")
    program = torch.export.load(str(out))
    modules = {type(m).__module__ for m in program.module().modules()}
    assert not any(m.startswith("resnext") for m in modules), modules
    x = torch.from_numpy(np.zeros((3, 3, 32, 32), np.float32))
    assert program.module()(x).shape == (3, 5)


@pytest.mark.slow
def test_keras_with_no_backend_chosen_takes_the_one_its_format_needs(tmp_path):
    """A fresh process with KERAS_BACKEND unset: StableHLO comes from JAX, so Keras starts on JAX."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = tmp_path / "m.stablehlo"
    argv = [config_file(tmp_path, TINY), "--framework", "keras", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "resnext_export", *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(sidecar_path(out).read_text())["keras_backend"] == "jax"
    assert "keras on jax" in done.stdout


# timm's variants, tiny: SE on a deep stem with average-pooled shortcuts, and ECA with BlurPool
# anti-aliasing on the ImageNet stem (its reflect padding and fixed filter, in every runtime).
SE_D = ArchConfig(
    layers=(1, 1), cardinality=4, base_width=4, stem_type="deep", stem_width=16, avg_down=True,
    attn_layer="se", num_classes=5,
)  # fmt: skip
ECA_BLUR = ArchConfig(
    layers=(1, 1), cardinality=4, base_width=4, attn_layer="eca", aa_layer="blur", num_classes=5
)


# Pre-activation with every v2 part at once: a stem ending on its conv (so the max-pool's -inf
# padding shows), the stride in each stage's last block with its every-other-pixel shortcut, and
# conv biases where no norm follows.
PREACT = ArchConfig(
    layers=(2, 1), cardinality=4, base_width=4, preact=True, stride_at="last", conv_bias=True, num_classes=5
)


@pytest.mark.parametrize("config", [SE_D, ECA_BLUR, PREACT], ids=["se_d", "eca_blur", "preact"])
@pytest.mark.parametrize(
    "framework, fmt",
    [
        ("torch", "onnx"),
        ("flax", "stablehlo"),
        pytest.param("keras", "tflite", marks=pytest.mark.keras),
    ],
)
def test_the_variant_parts_export_and_compute_torch_form_c_in_the_runtime(tmp_path, config, framework, fmt):
    if framework == "keras" and BACKEND != "tensorflow":
        pytest.skip("LiteRT export is Keras on TensorFlow's")
    assert_same_function(exported(tmp_path, framework, fmt, "c", config, image_size=32))
