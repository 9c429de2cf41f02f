"""resnext_flax: every preset's counts and canonical layout, its jitted steps, its files."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from helpers import (
    PARAM_COUNTS,
    TINY,
    TINY_1X1,
    batch,
    layout_cases,
)

import resnext_flax as rf
from parity.flax_runner import FlaxRunner
from resnext_flax import train
from resnext_flax.weights import submodule
from resnext_spec import (
    CheckpointError,
    canonical_shapes,
    get_config,
    random_weights,
    to_form,
)
from resnext_spec.tolerances import TOL, rel_error


@pytest.mark.parametrize("name, form", layout_cases())
def test_every_preset_has_published_count_and_canonical_layout(name, form):
    model = rf.create_model(name, form=form)
    assert rf.count_params(model) == PARAM_COUNTS[name]
    exported = {k: v.shape for k, v in rf.export_weights(model).items()}
    expected = canonical_shapes(get_config(name), form)
    assert list(exported) == list(expected)
    assert exported == expected


def test_module_paths_are_the_canonical_names():
    model = rf.create_model(config=TINY, form="a")
    conv = model.layer1[0].paths[3].conv2
    assert conv.kernel.shape == (3, 3, 4, 4) and conv.padding == ((1, 1), (1, 1))
    grouped = rf.create_model(config=TINY, form="c").layer1[0].conv2
    assert grouped.feature_group_count == TINY.cardinality
    bn = model.layer1[0].paths[0].bn1
    assert bn.epsilon == 1e-5 and bn.momentum == 0.9 and not bn.use_fast_variance


def test_jitted_forward_equals_eager_forward():
    model = rf.create_model(config=TINY_1X1, form="b")
    rf.import_weights(model, random_weights(TINY_1X1, "b", seed=2))
    model.eval()
    x = jnp.asarray(batch(TINY_1X1, size=32)[0].transpose(0, 2, 3, 1))
    assert rel_error(np.asarray(train.forward(model, x)), np.asarray(model(x))) <= TOL


def torch_sgd_formula(w, grads, lr=0.1, weight_decay=1e-4):
    """torch.optim.SGD's first step from zero momentum: w - lr * (g + wd * w), in float64."""
    return {k: w[k].astype(np.float64) - lr * (grads[k] + weight_decay * w[k]) for k in grads}


def test_jitted_train_step_is_torch_sgd():
    # The optimizer is judged against the formula, on Flax's own gradients, so
    # the check does not depend on how well-conditioned the gradients are.
    w = random_weights(TINY, "c", seed=8)
    x, y = batch(TINY, n=8, size=16, seed=2)
    nhwc = x.transpose(0, 2, 3, 1)
    probe = rf.create_model(config=TINY, form="c")
    rf.import_weights(probe, w)
    grads = FlaxRunner().forward_backward(probe, x, y, train=True).grads

    model = rf.create_model(config=TINY, form="c")
    rf.import_weights(model, w)
    model.train()
    optimizer = train.make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss, _ = train.train_step(model, optimizer, jnp.asarray(nhwc), jnp.asarray(y))
    assert np.isfinite(float(loss))
    stepped, expected = rf.export_weights(model), torch_sgd_formula(w, grads)
    assert max(rel_error(stepped[k], expected[k]) for k in expected) < 1e-6
    assert max(rel_error(stepped[k], w[k]) for k in expected) > 1e-3  # the step moved the weights


def test_msgpack_round_trip_is_bitwise(tmp_path):
    model = rf.create_model(config=TINY, form="a")
    rf.import_weights(model, random_weights(TINY, "a", seed=9))
    path = tmp_path / "tiny.msgpack"
    rf.save_msgpack(model, path)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.msgpack"]
    loaded = rf.load_msgpack(path)
    assert loaded.form == "a" and loaded.config == TINY
    a, b = rf.export_weights(model), rf.export_weights(loaded)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_truncated_or_foreign_msgpack_is_a_clear_error(tmp_path):
    model = rf.create_model(config=TINY, form="c")
    good = tmp_path / "m.msgpack"
    rf.save_msgpack(model, good)
    cut = tmp_path / "cut.msgpack"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        rf.load_msgpack(cut)
    foreign = tmp_path / "foreign.msgpack"
    from flax import serialization

    foreign.write_bytes(serialization.msgpack_serialize({"params": {"w": np.ones(3)}}))
    with pytest.raises(CheckpointError, match="not a resnext-three-ways-flax checkpoint"):
        rf.load_msgpack(foreign)
    with pytest.raises(CheckpointError, match="no such file"):
        rf.load_msgpack(tmp_path / "absent.msgpack")


def test_canonical_safetensors_round_trip_through_another_form(tmp_path):
    w = random_weights(TINY, "c", seed=12)
    model = rf.create_model(config=TINY, form="c")
    rf.import_weights(model, w)
    rf.save(model, tmp_path / "tiny.safetensors")
    as_a = rf.load(tmp_path / "tiny.safetensors", form="a")
    back = to_form(rf.export_weights(as_a), TINY, "a", "c")
    assert all(np.array_equal(back[k], w[k]) for k in w)


@pytest.mark.parametrize("form", ["a", "b", "c"])
def test_norm_builds_every_normalisation_layer(form):
    """The Flax examples' `norm`: every BN of every form comes from it, with the model's dtypes."""
    from functools import partial

    norm = partial(rf.model.Norm, epsilon=1e-3)
    model = rf.create_model(config=TINY, form=form, norm=norm)
    bns = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
    expected = [n for n in canonical_shapes(TINY, form) if n.endswith(".running_var")]
    assert len(bns) == len(expected) and all(m.epsilon == 1e-3 for m in bns)


def test_conv_kernels_start_as_torchvision_draws_them_seeded_by_rngs():
    """He-normal with fan-out, as torch's kaiming_normal_(mode="fan_out") draws it (torch itself is
    the reference here), for a plain, a grouped and a strided conv; the same Rngs give the same
    kernels, another seed other kernels."""
    config = get_config("resnext50_32x4d")
    model = rf.create_model(config=config, rngs=nnx.Rngs(3))
    again = rf.create_model(config=config, rngs=nnx.Rngs(3))
    other = rf.create_model(config=config, rngs=nnx.Rngs(4))
    for path in ("layer1.0.conv1", "layer3.0.conv2", "layer4.2.conv3"):
        kernel = np.asarray(submodule(model, path).kernel[...])
        ours = kernel.std()
        torch_weight = torch.empty(kernel.transpose(3, 2, 0, 1).shape)
        torch.nn.init.kaiming_normal_(torch_weight, mode="fan_out", nonlinearity="relu")
        assert abs(ours / torch_weight.std().item() - 1) < 0.05, (path, ours, torch_weight.std().item())
        assert abs(kernel.mean()) < 0.05 * ours
        np.testing.assert_array_equal(kernel, np.asarray(submodule(again, path).kernel[...]))
        assert not np.array_equal(kernel, np.asarray(submodule(other, path).kernel[...]))
