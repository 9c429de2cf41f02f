"""Every weights reader is total: any bytes give weights or a clear error, never a traceback.

Hypothesis damages real files of each format as a hostile user would (truncations,
flipped bytes, forged safetensors headers, random bytes, text under a weights suffix)
and calls the reader `resnext-port` uses; the only exceptions allowed out are
``PortError`` and ``CheckpointError``, whose messages name the file. A flipped byte
in the tensor data of the project's own files is caught by their checksum. The
example budget is fixed (derandomised) in CI; FUZZ_EXAMPLES=N runs a longer search.
"""

import json
import os
import struct
import tracemalloc

import numpy as np
import pytest
import torch
from helpers import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resnext_torch as rt
from resnext_port.cli import main
from resnext_port.port import PortError, port, read
from resnext_spec import CheckpointError, random_weights

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=EXAMPLES <= 25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SUFFIX = {"torch": ".pth", "safetensors": ".safetensors", "keras": ".weights.h5", "flax": ".msgpack"}
OURS = ("safetensors", "keras", "flax")  # the formats this project writes with a checksum


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One good TINY file per format, as bytes."""
    tmp = tmp_path_factory.mktemp("fuzz")
    model = rt.create_model(config=TINY, form="c")
    rt.import_weights(model, random_weights(TINY, "c", 0))
    files = {"torch": tmp / "src.pth"}
    torch.save(model.state_dict(), files["torch"])
    for fmt in OURS:
        files[fmt] = tmp / f"src{SUFFIX[fmt]}"
        port(files["torch"], files[fmt])
    return {fmt: path.read_bytes() for fmt, path in files.items()}


def outcome(path) -> str:
    """'read' or 'refused'; anything else escapes and fails the test."""
    try:
        read(path, model=None)
    except (PortError, CheckpointError) as e:
        assert str(path) in str(e) or path.name in str(e), f"the message does not name the file: {e}"
        return "refused"
    return "read"


def damaged(fmt: str, data: bytes, tmp_path, name: str = "bad"):
    path = tmp_path / f"{name}{SUFFIX[fmt]}"
    path.write_bytes(data)
    return path


FORMATS = pytest.mark.parametrize("fmt", list(SUFFIX))


@FORMATS
@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True))
def test_a_truncated_file_is_refused(originals, tmp_path, fmt, cut):
    data = originals[fmt]
    assert outcome(damaged(fmt, data[: int(len(data) * cut)], tmp_path)) == "refused"


@FORMATS
@FUZZ
@given(
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=16)
)
def test_flipped_bytes_give_weights_or_a_clear_error(originals, tmp_path, fmt, flips):
    data = bytearray(originals[fmt])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    outcome(damaged(fmt, bytes(data), tmp_path))


@FORMATS
@FUZZ
@given(junk=st.binary(max_size=4096) | st.text(max_size=500).map(str.encode))
def test_random_bytes_and_text_are_refused(tmp_path, fmt, junk):
    assert outcome(damaged(fmt, junk, tmp_path)) == "refused"


def _safetensors(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


@FUZZ
@given(
    dtype=st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "F64", "BOOL", "X9"]),
    shape=st.lists(st.integers(0, 2**40), max_size=5),
    offsets=st.tuples(st.integers(-5, 2**40), st.integers(-5, 2**40)),
    metadata=st.none()
    | st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=3),
    body=st.binary(max_size=64),
)
def test_forged_safetensors_headers_are_refused_without_allocating(
    tmp_path, dtype, shape, offsets, metadata, body
):
    header = {"conv1.weight": {"dtype": dtype, "shape": shape, "data_offsets": list(offsets)}}
    if metadata is not None:
        header["__metadata__"] = metadata
    path = damaged("safetensors", _safetensors(header, body), tmp_path)
    tracemalloc.start()  # numpy reports its buffers here: a forged size read as real would show
    try:
        assert outcome(path) == "refused"  # one tensor called conv1.weight is no network
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated to read a {path.stat().st_size}-byte file"


@pytest.mark.parametrize("fmt", OURS)
def test_a_flipped_byte_in_the_tensor_data_of_our_files_is_caught(originals, tmp_path, fmt):
    """The last tensor bytes of each file (not its header): the checksum names the damage."""
    data = bytearray(originals[fmt])
    good = read(damaged(fmt, bytes(data), tmp_path, "good")).weights
    target = good["fc.bias"].astype(np.float32).tobytes()
    at = bytes(data).rfind(target)
    assert at > 0, "the head's bias is stored as raw float32 bytes"
    data[at] ^= 0x01  # the lowest mantissa bit of one value: a quietly different model without a check
    with pytest.raises((PortError, CheckpointError), match="checksum"):
        read(damaged(fmt, bytes(data), tmp_path))


def test_a_bf16_state_dict_ports_as_float32_exactly(tmp_path):
    model = rt.create_model(config=TINY, form="c")
    rt.import_weights(model, random_weights(TINY, "c", 0))
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(half, tmp_path / "bf16.pth")
    got = read(tmp_path / "bf16.pth")
    assert any("bfloat16" in n for n in got.notes)
    for k, v in half.items():
        if k in got.weights:
            np.testing.assert_array_equal(got.weights[k], v.float().numpy())


def test_the_cli_exits_2_on_a_damaged_file_and_writes_nothing(originals, tmp_path, capsys):
    src = damaged("keras", originals["keras"][: len(originals["keras"]) // 2], tmp_path)
    assert main([str(src), str(tmp_path / "out.safetensors")]) == 2
    assert "bad.weights.h5" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


# ---- the other libraries' layouts: Hugging Face and timm folders, keras.applications files ----


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Small transformers, timm and keras-hub ResNet folders, as {name: {file: bytes}}: timm's and
    keras-hub's of the variant layouts, whose names the readers parse most of (a deep stem, average-
    pooled shortcuts, SE; keras-hub's vd blocks)."""
    transformers = pytest.importorskip("transformers")
    from helpers import import_timm

    tmp = tmp_path_factory.mktemp("folders")
    hf = transformers.ResNetConfig(depths=[1], hidden_sizes=[256], layer_type="bottleneck", num_labels=3)
    transformers.ResNetForImageClassification(hf).save_pretrained(tmp / "hf")
    timm = import_timm()
    small = dict(layers=(1, 1, 1, 1), cardinality=2, base_width=4, num_classes=3)
    timm.models.save_for_hf(
        timm.create_model("seresnext26d_32x4d", **small),
        tmp / "timm",
        model_args=small,
        safe_serialization=True,
    )
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[32, 32, 64],
        input_conv_kernel_sizes=[3, 3, 3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="bottleneck_block_vd",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=3).save_to_preset(tmp / "keras_hub")
    return {
        name: {f.name: f.read_bytes() for f in (tmp / name).iterdir()} for name in ("hf", "timm", "keras_hub")
    }


def folder_with(tmp_path, files: dict[str, bytes], name: str, data: bytes):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    for f, content in files.items():
        (folder / f).write_bytes(data if f == name else content)
    return folder


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


@pytest.mark.parametrize("kind", ["hf", "timm", "keras_hub"])
def test_the_undamaged_folders_read(folders, tmp_path, kind):
    """What the damage tests start from is read, so "refused" below is the damage's doing."""
    assert outcome(folder_with(tmp_path, folders[kind], "", b"")) == "read"


@pytest.mark.parametrize("kind", ["hf", "timm", "keras_hub"])
@FUZZ
@given(data=st.data())
def test_a_forged_config_json_gives_weights_or_a_clear_error(folders, tmp_path, kind, data):
    config = json.loads(folders[kind]["config.json"])
    for key in data.draw(st.lists(st.sampled_from(sorted(config)), min_size=1, max_size=4)):
        config[key] = data.draw(JSON)
    forged = json.dumps(config).encode()
    outcome(folder_with(tmp_path, folders[kind], "config.json", forged))


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("hf", "config.json"),
        ("hf", "model.safetensors"),
        ("timm", "config.json"),
        ("timm", "model.safetensors"),
        ("keras_hub", "task.json"),
        ("keras_hub", "model.weights.h5"),
        ("keras_hub", "task.weights.h5"),
    ],
)
@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True), flips=st.lists(st.integers(0, 2**32), max_size=8))
def test_a_damaged_folder_file_gives_weights_or_a_clear_error(folders, tmp_path, kind, name, cut, flips):
    data = bytearray(folders[kind][name][: max(1, int(len(folders[kind][name]) * (1 - cut)))])
    for at in flips:
        data[at % len(data)] ^= 1 + at % 255
    outcome(folder_with(tmp_path, folders[kind], name, bytes(data)))


@pytest.fixture(scope="module")
def keras_applications_h5(tmp_path_factory):
    """keras.applications ResNet50 (2 classes) in the legacy .h5 layout, as bytes (~94 MB)."""
    keras = pytest.importorskip("keras")
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path_factory.mktemp("kapps") / "resnet50.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, keras.applications.ResNet50(weights=None, classes=2))
    return path.read_bytes()


# Each example that survives the damage loads a whole ResNet50 into Keras (~2 s): a smaller CI budget.
@settings(FUZZ, max_examples=max(1, EXAMPLES // 5))
@given(cut=st.floats(0, 1, exclude_max=True), flips=st.lists(st.integers(0, 2**32), max_size=16))
def test_a_damaged_keras_applications_file_gives_weights_or_a_clear_error(
    keras_applications_h5, tmp_path, cut, flips
):
    data = bytearray(keras_applications_h5[: max(1, int(len(keras_applications_h5) * (1 - cut)))])
    for at in flips:
        data[at % len(data)] ^= 1 + at % 255
    path = tmp_path / "resnet50.h5"
    path.write_bytes(bytes(data))
    outcome(path)


def test_a_truncated_pth_is_one_short_line_naming_the_file_and_what_is_wrong(originals, tmp_path, capsys):
    from resnext_port.cli import main

    src = damaged("torch", originals["torch"][: len(originals["torch"]) // 2], tmp_path)
    assert main([str(src), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err[-1]) < 250 and "truncated or corrupt" in err[-1] and str(src) in err[-1], err[-1]
    assert "miniz" not in err[-1]
