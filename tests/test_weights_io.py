"""Canonical weights in and out of every build: one body per property, parametrized over the three
frameworks, so a tiny config added to ``TINY_CONFIGS`` is covered in all nine builds at once.

Round trips are bitwise; a strict import of a broken dict names every problem and changes nothing;
every build's count equals the spec's, which tests/test_counts.py holds to the published figures.
"""

import numpy as np
import pytest
import torch
from helpers import (
    TINY,
    TINY_1X1,
    TINY_BASIC,
    assert_broken_import_is_refused_whole,
    assert_round_trip_is_bitwise,
)

import resnext_flax as rf
import resnext_keras as rk
import resnext_torch as rt
from resnext_spec import (
    FRAMEWORKS,
    CheckpointError,
    canonical_shapes,
    count_params,
    random_weights,
    save_checkpoint,
)

LIBS = {"torch": rt, "keras": rk, "flax": rf}
TINY_CONFIGS = {"tiny": TINY, "tiny_1x1": TINY_1X1, "tiny_basic": TINY_BASIC}


def framework_param(fw: str, smoke: bool = False):
    """The Keras case runs again on each Keras backend (its marker); ``smoke`` puts it in the fast
    tier's pass of Keras on JAX and torch too."""
    marks = [pytest.mark.keras, *([pytest.mark.keras_smoke] if smoke else [])] if fw == "keras" else []
    return pytest.param(fw, marks=marks, id=fw)


def builds():
    for fw in FRAMEWORKS:
        for label, config in TINY_CONFIGS.items():
            for form in "abc" if config.block == "bottleneck" else "c":
                yield pytest.param(
                    fw, config, form, id=f"{fw}-{label}-{form}", marks=framework_param(fw, smoke=True).marks
                )


@pytest.mark.parametrize("fw, config, form", builds())
def test_import_then_export_is_bitwise(fw, config, form):
    assert_round_trip_is_bitwise(LIBS[fw], config, form, seed=5)


@pytest.mark.parametrize("fw, config, form", builds())
def test_every_build_holds_the_canonical_layout_and_the_spec_count(fw, config, form):
    lib = LIBS[fw]
    model = lib.create_model(config=config, form=form)
    exported = lib.export_weights(model)
    want = canonical_shapes(config, form)
    assert list(exported) == list(want)
    assert {k: v.shape for k, v in exported.items()} == want
    assert lib.count_params(model) == count_params(config)


@pytest.mark.parametrize("fw", [framework_param(fw, smoke=True) for fw in FRAMEWORKS])
def test_failed_import_lists_every_problem_and_changes_nothing(fw):
    assert_broken_import_is_refused_whole(LIBS[fw])


@pytest.mark.parametrize("fw", [framework_param(fw) for fw in FRAMEWORKS])
def test_the_framework_file_save_native_writes_load_native_reads_back_bitwise(fw, tmp_path):
    """The facade's own-file pair: torch's state_dict (which needs the config back), Keras's
    .weights.h5 and Flax's msgpack (which record it) give the same canonical weights again."""
    from resnext_spec import random_weights

    lib = LIBS[fw]
    weights = random_weights(TINY, "b", seed=7)
    model = lib.build(TINY, "b", weights=weights)
    path = tmp_path / f"m{lib.NATIVE_SUFFIX}"
    lib.save_native(model, path)
    back = lib.load_native(path, TINY, "b")
    assert (back.config, back.form) == (TINY, "b")
    got = lib.export_weights(back)
    assert list(got) == list(weights) and all(np.array_equal(got[k], weights[k]) for k in weights)


@pytest.mark.parametrize(
    "framework, suffix",
    [pytest.param("keras", ".weights.h5", marks=pytest.mark.keras), ("flax", ".msgpack")],
)
def test_load_takes_the_file_resnext_port_writes_for_its_framework(framework, suffix, tmp_path):
    """`resnext port x.pth x.weights.h5`, then `rk.load("x.weights.h5")`: the file records its network."""
    from resnext_port.port import port

    lib = LIBS[framework]
    weights = random_weights(TINY, "c", seed=4)
    save_checkpoint(tmp_path / "src.safetensors", weights, TINY)
    port(tmp_path / "src.safetensors", tmp_path / f"x{suffix}")
    model = lib.load(tmp_path / f"x{suffix}")
    assert model.config == TINY and model.form == "c"
    assert all(np.array_equal(v, weights[k]) for k, v in lib.export_weights(model).items())
    as_a = lib.load(tmp_path / f"x{suffix}", form="a")
    assert as_a.form == "a" and set(lib.export_weights(as_a)) == set(canonical_shapes(TINY, "a"))


def test_torch_load_of_a_state_dict_says_how_to_load_one(tmp_path):
    torch.save(rt.create_model(config=TINY).state_dict(), tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="does not record its network.*load_native"):
        rt.load(tmp_path / "x.pth")
