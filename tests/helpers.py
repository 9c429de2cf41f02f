"""Facts the tests compare against, and small shared builders.

PARAM_COUNTS: torchvision's published parameter counts (its model docs) for
its models and the counts of the paper's CIFAR models. It is independent of the
code under test.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import types

import numpy as np

from resnext_spec import ArchConfig, get_config

PARAM_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x4d": 44_177_704,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "resnext29_8x64d": 34_426_698,
    "resnext29_16x64d": 68_155_210,
    "resnext26_2x64d": 25_103_690,
    "resnext26_4x32d": 18_836_810,
    "resnext26_8x16d": 15_703_370,
    "resnext26_16x8d": 14_136_650,
    "resnext26_32x4d": 13_353_290,
}

# The paper's Table 2 (ResNeXt-50 at ResNet-50's complexity): its presets have no published
# count; tests/test_counts.py holds them to the paper's ~70k parameters per conv2-stage block
# and to a count written out by hand.
TABLE2_PRESETS = ("resnext50_2x40d", "resnext50_4x24d", "resnext50_8x14d")


def resnext50_params_by_hand(c: int, d: int) -> int:
    """Every tensor of an ImageNet ResNeXt-50 (C x d, stride on the 3x3), written out: conv weights,
    BN weight + bias, the projection shortcut of each stage's first block, the 1000-way head."""
    total = 3 * 64 * 7 * 7 + 2 * 64  # stem conv + BN
    in_ch = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        width, out = c * d * 2**stage, 256 * 2**stage
        for i in range(blocks):
            total += in_ch * width + 2 * width  # conv1 1x1 + bn1
            total += 9 * width * width // c + 2 * width  # grouped 3x3 + bn2
            total += width * out + 2 * out  # conv3 1x1 + bn3
            if i == 0:
                total += in_ch * out + 2 * out  # projection conv + BN
            in_ch = out
    return total + 2048 * 1000 + 1000


# Keras and Flax build explicit paths one layer object at a time: form (a)/(b) builds are checked
# up to resnext50_32x4d's 512 paths. The ResNeXt-101s repeat the same block code 1,056-2,112
# times and took 57-132 s (Keras) and up to 55 s (Flax) to build on CI's 2 cores; their (a)/(b)
# layouts and counts are checked on torch's meta device (test_torch_structure) and by the spec.
MAX_BUILT_PATHS = 512


# The fast tier's share of the every-preset layout tests: a ResNet, a ResNeXt in all three forms and
# the ImageNet ResNeXt-50 in form (c); the rest (minutes of layer building) are the full tier's.
FAST_LAYOUTS = {("resnet18", "c"), ("resnext50_32x4d", "c")} | {("resnext26_8x16d", f) for f in "abc"}


def layout_cases(explicit_path_marks: tuple = ()) -> list:
    """(preset, form) params for the every-preset layout tests of Keras and Flax, each marked with its
    tier; forms (a)/(b) also carry ``explicit_path_marks``."""

    def paths(name: str) -> int:
        config = get_config(name)
        return sum(config.layers) * config.cardinality if config.block == "bottleneck" else 0

    import pytest

    out = []
    for n in PARAM_COUNTS:
        for f in "abc":
            if f == "c" or 0 < paths(n) <= MAX_BUILT_PATHS:
                marks = [] if (n, f) in FAST_LAYOUTS else [pytest.mark.slow]
                out.append(pytest.param(n, f, marks=[*marks, *(explicit_path_marks if f != "c" else ())]))
    return out


# Tiny configs: every structural feature (projection shortcut, stride 2, grouped
# conv, both stems, both stride placements) in a network that runs in milliseconds.
TINY = ArchConfig(layers=(1, 2), cardinality=4, base_width=4, stem="cifar", num_classes=5)
TINY_1X1 = ArchConfig(
    layers=(1, 1), cardinality=2, base_width=8, stem="imagenet", stride_on="1x1", num_classes=7, stem_width=16
)
TINY_BASIC = ArchConfig(block="basic", layers=(1, 1), stem="cifar", num_classes=3)


def batch(config: ArchConfig, n: int = 4, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded NCHW float32 batch and integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, config.in_channels, size, size)).astype(np.float32)
    return x, rng.integers(0, config.num_classes, n)


def broken_weights(config: ArchConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """Weights of TINY-like ``config`` with one missing, one unexpected and one transposed tensor.

    Returns them with the phrases a strict import's error must contain, so each
    framework's test proves its import lists every problem, not just the first.
    """
    from resnext_spec import random_weights

    w = random_weights(config, "c", seed=1)
    del w["layer2.1.bn3.running_mean"]
    w["layer2.1.extra.weight"] = np.ones(3, np.float32)
    w["layer1.0.conv2.weight"] = w["layer1.0.conv2.weight"].transpose(1, 0, 2, 3)
    phrases = [
        "missing: layer2.1.bn3.running_mean",
        "unexpected: layer2.1.extra.weight",
        "shape mismatch layer1.0.conv2.weight",
    ]
    return w, phrases


def assert_round_trip_is_bitwise(lib, config: ArchConfig, form: str, seed: int) -> dict[str, np.ndarray]:
    """``lib`` is a framework package (resnext_torch, _keras, _flax: the same four calls): seeded
    weights imported then exported come back bit for bit, float32, in canonical order, and
    import back unchanged."""
    from resnext_spec import random_weights

    w = random_weights(config, form, seed=seed)
    model = lib.create_model(config=config, form=form)
    lib.import_weights(model, w)
    out = lib.export_weights(model)
    assert list(out) == list(w)
    assert all(out[k].dtype == np.float32 and np.array_equal(out[k], w[k]) for k in w)
    lib.import_weights(model, out)  # and what it exports imports back to the same numbers
    assert all(np.array_equal(v, out[k]) for k, v in lib.export_weights(model).items())
    return out


def assert_broken_import_is_refused_whole(lib) -> None:
    """A strict import of ``broken_weights`` names every problem and leaves the model as it was."""
    from resnext_spec import WeightsMismatchError

    model = lib.create_model(config=TINY, form="c")
    before = lib.export_weights(model)
    w, phrases = broken_weights(TINY)
    try:
        lib.import_weights(model, w)
    except WeightsMismatchError as e:
        assert all(p in str(e) for p in phrases), str(e)
    else:
        raise AssertionError("a broken dict was imported")
    after = lib.export_weights(model)
    assert all(np.array_equal(after[k], before[k]) for k in before)


def import_timm():
    """timm, or a skip. timm imports torchvision at import time (FrozenBatchNorm2d, data
    transforms), but its ResNet never calls it; torchvision has no CPU wheel for this
    torch (PyPI's links CUDA libraries and fails to import). Where torchvision is absent,
    its modules are stood in for, while timm is imported, by names that raise if anything
    calls them, so what runs is timm's own ResNet code; where it is installed, it is used."""
    import importlib.util
    import sys

    import pytest

    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed")
    if "timm" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        import timm

        return timm
    finder = _AbsentTorchvision()
    sys.meta_path.insert(0, finder)
    try:
        import timm
    finally:  # gone once timm is in: other libraries (transformers) ask whether torchvision exists
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return timm


class _Absent(type):
    """A stand-in class: any attribute is another stand-in; calling one raises."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(name, (), {})

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"torchvision is not installed here: {cls.__name__} was called")


def _absent_attr(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Absent(name, (), {})


class _AbsentTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds every ``torchvision.*`` module as an empty package of stand-ins."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _absent_attr
        return module

    def exec_module(self, module):
        pass


def randomise_keras_bn(layers, seed: int) -> None:
    """Every BatchNorm's four tensors of ``layers`` (a Keras model's) drawn away from 0 and 1, and
    every conv bias away from 0, seeded and in layer order: what ``resnext_torch.randomise_batchnorm``
    does for torch models, so a port that drops, swaps or mis-folds any of them cannot match."""
    import keras

    rng = np.random.default_rng(seed)
    ranges = [(0.5, 1.5), (-0.5, 0.5), (-0.5, 0.5), (0.5, 1.5)]  # gamma, beta, mean, variance
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(lo, hi, w.shape)
                    for w, (lo, hi) in zip(layer.get_weights(), ranges, strict=True)
                ]
            )
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-0.5, 0.5, bias.shape)])


# The count formulas written out from the layer arithmetic (k*k*C_in*C_out/groups per conv), as
# resnext_spec.counting held them before it read its counts off the layers: the oracle for them.
def _conv_params(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    return k * k * (c_in // groups) * c_out


def params_by_formula(config: ArchConfig) -> int:
    """Trainable parameters of a classic config (7x7 or CIFAR stem, conv shortcuts), by formula."""
    from resnext_spec import plan

    p = plan(config)
    k = 7 if config.stem == "imagenet" else 3
    total = _conv_params(config.in_channels, config.stem_width, k) + 2 * config.stem_width
    for b in p.blocks:
        if b.block == "basic":
            total += _conv_params(b.in_channels, b.width, 3) + 2 * b.width
            total += _conv_params(b.width, b.width, 3) + 2 * b.width
        else:
            total += _conv_params(b.in_channels, b.width, 1) + 2 * b.width
            total += _conv_params(b.width, b.width, 3, b.cardinality) + 2 * b.width
            total += _conv_params(b.width, b.out_channels, 1) + 2 * b.out_channels
        if b.projection:
            total += _conv_params(b.in_channels, b.out_channels, 1) + 2 * b.out_channels
    return total + p.head.in_features * p.head.num_classes + p.head.num_classes


def flops_by_formula(config: ArchConfig, image_size: int | None = None) -> int:
    """Multiply-adds of a classic config's forward pass, by formula (the paper's convention)."""
    from resnext_spec import plan
    from resnext_spec.layout import conv_output_size

    p = plan(config)
    imagenet = config.stem == "imagenet"
    size = image_size or (224 if imagenet else 32)
    k, stride, pad = (7, 2, 3) if imagenet else (3, 1, 1)
    size = conv_output_size(size, k, stride, pad)
    macs = size * size * _conv_params(config.in_channels, config.stem_width, k)
    if imagenet:
        size = conv_output_size(size, 3, 2, 1)
    for b in p.blocks:
        if b.block == "basic":
            h1 = conv_output_size(size, 3, b.conv1_stride, 1)
            h2 = conv_output_size(h1, 3, b.conv2_stride, 1)
            macs += h1 * h1 * _conv_params(b.in_channels, b.width, 3)
            macs += h2 * h2 * _conv_params(b.width, b.width, 3)
        else:
            h1 = conv_output_size(size, 1, b.conv1_stride, 0)
            h2 = conv_output_size(h1, 3, b.conv2_stride, 1)
            macs += h1 * h1 * _conv_params(b.in_channels, b.width, 1)
            macs += h2 * h2 * _conv_params(b.width, b.width, 3, b.cardinality)
            macs += h2 * h2 * _conv_params(b.width, b.out_channels, 1)
        if b.projection:
            macs += h2 * h2 * _conv_params(b.in_channels, b.out_channels, 1)
        size = h2
    return macs + p.head.in_features * p.head.num_classes
