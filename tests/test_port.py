"""`resnext-port`: format pairs round-trip bitwise, torchvision files need no flags, bad input is refused.

Source files are written by each framework's own writer from seeded random
weights; "bitwise" compares the canonical tensors read back from each file.
"""

import itertools

import numpy as np
import pytest
import torch
from helpers import TINY

import resnext_torch as rt
from resnext_port import port
from resnext_port.cli import main
from resnext_port.port import FORMATS, read
from resnext_spec import get_config, random_weights
from resnext_spec.tolerances import TOL, rel_error

SUFFIX = {"torch": ".pth", "safetensors": ".safetensors", "keras": ".weights.h5", "flax": ".msgpack"}
assert set(SUFFIX) == set(FORMATS.values()) - {"keras-h5"}  # every format that is written; .h5 is read only


def torch_model(config, seed=0, form="c"):
    model = rt.create_model(config=config, form=form)
    rt.import_weights(model, random_weights(config, form, seed))
    return model.eval()


# Keras pairs run again on the JAX backend for resnext50_32x4d only (same files, less CI time).
# Each model's files are made once: its tests share one xdist worker (see parity_runs.shared).
@pytest.fixture(
    scope="module",
    params=[
        pytest.param("resnext50_32x4d", marks=pytest.mark.xdist_group("port_resnext50_32x4d")),
        pytest.param(
            "resnet50", marks=[pytest.mark.first_backend_only, pytest.mark.xdist_group("port_resnet50")]
        ),
    ],
)
def sources(request, tmp_path_factory):
    """One file per format, all holding the same weights: a torchvision-layout .pth ported to the rest."""
    tmp = tmp_path_factory.mktemp(request.param)
    files = {"torch": tmp / "src.pth"}
    torch.save(torch_model(get_config(request.param)).state_dict(), files["torch"])
    for fmt in ("safetensors", "keras", "flax"):
        files[fmt] = tmp / f"src{SUFFIX[fmt]}"
        port(files["torch"], files[fmt])
    return request.param, files


def same(a, b):
    return list(a.weights) == list(b.weights) and all(
        np.array_equal(a.weights[k], b.weights[k]) for k in a.weights
    )


PAIRS = [
    pytest.param(s, d, marks=pytest.mark.keras) if "keras" in (s, d) else (s, d)
    for s, d in itertools.permutations(SUFFIX, 2)
]


@pytest.mark.slow
@pytest.mark.parametrize("src, dst", PAIRS)
def test_every_format_pair_round_trips_bitwise_and_verifies(sources, src, dst, tmp_path):
    name, files = sources
    there = tmp_path / f"there{SUFFIX[dst]}"
    result = port(files[src], there, verify=True)
    assert result.preset == name and result.verified, result.verify_error
    back = tmp_path / f"back{SUFFIX[src]}"
    port(there, back)
    assert same(read(back), read(files[src]))


@pytest.mark.keras
def test_torchvision_state_dict_ports_with_no_flags_and_logits_match(tmp_path):
    import keras

    import resnext_flax as rf
    import resnext_keras as rk

    config = get_config("resnet18")
    model = torch_model(config, seed=3)
    state = model.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in state)  # torchvision's layout, counters included
    torch.save(state, tmp_path / "resnet18.pth")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).double().numpy()

    assert main([str(tmp_path / "resnet18.pth"), str(tmp_path / "r18.weights.h5")]) == 0
    assert main([str(tmp_path / "resnet18.pth"), str(tmp_path / "r18.msgpack")]) == 0
    keras_model = rk.load_weights_file(tmp_path / "r18.weights.h5")
    flax_model = rf.load_msgpack(tmp_path / "r18.msgpack")
    flax_model.eval()
    nhwc = x.transpose(0, 2, 3, 1)
    assert (
        rel_error(np.asarray(keras.ops.convert_to_numpy(keras_model(nhwc, training=False))), expected) <= TOL
    )
    assert rel_error(np.asarray(flax_model(nhwc)), expected) <= TOL


def test_training_checkpoint_with_ddp_prefix_ports_and_converts_form(tmp_path, capsys):
    model = torch_model(TINY, seed=4)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 90, "state_dict": state, "best_acc1": 0.7}, tmp_path / "ckpt.pth")
    assert (
        main([str(tmp_path / "ckpt.pth"), str(tmp_path / "tiny_a.weights.h5"), "--to-form", "a", "--verify"])
        == 0
    )
    out = capsys.readouterr().out
    assert "'state_dict'" in out and "'module.' prefix" in out and "no preset" in out
    assert "form (c) -> (a)" in out and "verify: max relative logit error" in out
    back = read(tmp_path / "tiny_a.weights.h5")
    assert back.form == "a" and back.config == TINY


# ---- bad input: a message, exit code 2, and no DST --------------------------------------------


@pytest.fixture
def tiny_pth(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(torch_model(TINY).state_dict(), path)
    return path


def refuse(argv, message, capsys, dst):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not dst.exists()
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}")]  # no temp file left


def edited(tmp_path, tiny_pth, edit):
    state = torch.load(tiny_pth, weights_only=True)
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    return path


def test_unknown_format(tiny_pth, tmp_path, capsys):
    refuse([tiny_pth, tmp_path / "out.bin"], "unknown format", capsys, tmp_path / "out.bin")
    refuse(
        [tiny_pth, tmp_path / "out.h5"],
        "legacy .h5 files are read, not written",
        capsys,
        tmp_path / "out.h5",
    )


@pytest.mark.parametrize("fmt", ["torch", "safetensors", "keras", "flax"])
def test_truncated_file(fmt, tiny_pth, tmp_path, capsys):
    whole = tmp_path / f"whole{SUFFIX[fmt]}"
    port(tiny_pth, whole, force=True)
    cut = tmp_path / f"cut{SUFFIX[fmt]}"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    dst = tmp_path / "out.safetensors"
    refuse([cut, dst], "truncated", capsys, dst)


def test_missing_and_unexpected_keys_are_listed(tiny_pth, tmp_path, capsys):
    def edit(state):
        del state["layer2.1.conv3.weight"]
        state["layer2.1.conv4.weight"] = torch.zeros(1)

    dst = tmp_path / "out.msgpack"
    refuse([edited(tmp_path, tiny_pth, edit), dst, "--model", "resnet50"], "missing", capsys, dst)
    refuse([edited(tmp_path, tiny_pth, edit), dst], "1 unexpected: layer2.1.conv4.weight", capsys, dst)


def test_prefix_mismatch_gets_a_hint(tmp_path, capsys):
    state = {f"backbone.{k}": v for k, v in torch_model(get_config("resnet18")).state_dict().items()}
    torch.save(state, tmp_path / "prefixed.pth")
    dst = tmp_path / "out.safetensors"
    refuse([tmp_path / "prefixed.pth", dst, "--model", "resnet18"], "strip that prefix", capsys, dst)


def test_shape_mismatch_is_named(tmp_path, capsys):
    state = torch_model(get_config("resnet18")).state_dict()
    state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"].transpose(0, 1).contiguous()
    torch.save(state, tmp_path / "bad.pth")
    dst = tmp_path / "out.safetensors"
    message = "shape mismatch layer2.0.conv1.weight: expected (128, 64, 3, 3), got (64, 128, 3, 3)"
    refuse([tmp_path / "bad.pth", dst], message, capsys, dst)


def test_nonsense_shapes_cannot_be_inferred(tiny_pth, tmp_path, capsys):
    def edit(state):
        state["layer1.0.conv2.weight"] = state["layer1.0.conv2.weight"].transpose(0, 1).contiguous()

    dst = tmp_path / "out.safetensors"
    refuse([edited(tmp_path, tiny_pth, edit), dst], "cannot infer the architecture", capsys, dst)


def test_wrong_number_of_classes_suggests_num_classes(tmp_path, capsys):
    config = get_config("resnet18", num_classes=10)
    torch.save(torch_model(config).state_dict(), tmp_path / "r18_10.pth")
    dst = tmp_path / "out.weights.h5"
    refuse([tmp_path / "r18_10.pth", dst, "--model", "resnet18"], "pass --num-classes 10", capsys, dst)
    assert main([str(tmp_path / "r18_10.pth"), str(dst), "--model", "resnet18", "--num-classes", "10"]) == 0


def test_form_the_architecture_does_not_have(tmp_path, capsys):
    torch.save(torch_model(get_config("resnet18")).state_dict(), tmp_path / "r18.pth")
    dst = tmp_path / "out.msgpack"
    refuse([tmp_path / "r18.pth", dst, "--to-form", "a"], "form", capsys, dst)


class NotATensor:
    pass


def test_pickle_that_needs_code_is_refused_with_an_explanation(tmp_path, capsys):
    torch.save({"state_dict": torch_model(TINY).state_dict(), "extra": NotATensor()}, tmp_path / "code.pth")
    dst = tmp_path / "out.safetensors"
    refuse([tmp_path / "code.pth", dst], "weights_only=True", capsys, dst)


def test_existing_destination_needs_force(tiny_pth, tmp_path, capsys):
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"precious")
    assert main([str(tiny_pth), str(dst)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert dst.read_bytes() == b"precious"
    assert main([str(tiny_pth), str(dst), "--force"]) == 0
    assert read(dst).config == TINY


def test_an_exported_model_is_pointed_to_export_and_h5_is_not_offered_as_a_target(tiny_pth, tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(b"an onnx graph")
    refuse(
        [tmp_path / "model.onnx", tmp_path / "out.pth"], "resnext export writes", capsys, tmp_path / "out.pth"
    )
    assert main([str(tiny_pth), str(tmp_path / "out.bin")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown format" in line and ".weights.h5" in line and ", .h5 " not in line
    assert "read keras.applications' legacy .h5" in line and not (tmp_path / "out.bin").exists()
