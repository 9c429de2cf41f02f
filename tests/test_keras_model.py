"""resnext_keras: every preset's counts and canonical layout, its files, compile() and fit().

Runs on whichever Keras backend the process has (the Makefile runs it on
TensorFlow, then again on JAX).
"""

import keras
import numpy as np
import pytest
from helpers import (
    PARAM_COUNTS,
    TINY,
    TINY_1X1,
    batch,
    layout_cases,
)

import resnext_keras as rk
from parity.keras_runner import KerasRunner
from resnext_spec import WeightsMismatchError, canonical_shapes, get_config, layers, random_weights
from resnext_spec.tolerances import rel_error

pytestmark = pytest.mark.keras

# Layer creation is the same code on every backend, so the explicit-path builds are checked on
# the first backend only; form (c) on both.
CASES = layout_cases(explicit_path_marks=(pytest.mark.first_backend_only,))


@pytest.mark.parametrize("name, form", CASES)
def test_every_preset_has_published_count_and_canonical_layout(name, form):
    model = rk.create_model(name, form=form)
    assert rk.count_params(model) == PARAM_COUNTS[name]
    exported = {k: v.shape for k, v in rk.export_weights(model).items()}
    expected = canonical_shapes(get_config(name), form)
    assert list(exported) == list(expected)
    assert exported == expected
    keras.backend.clear_session()  # builds of thousands of layers otherwise pile up


def test_layer_names_are_the_canonical_module_names_with_underscores():
    model = rk.create_model(config=TINY, form="a")
    names = {layer.name for layer in model.layers}
    assert {"conv1", "bn1", "layer1_0_paths_3_conv2", "layer2_0_downsample_0", "layer2_1_bn3", "fc"} <= names
    assert not any("." in n for n in names)  # torch refuses "." in the parameter keys of its backend
    assert model.get_layer(rk.layer_name("layer1.0.paths.3.conv2")).kernel.shape == (3, 3, 4, 4)


def test_form_c_uses_one_grouped_conv_per_block():
    model = rk.create_model(config=TINY, form="c")
    conv2 = model.get_layer("layer1_0_conv2")
    assert conv2.groups == TINY.cardinality and conv2.padding == "valid"


def test_form_mismatch_gets_a_hint():
    model = rk.create_model(config=TINY, form="a")
    with pytest.raises(WeightsMismatchError, match="look like form \\(c\\)"):
        rk.import_weights(model, random_weights(TINY, "c"))


def test_keras_weights_h5_round_trip(tmp_path):
    model = rk.create_model(config=TINY, form="b")
    rk.import_weights(model, random_weights(TINY, "b", seed=3))
    path = tmp_path / "tiny.weights.h5"
    rk.save_weights_atomic(model, path)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.weights.h5"]  # no temp file left behind
    other = rk.create_model(config=TINY, form="b")
    other.load_weights(path)
    a, b = rk.export_weights(model), rk.export_weights(other)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_keras_model_file_round_trip(tmp_path):
    model = rk.create_model(config=TINY_1X1, form="a")
    rk.import_weights(model, random_weights(TINY_1X1, "a", seed=4))
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, rk.ResNet) and loaded.form == "a" and loaded.config == TINY_1X1
    a, b = rk.export_weights(model), rk.export_weights(loaded)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    x, _ = batch(TINY_1X1, size=32)
    nhwc = x.transpose(0, 2, 3, 1)
    assert np.array_equal(
        keras.ops.convert_to_numpy(model(nhwc, training=False)),
        keras.ops.convert_to_numpy(loaded(nhwc, training=False)),
    )


def test_dtype_reaches_every_layer_without_touching_the_global_policy():
    before = keras.config.dtype_policy().name
    model = rk.create_model(config=TINY, form="b", dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before  # keras-hub's way: dtype= on each layer
    policies = {layer.dtype_policy.name for layer in model.layers if layer.name != "images"}
    assert policies == {"mixed_bfloat16"}
    assert {v.dtype for v in model.weights} == {"float32"}  # mixed: float32 variables


@pytest.mark.keras_smoke
def test_a_model_compiled_with_torch_sgd_saves_and_loads_with_its_optimizer_state(tmp_path):
    """The `.keras` file holds TorchSGD itself (registered as serializable) and its momentum
    buffers: the loaded model's next step is the step the original would have taken."""
    model = rk.create_model(config=TINY, form="c")
    rk.import_weights(model, random_weights(TINY, "c", seed=5))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=rk.TorchSGD(0.1, momentum=0.9, coupled_weight_decay=1e-4), loss=loss)
    x, y = batch(TINY, size=16)
    nhwc = x.transpose(0, 2, 3, 1)
    model.train_on_batch(nhwc, y)  # momentum buffers now hold the first gradient
    model.save(tmp_path / "tiny.keras")
    loaded = keras.models.load_model(tmp_path / "tiny.keras")
    assert isinstance(loaded.optimizer, rk.TorchSGD)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    before = [np.asarray(v.numpy()) for v in model.optimizer.variables]
    after = [np.asarray(v.numpy()) for v in loaded.optimizer.variables]
    assert len(before) == len(after) > 2 and all(
        np.array_equal(a, b) for a, b in zip(before, after, strict=True)
    )
    assert any(np.abs(b).max() > 0 for b in before[2:])  # a buffer the step filled, not zeros
    model.train_on_batch(nhwc, y)
    loaded.train_on_batch(nhwc, y)
    a, b = rk.export_weights(model), rk.export_weights(loaded)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def fit_step_error(dtype: str, w: dict, x: np.ndarray, y: np.ndarray) -> float:
    """How far ``fit``'s first step lands from torch SGD's formula on the eager runner's gradients,
    relative to the step (worst tensor).

    keras.optimizers.SGD decays weights decoupled, torch.optim.SGD through the gradient;
    from zero momentum the first step is the same update, w - lr * (g + wd * w).
    """
    runner = KerasRunner(dtype=dtype)
    probe = runner.build(TINY, "c")
    runner.load(probe, w)
    grads = runner.forward_backward(probe, x, y, train=True).grads
    model = runner.build(TINY, "c")
    runner.load(model, w)
    sgd = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
    model.compile(optimizer=sgd, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(
        x.transpose(0, 2, 3, 1).astype(dtype), y, batch_size=8, epochs=1, shuffle=False, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    fitted = runner.state(model)
    assert max(rel_error(fitted[k], w[k]) for k in grads) > 1e-3  # the step moved the weights
    lr = float(keras.ops.convert_to_numpy(sgd.learning_rate))  # Keras keeps it in float32: 0.1 + 1.5e-9
    step = {k: -lr * (g + 1e-4 * w[k]) for k, g in grads.items()}
    return max(rel_error(fitted[k] - w[k], step[k]) for k in step)


def test_compile_and_fit_take_torch_sgd_first_step():
    """fit() takes torch SGD's first step, judged on Keras's own gradients.

    fit's compiled step and the eager runner reduce in different orders, and train-mode
    gradients amplify that rounding unevenly: in fp32 the weights landed 1.25e-4 from the
    formula on an AMD EPYC with AVX-512 (TensorFlow), under 1e-6 on AVX2. That is the noise
    of this comparison, not a fault, so where Keras computes float64 (TensorFlow) the same
    comparison in float64 judges the step. There fit still keeps scalars in float32 (its
    learning rate, its loss reduction): each tensor's step was 2.1e-8 to 6.4e-8 (about one
    float32 unit, 2**-24) from the formula, so the bound is four units: a learning rate or
    momentum off by a part in a million already fails it. On JAX and torch only a coarse
    fp32 check remains.
    """
    w = random_weights(TINY, "c", seed=8)
    x, y = batch(TINY, n=8, size=16, seed=2)
    noise32 = fit_step_error("float32", w, x, y)
    if keras.backend.backend() != "tensorflow":
        # No float64 here (Keras's type promotion). fp32 only tells the step apart from a wrong one:
        # measured 1.9e-4 (JAX) and 2.0e-4 (torch) on AVX-512, while a wrong learning rate or a
        # Nesterov step is off by 0.9.
        assert noise32 <= 1e-2, noise32
        return
    assert fit_step_error("float64", w, x, y) <= 2.0**-22


@pytest.mark.parametrize("form", ["a", "b", "c"])
def test_norm_builds_every_normalisation_layer(form):
    """Keras's norm hook (torch's ``norm_layer``, Flax's ``norm``) makes every norm of the network,
    named and sized as the spec's norm layers, and the model computes with what it made."""
    made = {}

    def norm(name, channels, dtype):
        made[name] = channels
        return rk.model.BatchNorm(epsilon=1e-3, momentum=0.9, dtype=dtype, name=rk.layer_name(name))

    model = rk.create_model(config=TINY, form=form, norm=norm)
    want = {layer.name: layer.shape[0] for layer in layers(TINY, form) if layer.kind == "bn"}
    assert made == want
    assert all(model.get_layer(rk.layer_name(n)).epsilon == 1e-3 for n in want)
