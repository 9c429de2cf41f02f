"""The fast grouped-conv lowerings compute torch's grouped conv: values and both gradients.

The truth is ``torch.nn.functional.conv2d(groups=C)`` — another framework's kernel,
independent of the code under test — in float32 (bound 1e-5, relative to the
largest value) and float64 (bound 1e-12). Cases cover odd and non-square sizes,
strides 1 and 2, and every cardinality the presets use.
"""

import contextlib

import numpy as np
import pytest
import torch
from helpers import TINY

from resnext_spec import get_config, list_presets, random_weights
from resnext_spec.errors import ResNeXtError
from resnext_spec.grouped import CONV_IMPLS, resolve_conv_impl
from resnext_spec.tolerances import rel_error

PRESET_CARDINALITIES = sorted({get_config(n).cardinality for n in list_presets()} - {1})
# (cardinality, channels per group, height, width, stride): odd, non-square, both strides.
CASES = [(c, 2, 7, 5, s) for c in PRESET_CARDINALITIES for s in (1, 2)] + [
    (4, 8, 9, 6, 2),
    (2, 16, 4, 4, 1),
    (32, 4, 1, 3, 2),
]
# Taps beyond the presets' cardinalities: 4 channels a group (what auto takes), 8 and 3.
TAPS_CASES = [(32, 4, 6, 7, 1), (8, 8, 7, 5, 2), (4, 3, 5, 5, 2)]
BOUND = {np.float32: 1e-5, np.float64: 1e-12}
# A batch of 5 whose patches budget holds 2 images: 3 chunks of 2, the last one padded.
CHUNKED = dict(groups=4, gi=8, h=9, w=6, batch=5)


def two_image_budget(groups: int, gi: int, h: int, w: int, stride: int, dtype) -> int:
    """Bytes of patches of two images: the budget that cuts a batch into chunks of 2."""
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    return 2 * ho * wo * 9 * groups * gi * np.dtype(dtype).itemsize


def test_patches_chunks_cover_the_batch_in_equal_chunks_within_the_budget():
    from resnext_spec.grouped import patches_chunks

    # One image's patches: 4x3 output pixels (stride 2, padding 1) x 3x3 taps x 8 channels x 4 bytes.
    one = 4 * 3 * 9 * 8 * 4
    assert patches_chunks((16, 7, 5, 8), 3, 2, 1, 4, budget=16 * one) == (1, 16)  # all fits: one chunk
    assert patches_chunks((5, 7, 5, 8), 3, 2, 1, 4, budget=2 * one + 1) == (3, 2)  # 2 per chunk, 6 >= 5
    assert patches_chunks((5, 7, 5, 8), 3, 2, 1, 8, budget=2 * one + 1) == (5, 1)  # float64: twice the bytes
    # resnext29_8x64d's first stage at batch 128: 32x32 pixels x 9 x 512 channels = 18 MiB an image.
    assert patches_chunks((128, 32, 32, 512), 3, 1, 1, 4) == (19, 7)  # 7 fit in 128 MiB; 19 * 7 = 133
    assert patches_chunks((3, 7, 5, 8), 3, 2, 1, 4, budget=1) == (3, 1)  # never less than one image


def torch_truth(x_nhwc: np.ndarray, w_hwio: np.ndarray, dy_nhwc: np.ndarray, groups: int, stride: int):
    """y, dL/dx, dL/dw for L = sum(y * dy), from torch's own grouped conv, in the NHWC/HWIO layout."""
    x = torch.tensor(x_nhwc.transpose(0, 3, 1, 2), requires_grad=True)
    w = torch.tensor(w_hwio.transpose(3, 2, 0, 1), requires_grad=True)
    y = torch.nn.functional.conv2d(x, w, stride=stride, padding=1, groups=groups)
    (y * torch.tensor(dy_nhwc.transpose(0, 3, 1, 2))).sum().backward()
    return (
        y.detach().numpy().transpose(0, 2, 3, 1),
        x.grad.numpy().transpose(0, 2, 3, 1),
        w.grad.numpy().transpose(2, 3, 1, 0),
    )


def case_arrays(groups: int, gi: int, h: int, w: int, stride: int, dtype, batch: int = 2):
    rng = np.random.default_rng(groups * 100 + gi + h + stride)
    c = groups * gi
    x = rng.standard_normal((batch, h, w, c)).astype(dtype)
    k = rng.standard_normal((3, 3, gi, c)).astype(dtype)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    dy = rng.standard_normal((batch, ho, wo, c)).astype(dtype)
    return x, k, dy


def assert_matches(got, truth, dtype, what):
    for name, g, t in zip(("output", "input gradient", "kernel gradient"), got, truth, strict=True):
        assert np.asarray(g).shape == t.shape, f"{what}: {name} shape"
        err = rel_error(np.asarray(g, np.float64), t.astype(np.float64))
        assert err <= BOUND[dtype], f"{what}: {name} off by {err:.1e} (bound {BOUND[dtype]:.0e})"


@pytest.mark.keras
@pytest.mark.keras_smoke
def test_keras_compiled_train_step_is_the_same_with_each_lowering(monkeypatch):
    """A compiled train step (on TensorFlow outside XLA) takes the same step with patches whole, in
    rematerialised chunks, with the native conv (on TensorFlow with its own gradients, and with
    the written ones it takes where it has none) and split."""
    import functools

    import keras

    import resnext_keras as rk
    from resnext_keras import grouped_conv

    w = random_weights(TINY, "c", seed=5)
    x = np.random.default_rng(0).standard_normal((5, 16, 16, 3)).astype(np.float32)
    y = np.arange(5, dtype=np.int32) % TINY.num_classes
    stepped = []
    lowerings = (
        ("patches", None),
        ("patches", 1),  # a 1-byte budget: an image a chunk
        ("native", None),
        ("split", None),
        ("native", "written"),  # TensorFlow's gradients written as grouped forward convs (no oneDNN)
    )
    for impl, budget in lowerings:
        if budget == "written":
            monkeypatch.setitem(grouped_conv._GROUPED_GRADIENTS, "float32", False)
        elif budget:
            chunked = functools.partial(grouped_conv.patches_conv, budget=budget)
            monkeypatch.setattr(grouped_conv, "patches_conv", chunked)
        model = rk.create_model(config=TINY, conv_impl=impl)
        rk.import_weights(model, w)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True)
        )
        model.train_on_batch(x, y)
        # XLA compiles the step on JAX; TensorFlow keeps the patches out of it (supports_jit=False);
        # the torch backend runs eagerly unless asked.
        assert model.jit_compile is (keras.backend.backend() == "jax")
        stepped.append(rk.export_weights(model))
    for other in stepped[1:]:
        moved = {n: rel_error(other[n], stepped[0][n]) for n in w if "conv2" in n}
        assert max(moved.values()) < 1e-5, moved
    assert all(not np.allclose(stepped[0][n], w[n]) for n in moved)  # the grouped kernels did move


def test_auto_is_taps_or_split_for_xla_on_cpu_and_native_elsewhere():
    assert resolve_conv_impl("auto", 32, "xla", "cpu") == "split"
    # Narrow groups take taps on CPU, wider ones split, GPUs the native conv.
    assert resolve_conv_impl("auto", 32, "xla", "cpu", taps_channels=4) == "taps"
    assert resolve_conv_impl("auto", 32, "xla", "cpu", taps_channels=8) == "split"
    assert resolve_conv_impl("auto", 32, "xla", "cpu", taps_channels=16) == "split"
    assert resolve_conv_impl("auto", 32, "xla", "gpu", taps_channels=4) == "native"
    assert resolve_conv_impl("patches", 32, "xla", "cpu", taps_channels=4) == "patches"
    # float64 on XLA:CPU: every conv a matmul, dense ones too; elsewhere float64 changes nothing.
    assert resolve_conv_impl("auto", 32, "xla", "cpu", taps_channels=4, float64=True) == "patches"
    assert resolve_conv_impl("auto", 1, "xla", "cpu", float64=True) == "patches"
    assert resolve_conv_impl("auto", 1, "xla", "cpu") == "native"
    assert resolve_conv_impl("native", 1, "xla", "cpu", float64=True) == "native"
    assert resolve_conv_impl("auto", 1, "xla", "gpu", float64=True) == "native"
    assert resolve_conv_impl("auto", 32, "tensorflow", "cpu", float64=True) == "native"
    assert resolve_conv_impl("auto", 32, "xla", "gpu") == "native"
    assert resolve_conv_impl("auto", 32, "tensorflow", "cpu") == "native"  # oneDNN, gradients as convs
    assert resolve_conv_impl("auto", 32, "tensorflow", "gpu") == "native"
    assert resolve_conv_impl("auto", 32, "torch", "cpu") == "native"  # Keras on torch: torch's own kernel
    assert resolve_conv_impl("patches", 1, "xla", "cpu") == "native"  # nothing to lower without groups
    with pytest.raises(ResNeXtError, match="unknown conv_impl 'fast'"):
        resolve_conv_impl("fast", 4)


class TestFlax:
    @pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)])
    @pytest.mark.parametrize(
        "lowering, groups, gi, h, w, stride",
        [(name, *case) for name in ("patches", "split", "taps") for case in CASES]
        + [("taps", *case) for case in TAPS_CASES],
    )
    def test_lowering_equals_torch_grouped_conv(self, lowering, groups, gi, h, w, stride, dtype):
        import jax

        from resnext_flax import grouped_conv

        conv = getattr(grouped_conv, f"{lowering}_conv")
        x, k, dy = case_arrays(groups, gi, h, w, stride, dtype)
        truth = torch_truth(x, k, dy, groups, stride)
        with jax.enable_x64(dtype == np.float64):
            y, vjp = jax.vjp(lambda a, b: conv(a, b, groups, stride, 1), x, k)
            dx, dk = vjp(jax.numpy.asarray(dy))
            assert y.dtype == dx.dtype == dk.dtype == dtype
            assert_matches((y, dx, dk), truth, dtype, f"flax {lowering} C={groups} gi={gi} stride {stride}")
            y_plain = np.asarray(conv(x, k, groups, stride, 1))  # taps: its own forward only here
        assert rel_error(y_plain.astype(np.float64), truth[0].astype(np.float64)) <= BOUND[dtype]

    @pytest.mark.parametrize("stride", [1, 2])
    def test_taps_on_a_batch_of_one_and_many_pixels_equal_torch_grouped_conv(self, stride):
        """A batch of one, and 2 x 40 x 37 pixels, in taps' forward and in the pass differentiated."""
        import jax

        from resnext_jax import taps_conv

        for batch, h, w in ((1, 7, 6), (2, 40, 37)):
            x, k, dy = case_arrays(32, 4, h, w, stride, np.float32, batch)
            truth = torch_truth(x, k, dy, 32, stride)
            y, vjp = jax.vjp(lambda a, b: taps_conv(a, b, 32, stride, 1), x, k)
            assert_matches((y, *vjp(jax.numpy.asarray(dy))), truth, np.float32, f"taps batch {batch}")
            y_plain = np.asarray(taps_conv(x, k, 32, stride, 1), np.float64)
            assert rel_error(y_plain, truth[0].astype(np.float64)) <= BOUND[np.float32]

    def test_auto_takes_taps_for_narrow_groups_only(self):
        import resnext_flax as rf

        model = rf.create_model("resnext50_32x4d")  # 4, 8, 16 and 32 channels a group by stage
        lowerings = [model.layer1[0].conv2.conv_impl, model.layer2[0].conv2.conv_impl]
        lowerings += [model.layer3[0].conv2.conv_impl, model.layer4[0].conv2.conv_impl]
        assert lowerings == ["taps", "split", "split", "split"]

    def test_float64_computes_every_conv_as_patches_and_the_same_function(self):
        """XLA:CPU has no float64 conv kernel: auto computes every conv as a matmul there,
        and the model is the same function as with the native convs, to float64 precision."""
        import jax
        import jax.numpy as jnp

        import resnext_flax as rf

        w = random_weights(TINY, "c", seed=3)
        x = np.random.default_rng(0).standard_normal((2, 12, 12, 3))
        outs = []
        with jax.enable_x64(True):
            for conv_impl in ("auto", "native"):
                model = rf.create_model(
                    config=TINY, conv_impl=conv_impl, dtype=jnp.float64, param_dtype=jnp.float64
                )
                rf.import_weights(model, w)
                model.eval()
                outs.append(np.asarray(model(jnp.asarray(x))))
                if conv_impl == "auto":
                    assert model.conv1.conv_impl == model.layer1[0].conv1.conv_impl == "patches"
                    assert model.layer1[0].conv2.conv_impl == "patches"
        assert outs[0].dtype == np.float64
        assert rel_error(outs[0], outs[1]) < 1e-12

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("stride", [1, 2])
    def test_patches_in_chunks_of_the_batch_equal_torch_grouped_conv(self, stride, dtype):
        import jax

        from resnext_jax import patches_conv

        groups, gi, h, w, batch = CHUNKED.values()
        x, k, dy = case_arrays(groups, gi, h, w, stride, dtype, batch)
        truth = torch_truth(x, k, dy, groups, stride)
        budget = two_image_budget(groups, gi, h, w, stride, dtype)
        with jax.enable_x64(dtype == np.float64):
            y, vjp = jax.vjp(lambda a, b: patches_conv(a, b, groups, stride, 1, budget), x, k)
            assert_matches((y, *vjp(jax.numpy.asarray(dy))), truth, dtype, f"flax chunked stride {stride}")

    @pytest.mark.parametrize("impl", CONV_IMPLS)
    def test_model_output_does_not_depend_on_the_lowering(self, impl):
        import jax.numpy as jnp

        import resnext_flax as rf

        w = random_weights(TINY, "c", seed=3)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 12, 12, 3)), jnp.float32)
        outs = []
        for conv_impl in ("native", impl):
            model = rf.create_model(config=TINY, conv_impl=conv_impl)
            rf.import_weights(model, w)
            model.eval()
            outs.append(np.asarray(model(x)))
        assert rel_error(outs[1], outs[0]) < 1e-5

    def test_unknown_lowering_is_refused(self):
        import resnext_flax as rf

        with pytest.raises(ResNeXtError, match="unknown conv_impl"):
            rf.create_model(config=TINY, conv_impl="im2col")


@pytest.mark.keras
class TestKeras:
    @pytest.mark.parametrize("impl", ["native", "patches", "split"])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("groups, gi, h, w, stride", CASES)
    def test_layer_equals_torch_grouped_conv(self, groups, gi, h, w, stride, dtype, impl):
        import keras

        from resnext_keras.grouped_conv import GroupedConv2D

        x, k, dy = case_arrays(groups, gi, h, w, stride, dtype)
        truth = torch_truth(x, k, dy, groups, stride)
        with _x64(keras, dtype):
            layer = GroupedConv2D(
                groups * gi,
                3,
                strides=stride,
                groups=groups,
                use_bias=False,
                conv_impl=impl,
                dtype=np.dtype(dtype).name,
            )
            xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # the model pads before the 'valid' conv
            layer.build(xp.shape)
            layer.kernel.assign(k)
            y, dx, dk = _keras_value_and_grads(keras, layer, xp, dy)
        dx = dx[:, 1:-1, 1:-1, :]  # gradient w.r.t. the unpadded input
        assert_matches((y, dx, dk), truth, dtype, f"keras {impl} C={groups} stride {stride}")

    @pytest.mark.parametrize("groups, gi, h, w, stride", CASES)
    def test_tensorflow_written_gradients_equal_torch_grouped_conv(
        self, groups, gi, h, w, stride, monkeypatch
    ):
        """Where TensorFlow has no grouped gradient kernels (float64 always; float32 without oneDNN),
        native's gradients are written as grouped forward convs. float64 runs them in the test
        above; here float32 does, as TensorFlow without oneDNN would."""
        import keras

        from resnext_keras import grouped_conv

        if keras.backend.backend() != "tensorflow":
            pytest.skip("TensorFlow's lowering")
        import tensorflow as tf

        assert not grouped_conv.tf_has_grouped_gradients(tf.float64)  # oneDNN has no float64
        monkeypatch.setitem(grouped_conv._GROUPED_GRADIENTS, "float32", False)
        x, k, dy = case_arrays(groups, gi, h, w, stride, np.float32)
        truth = torch_truth(x, k, dy, groups, stride)
        layer = grouped_conv.GroupedConv2D(
            groups * gi, 3, strides=stride, groups=groups, use_bias=False, conv_impl="native"
        )
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        layer.build(xp.shape)
        layer.kernel.assign(k)
        y, dx, dk = _keras_value_and_grads(keras, layer, xp, dy)
        assert_matches(
            (y, dx[:, 1:-1, 1:-1, :], dk), truth, np.float32, f"written C={groups} stride {stride}"
        )

    @pytest.mark.parametrize("impl", ["native", "patches", "split"])
    @pytest.mark.parametrize("stride", [1, 2])
    def test_a_batch_of_one_equals_torch_grouped_conv(self, stride, impl):
        import keras

        from resnext_keras.grouped_conv import GroupedConv2D

        groups, gi, h, w = 8, 4, 7, 6
        x, k, dy = case_arrays(groups, gi, h, w, stride, np.float32, batch=1)
        truth = torch_truth(x, k, dy, groups, stride)
        layer = GroupedConv2D(groups * gi, 3, strides=stride, groups=groups, use_bias=False, conv_impl=impl)
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        layer.build(xp.shape)
        layer.kernel.assign(k)
        y, dx, dk = _keras_value_and_grads(keras, layer, xp, dy)
        assert_matches((y, dx[:, 1:-1, 1:-1, :], dk), truth, np.float32, f"keras {impl} batch 1")

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("stride", [1, 2])
    def test_patches_in_chunks_of_the_batch_equal_torch_grouped_conv(self, stride, dtype, monkeypatch):
        import functools

        import keras

        from resnext_keras import grouped_conv

        groups, gi, h, w, batch = CHUNKED.values()
        budget = two_image_budget(groups, gi, h, w, stride, dtype)
        monkeypatch.setattr(
            grouped_conv, "patches_conv", functools.partial(grouped_conv.patches_conv, budget=budget)
        )
        x, k, dy = case_arrays(groups, gi, h, w, stride, dtype, batch)
        truth = torch_truth(x, k, dy, groups, stride)
        with _x64(keras, dtype):
            layer = grouped_conv.GroupedConv2D(
                groups * gi,
                3,
                strides=stride,
                groups=groups,
                use_bias=False,
                conv_impl="patches",
                dtype=np.dtype(dtype).name,
            )
            xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            layer.build(xp.shape)
            layer.kernel.assign(k)
            y, dx, dk = _keras_value_and_grads(keras, layer, xp, dy)
        assert_matches((y, dx[:, 1:-1, 1:-1, :], dk), truth, dtype, f"keras chunked stride {stride}")

    @pytest.mark.keras_smoke
    @pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)])
    @pytest.mark.parametrize("groups, gi, h, w, stride", TAPS_CASES + [(32, 2, 7, 5, 2), (8, 16, 5, 4, 1)])
    def test_auto_on_jax_is_taps_for_narrow_groups_and_equals_torch_grouped_conv(
        self, groups, gi, h, w, stride, dtype
    ):
        """Keras on JAX (CPU): taps for groups of at most 4 channels, split above; both
        differentiate as split, and both equal torch in value and gradients."""
        import keras

        from resnext_keras.grouped_conv import GroupedConv2D

        if keras.backend.backend() != "jax":
            pytest.skip("taps is Keras-on-JAX's lowering (XLA:CPU)")
        x, k, dy = case_arrays(groups, gi, h, w, stride, dtype)
        truth = torch_truth(x, k, dy, groups, stride)
        with _x64(keras, dtype):
            layer = GroupedConv2D(
                groups * gi, 3, strides=stride, groups=groups, use_bias=False, dtype=np.dtype(dtype).name
            )
            xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            layer.build(xp.shape)
            assert layer.lowering == ("taps" if gi <= 4 else "split")
            layer.kernel.assign(k)
            y, dx, dk = _keras_value_and_grads(keras, layer, xp, dy)
            assert_matches((y, dx[:, 1:-1, 1:-1, :], dk), truth, dtype, f"keras auto C={groups} gi={gi}")
            y_eval = np.asarray(layer(xp))  # not differentiated: taps' own forward
        assert rel_error(y_eval.astype(np.float64), truth[0].astype(np.float64)) <= BOUND[dtype]

    def test_weights_file_loads_whatever_the_lowering(self, tmp_path):
        import resnext_keras as rk

        w = random_weights(TINY, "c", seed=4)
        native = rk.create_model(config=TINY, conv_impl="native")
        rk.import_weights(native, w)
        path = tmp_path / "tiny.weights.h5"
        native.save_weights(path)
        patches = rk.create_model(config=TINY, conv_impl="patches")
        patches.load_weights(path)
        import keras

        x = np.random.default_rng(1).standard_normal((2, 12, 12, 3)).astype(np.float32)
        got, want = (keras.ops.convert_to_numpy(m(x)) for m in (patches, native))
        assert rel_error(got, want) < 1e-5
        got = rk.export_weights(patches)
        assert all(np.array_equal(got[n], w[n]) for n in w)

    def test_lowering_survives_get_config(self):
        import resnext_keras as rk

        model = rk.create_model(config=TINY, conv_impl="patches")
        clone = rk.ResNet.from_config(model.get_config())
        assert clone.conv_impl == "patches"
        assert clone.get_layer("layer1_0_conv2").lowering == "patches"


def _x64(keras, dtype):
    """JAX computes float64 only inside ``enable_x64``; TensorFlow always can; Keras on torch cannot.

    Keras's type promotion maps float64 to float32 off TensorFlow
    (``keras.src.backend.common.dtypes``), so the patches' matmul on the torch backend
    runs in float32 (measured: 1.2e-7 off); there float64 is refused, as in the harness.
    """
    if keras.backend.backend() == "torch" and dtype == np.float64:
        pytest.skip("Keras on torch promotes float64 matmuls to float32")
    if keras.backend.backend() == "jax":
        import jax

        return jax.enable_x64(dtype == np.float64)
    return contextlib.nullcontext()


def _keras_value_and_grads(keras, layer, x, dy):
    """The layer's output and the gradients of sum(y * dy) w.r.t. its input and kernel, as numpy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            loss = tf.reduce_sum(y * dy)
        dx, dk = tape.gradient(loss, [xt, layer.kernel.value])
        return y.numpy(), dx.numpy(), dk.numpy()
    if backend == "jax":
        import jax

        def f(a, kernel):
            y, _ = layer.stateless_call([kernel], [], a)
            return y

        y, vjp = jax.vjp(f, jax.numpy.asarray(x), layer.kernel.value)
        dx, dk = vjp(jax.numpy.asarray(dy))
        return np.asarray(y), np.asarray(dx), np.asarray(dk)
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        y = layer(xt)
        dx, dk = torch.autograd.grad((y * torch.as_tensor(dy)).sum(), [xt, layer.kernel.value])
        return (t.detach().numpy() for t in (y, dx, dk))
    pytest.skip(f"no gradient code for the Keras backend {backend!r}")


@pytest.mark.slow  # every lowering equals torch layer by layer (TestKeras, TestFlax) in the fast tier
@pytest.mark.parametrize("impl", ["native", "patches", "split"])
def test_full_parity_holds_with_each_lowering(impl):
    """Every check of the harness, on a tiny grouped config, with the lowering forced."""
    from parity_runs import frameworks

    from parity import run_parity

    wanted = [fw for fw in frameworks() if fw in ("keras", "flax")]
    result = run_parity(["tiny"], configs={"tiny": TINY}, frameworks=wanted, forms=["c"], conv_impl=impl)
    failed = [(r.framework, r.check, r.tensor, r.error, r.bound) for r in result.results if not r.passed]
    assert result.results and not failed
