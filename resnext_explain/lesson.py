"""One block of a preset, taken apart: how form (c)'s weights split into the C paths of
(b) and (a), and one input pushed through all three forms, stage by stage.

The paper's argument (its figure 3), made numeric:
- the first 1x1 of (c), with C*d outputs, is C separate 1x1s of d outputs each: the
  rows of its weight, cut into C blocks;
- the grouped 3x3 of (c) is C separate 3x3s: group p sees only channels p*d..(p+1)*d
  and writes only those, so path p owns group p;
- (b) concatenates the C path outputs back into (c)'s tensor and applies (c)'s 1x1;
- (a) gives each path its own slice of that 1x1's input columns and sums the C
  results: a 1x1 over a concatenation is the sum of 1x1s over its parts. BN and the
  ReLU come after the sum, so (a) has one BN there, as (b) and (c) do.

Every layer is the framework's own (torch, Keras or Flax), called one at a time in
eval mode on NHWC numpy arrays; only the ReLU, the concatenation and the sum are
written here, in numpy, because they are what the lesson is about.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resnext_spec import ArchConfig, canonical_shapes, is_running_stat, random_weights, to_form
from resnext_spec.config import resolve_config
from resnext_spec.errors import ConfigError
from resnext_spec.frameworks import check_framework
from resnext_spec.layout import BlockSpec, body_layers, form_c_name, plan
from resnext_spec.tolerances import rel_error

AGREE = 1e-5  # float32 rounding of reordered sums sits near 1e-7; a wrong slice is O(1)


def find_block(config: ArchConfig, name: str) -> BlockSpec:
    """The block called ``name`` (``layer2.0``), or a ValueError listing the names there are."""
    blocks = {b.name: b for b in plan(config).blocks}
    if name not in blocks:
        names = list(blocks)
        shown = ", ".join(names[:8]) + (f", ... {names[-1]}" if len(names) > 8 else "")
        raise ConfigError(f"no block {name!r} in this model; its blocks are {shown}")
    b = blocks[name]
    if b.block == "basic":
        raise ConfigError(
            f"{name} is a basic block (two 3x3 convs): it has no paths, so forms (a), (b) and (c) "
            "are one and the same; pick a bottleneck preset such as resnext50_32x4d"
        )
    return b


ALIKE = {
    "first": "every later block of a stage is alike",
    "last": "every block between a stage's first and last is alike, and every last",
}


def stand_in(config: ArchConfig, b: BlockSpec) -> tuple[ArchConfig, str]:
    """A small config holding a block with ``b``'s exact shapes, and that block's name there.

    Stages before the block's keep one block each (the channels entering its stage are
    the same), and every block after a stage's first is alike (same channels, stride 1,
    no projection), so ``layer3.5`` is built as ``layer3.1``: seconds instead of a
    whole ResNeXt-101 in three forms. Where each stage strides in its last block
    (keras.applications' V2), a block that is not its stage's last keeps one after it, and the
    stages after the block's stay, one block each, so the block's stage strides where it does.
    """
    stage, index = (int(part) for part in b.name[len("layer") :].split("."))
    j = min(index, 1)
    if config.stride_at == "last":
        last = index == config.layers[stage - 1] - 1
        after = (1,) * (len(config.layers) - stage)
        mini = dataclasses.replace(config, layers=(1,) * (stage - 1) + (j + (1 if last else 2),) + after)
    else:
        mini = dataclasses.replace(config, layers=(1,) * (stage - 1) + (j + 1,))
    return mini, f"layer{stage}.{j}"


# --- the frameworks: build a form, call one layer or the whole block --------------------------------


class TorchBuild:
    def __init__(self, config: ArchConfig, form: str, weights: dict[str, np.ndarray]) -> None:
        import torch

        import resnext_torch as rt

        self.torch = torch
        self.model = rt.build(config, form, weights=weights).eval()
        self.exported = rt.export_weights(self.model)

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            y = self.model.get_submodule(name)(self.torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        return y.numpy().transpose(0, 2, 3, 1)

    part = __call__  # a part (shortcut, attention, pool) is one module too


class KerasBuild:
    def __init__(self, config: ArchConfig, form: str, weights: dict[str, np.ndarray]) -> None:
        import keras

        import resnext_keras as rk

        self.keras, self.rk = keras, rk
        self.model = rk.build(config, form, weights=weights)
        self.exported = rk.export_weights(self.model)
        self.names = {layer.name for layer in self.model.layers}

    def layer(self, name: str):
        return self.model.get_layer(self.rk.layer_name(name))

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        if name.count(".") == 1:  # a whole block: its part of the functional graph, as a model
            first = (
                f"{name}.conv1"
                if f"{self.rk.layer_name(name)}_conv1" in self.names
                else f"{name}.paths.0.conv1"
            )
            block = self.keras.Model(self.layer(first).input, self.layer(f"{name}.relu").output)
            return self.keras.ops.convert_to_numpy(block(x, training=False))
        pad = self.rk.layer_name(f"{name}.pad")
        if pad in self.names:  # Keras convs are 'valid' after an explicit ZeroPadding2D
            x = self.model.get_layer(pad)(x)
        return self.keras.ops.convert_to_numpy(self.layer(name)(x, training=False))

    def part(self, name: str, x: np.ndarray) -> np.ndarray:
        """A part (shortcut, attention, pool): its layers of the functional graph, as a model."""
        if self.rk.layer_name(name) in self.names:
            return self(name, x)
        prefix = self.rk.layer_name(name) + "_"
        inside = [layer for layer in self.model.layers if layer.name.startswith(prefix)]
        first = inside[0].input
        part = self.keras.Model(first[0] if isinstance(first, list) else first, inside[-1].output)
        return self.keras.ops.convert_to_numpy(part(x, training=False))


class FlaxBuild:
    def __init__(self, config: ArchConfig, form: str, weights: dict[str, np.ndarray]) -> None:
        import resnext_flax as rf

        self.model = rf.build(config, form, weights=weights)
        self.model.eval()
        self.exported = rf.export_weights(self.model)

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        from resnext_flax.model import submodule

        return np.asarray(submodule(self.model, name)(x))

    def part(self, name: str, x: np.ndarray) -> np.ndarray:
        """A part (shortcut, attention, pool): one module, or a list of them applied in turn."""
        from flax import nnx

        from resnext_flax.model import submodule

        node = submodule(self.model, name)
        for layer in node if isinstance(node, nnx.List) else [node]:
            x = layer(x)
        return np.asarray(x)


BUILDS = {"torch": TorchBuild, "keras": KerasBuild, "flax": FlaxBuild}


# --- the lesson ---------------------------------------------------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


@dataclass
class Lesson:
    """What ``explain`` found; ``to_dict`` is the ``--json`` output."""

    preset: str
    block: str
    built_as: str
    framework: str
    spec: dict[str, Any]
    split: list[dict[str, Any]]
    split_problems: list[str]
    stages: list[dict[str, Any]]
    params: dict[str, int]
    input_shape: tuple[int, ...]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(s["error"] for s in self.stages)

    @property
    def agrees(self) -> bool:
        """The forms compute one function: every stage within float32 rounding, the split as
        shown, the same parameter count in every form and in the spec's formula."""
        counts = set(self.params.values()) | {self.spec["spec_params"]}
        return self.worst < AGREE and not self.split_problems and len(counts) == 1

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["input_shape"] = list(self.input_shape)
        d["worst_error"] = self.worst
        d["agrees"] = self.agrees
        return d


def split_table(b: BlockSpec) -> list[dict[str, Any]]:
    """Per path p: the slices of form (c)'s tensors it owns in forms (b) and (a), with their shapes.

    conv1 and conv2 weights are cut along their output rows (group p of a grouped OIHW
    weight is rows p*d..(p+1)*d), BN tensors along their channels, and in form (a)
    conv3 along its input columns.
    """
    d = b.path_width
    rows = []
    for p in range(b.cardinality):
        s = b.path_slice(p)
        cut = [s.start, s.stop]
        rows.append(
            {
                "path": p,
                "channels": cut,
                "conv1": {"rows": cut, "shape": [d, b.in_channels, 1, 1]},
                "conv2": {"group": p, "rows": cut, "shape": [d, d, 3, 3]},
                "bn1_bn2": {"channels": cut},
                "conv3_in_a": {"columns": cut, "shape": [b.out_channels, d, 1, 1]},
            }
        )
    return rows


def block_params(exported: dict[str, np.ndarray], prefix: str) -> int:
    return sum(v.size for n, v in exported.items() if n.startswith(prefix + ".") and not is_running_stat(n))


def block_input_size(config: ArchConfig, b: BlockSpec, image_size: int | None) -> int:
    """The block's input height for an ``image_size`` image (default 224 ImageNet, 32 CIFAR)."""
    p = plan(config)
    size = (image_size or p.stem.image_size) // p.stem.reduction  # what the stem hands to stage 1
    for block in p.blocks:  # each block before it divides the size by its stride
        if block.name == b.name:
            break
        size //= block.stride
    return max(1, size)


def compare_forms(builds: dict, name: str, b: BlockSpec, x: np.ndarray) -> list[dict[str, Any]]:
    """One input through all three forms of block ``name``, stage by stage, each against form (c)'s
    tensor at the same point: the rows of the lesson, with the largest difference at each."""
    c, a, bb = builds["c"], builds["a"], builds["b"]
    # Form (c): the grouped block, layer by layer.
    # The parts around the paths (an anti-aliasing pool, attention, the shortcut) are the framework's
    # own modules, called whole: they act on all channels alike in every form. A pre-activation
    # block first normalises its input (bn0), which its body and a projection take; its body ends
    # on conv3, and no ReLU follows the sum.
    pre = relu(c(f"{name}.bn0", x)) if b.preact else x
    h1 = relu(c(f"{name}.bn1", c(f"{name}.conv1", pre)))
    h2 = relu(c(f"{name}.bn2", c(f"{name}.conv2", h1)))
    h2 = c.part(f"{name}.aa", h2) if b.aa else h2
    z = c(f"{name}.conv3", h2)
    y = z if b.preact else c(f"{name}.bn3", z)
    attended = c.part(b.attention.name, y) if b.attention.kind else y
    shortcut = c.part(b.shortcut.name, pre if b.projection else x) if b.shortcut.kind != "identity" else x
    out = attended + shortcut if b.preact else relu(attended + shortcut)

    def path(build, p: int) -> tuple[np.ndarray, np.ndarray]:
        q = f"{name}.paths.{p}"
        g1 = relu(build(f"{q}.bn1", build(f"{q}.conv1", pre)))
        g2 = relu(build(f"{q}.bn2", build(f"{q}.conv2", g1)))
        return g1, build.part(f"{q}.aa", g2) if b.aa else g2

    stages: list[dict[str, Any]] = []

    def stage(step: str, what: str, got: np.ndarray, want: np.ndarray) -> None:
        stages.append(
            {"step": step, "compared": what, "shape": list(got.shape), "error": rel_error(got, want)}
        )

    def per_path(step: str, what: str, which: int, want: np.ndarray) -> None:
        """Path p's tensor (0: after conv1, 1: after conv2) in (b) and (a) vs channels p of (c)'s."""
        errs = [
            max(rel_error(paths[p][which], want[..., b.path_slice(p)]) for paths in (paths_b, paths_a))
            for p in range(b.cardinality)
        ]
        shape = [len(x), *want.shape[1:3], b.path_width]
        stages.append({"step": step, "compared": what, "shape": shape, "error": max(errs), "per_path": errs})

    paths_b = [path(bb, p) for p in range(b.cardinality)]
    paths_a = [path(a, p) for p in range(b.cardinality)]
    per_path("1x1 split", "each path's conv1+bn1+relu vs its channels of (c)'s", 0, h1)
    per_path("grouped 3x3", "each path's conv2+bn2+relu vs group p of (c)'s grouped conv", 1, h2)

    concat = np.concatenate([g2 for _, g2 in paths_b], axis=-1)
    stage("(b) concatenate", "the C path outputs side by side vs (c)'s grouped-conv output", concat, h2)
    stage("(b) shared 1x1", "(b)'s conv3 on the concatenation vs (c)'s conv3", bb(f"{name}.conv3", concat), z)
    summed = sum(a(f"{name}.paths.{p}.conv3", g2) for p, (_, g2) in enumerate(paths_a))
    if b.preact and b.conv_bias:  # conv3's bias, added once to the sum
        summed = a(f"{name}.conv3", summed)
    stage("(a) sum of 1x1s", "the sum of the C paths' own conv3 vs (c)'s conv3", summed, z)
    if not b.preact:
        stage("(a) BN after the sum", "(a)'s bn3 on the sum vs (c)'s bn3 output", a(f"{name}.bn3", summed), y)
    for form, build in (("a", a), ("b", bb)):
        what = f"the framework's own ({form}) block vs (c)'s, shortcut and ReLU included"
        stage(f"({form}) whole block", what, build(name, x), out)
    stage("(c) whole block", "the framework's own (c) block vs the layers above, one by one", c(name, x), out)
    return stages


def block_spec(config: ArchConfig, name: str, b: BlockSpec) -> dict[str, Any]:
    """The block's shape in numbers, with its parameter count from the spec alone."""
    return {
        "in_channels": b.in_channels,
        "out_channels": b.out_channels,
        "cardinality": b.cardinality,
        "path_width": b.path_width,
        "width": b.width,
        "stride": b.stride,
        "projection": b.projection,
        "preact": b.preact,
        "conv3_bias": b.preact and b.conv_bias,
        "shortcut": b.shortcut.kind if b.shortcut.kind != "conv" or b.shortcut.norm else "conv_alone",
        "parts": parts_around(b),
        "spec_params": sum(
            int(np.prod(s))
            for n, s in canonical_shapes(config, "c").items()
            if n.startswith(name + ".") and not is_running_stat(n)
        ),
    }


AA_WORDS = {"avg": "a 2x2 average pool", "blur": "a 3x3 blur pool"}


def parts_around(b: BlockSpec) -> list[str]:
    """The parts around the paths, in words with their parameter counts: the same in every form."""
    out = []
    if b.preact:
        out.append(
            "pre-activation: bn0 + ReLU on the block's input first, taken by the body and a "
            "projection; the body ends on conv3 (no bn3), and no ReLU follows the sum"
        )
    if b.shortcut.kind == "pool":
        out.append(
            "the shortcut takes every second row and column of the input (keras.applications' 1x1 max-pool)"
        )
    if b.shortcut.kind == "avg_conv":
        out.append("the shortcut average-pools 2x2 before its 1x1 conv + BN (timm's avg_down)")
    if b.aa:
        out.append(f"the 3x3 runs at stride 1 and {AA_WORDS[b.aa]} of stride {b.stride} follows its ReLU")
    a = b.attention
    if a.kind:
        n = sum(int(np.prod(layer.tensor_shape(t))) for layer in a.layers for t in layer.tensors)
        if a.kind == "se":
            what = f"squeeze-and-excitation {a.channels} -> {a.layers[0].shape[0]} -> {a.channels}"
        else:
            what = f"{a.kind.upper()} ({a.layers[0].shape[-1]}-tap conv along the channels)"
        out.append(f"{what} at {a.name} after bn3: {n:,} parameters")
    return out


def explain(
    preset: str | None = None,
    block: str = "layer1.0",
    *,
    config: ArchConfig | None = None,
    framework: str = "torch",
    batch: int = 1,
    image_size: int | None = None,
    seed: int = 0,
) -> Lesson:
    """Take one block of ``preset`` apart in ``framework`` (see the module docstring)."""
    check_framework(framework)
    if batch < 1 or (image_size is not None and image_size < 8):
        raise ConfigError("batch >= 1 and image size >= 8 are needed")
    start = time.perf_counter()
    cfg = resolve_config(preset, config)
    b = find_block(cfg, block)
    mini, name = stand_in(cfg, b)
    weights = random_weights(mini, "c", seed=seed)
    builds = {f: BUILDS[framework](mini, f, to_form(weights, mini, "c", f)) for f in "abc"}
    notes = []
    if name != block:
        notes.append(f"{block} is built as {name} of a smaller copy: {ALIKE[cfg.stride_at]}")

    size = block_input_size(cfg, b, image_size)
    x = np.random.default_rng(seed + 1).standard_normal((batch, size, size, b.in_channels)).astype(np.float32)
    return Lesson(
        preset=preset or "custom",
        block=block,
        built_as=name,
        framework=framework,
        spec=block_spec(mini, name, b),
        split=split_table(b),
        split_problems=check_split(weights, mini, name, b),
        stages=compare_forms(builds, name, find_block(mini, name), x),  # its names in the copy
        params={f: block_params(build.exported, name) for f, build in builds.items()},
        input_shape=x.shape,
        seconds=time.perf_counter() - start,
        notes=notes,
    )


def check_split(weights: dict[str, np.ndarray], config: ArchConfig, name: str, b: BlockSpec) -> list[str]:
    """Where the (a)/(b) weights the builds got are not the slices shown: checked, not only shown."""
    problems = []
    for form in "ab":
        converted = to_form(weights, config, "c", form)
        for layer in body_layers(find_block(config, name), form):
            if layer.path is None:
                continue
            full = weights[f"{form_c_name(layer)}.weight"]
            index = [slice(None)] * full.ndim
            index[layer.cut_axis] = b.path_slice(layer.path)
            if not np.array_equal(converted[f"{layer.name}.weight"], full[tuple(index)]):
                short = layer.name.rsplit(".", 1)[-1]
                problems.append(f"form ({form}) path {layer.path} {short}.weight is not the slice shown")
    return problems
