"""Canonical safetensors checkpoints: bitwise round trip, atomic writes, clear errors."""

import json

import numpy as np
import pytest
from helpers import TINY, TINY_1X1
from safetensors.numpy import save_file

from resnext_spec import (
    CheckpointError,
    WeightsMismatchError,
    load_checkpoint,
    random_weights,
    save_checkpoint,
)


@pytest.mark.parametrize("config, form", [(TINY, "a"), (TINY, "b"), (TINY, "c"), (TINY_1X1, "a")])
def test_write_read_is_bitwise(tmp_path, config, form):
    w = random_weights(config, form, seed=5)
    save_checkpoint(tmp_path / "m.safetensors", w, config, form)
    back, config2, form2 = load_checkpoint(tmp_path / "m.safetensors")
    assert config2 == config and form2 == form
    assert list(back) == list(w)
    assert all(np.array_equal(back[k], w[k]) and back[k].dtype == np.float32 for k in w)


def test_write_leaves_no_temporary_file(tmp_path):
    save_checkpoint(tmp_path / "m.safetensors", random_weights(TINY), TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_written_file_has_the_mode_a_plain_open_gives(tmp_path):
    # Atomic writes go through a temporary file that mkstemp makes private (0600).
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    save_checkpoint(tmp_path / "w.safetensors", random_weights(TINY), TINY)
    assert (tmp_path / "w.safetensors").stat().st_mode == plain.stat().st_mode


def test_bad_weights_write_nothing_and_keep_the_old_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, random_weights(TINY, seed=1), TINY)
    before = path.read_bytes()
    bad = random_weights(TINY, seed=2)
    del bad["fc.bias"]
    with pytest.raises(WeightsMismatchError, match="fc.bias"):
        save_checkpoint(path, bad, TINY)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, random_weights(TINY), TINY)
    data = path.read_bytes()
    for cut in (4, 100, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|too short"):
            load_checkpoint(path)


def test_foreign_files_are_named(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(other), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a resnext-three-ways checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "v9.safetensors"
    meta = {"format": "resnext-three-ways", "format_version": "9", "config": TINY.to_json(), "form": "c"}
    save_file(random_weights(TINY), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="version '9'"):
        load_checkpoint(path)


def test_tensors_that_do_not_fit_the_stored_config_are_listed(tmp_path):
    path = tmp_path / "lie.safetensors"
    w = random_weights(TINY)
    w.pop("layer1.0.conv1.weight")
    meta = {"format": "resnext-three-ways", "format_version": "1", "config": TINY.to_json(), "form": "c"}
    save_file(w, str(path), metadata=meta)
    with pytest.raises(WeightsMismatchError, match="layer1.0.conv1.weight"):
        load_checkpoint(path)


def test_bad_config_metadata_is_named(tmp_path):
    path = tmp_path / "cfg.safetensors"
    cfg = json.loads(TINY.to_json()) | {"block": "huge"}
    meta = {"format": "resnext-three-ways", "format_version": "1", "config": json.dumps(cfg), "form": "c"}
    save_file(random_weights(TINY), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="block must be one of"):
        load_checkpoint(path)
