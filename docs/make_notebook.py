"""Writes docs/forms.ipynb (no outputs) from the cells below: the lesson of docs/forms.md,
run in torch and Flax. Edit here, then `python docs/make_notebook.py`; CI executes the
notebook (tests/test_notebook.py) and checks that the committed file matches this script.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        """# Three forms, one function

A ResNeXt block can be written three ways (the paper's figure 3): **(a)** C separate paths, each
1x1 -> 3x3 -> 1x1, summed; **(b)** the same paths without their last 1x1, concatenated, then one
shared 1x1; **(c)** one 1x1, one *grouped* 3x3 with C groups, one 1x1. This notebook takes a
small ResNeXt apart in **torch** and **Flax** and shows, tensor by tensor, that the three are the
same function. `docs/forms.md` derives why; `resnext-explain` does the same for any preset.""",
    ),
    (
        "code",
        """import numpy as np
import torch

import resnext_torch as rt
from resnext_spec import ArchConfig, random_weights, to_form
from resnext_spec.layout import plan

# A small ResNeXt: CIFAR stem, one stage of one block, C = 4 paths of width d = 8.
config = ArchConfig(layers=(1,), cardinality=4, base_width=8, stem="cifar", num_classes=10)
block = plan(config).blocks[0]
print(
    block.name,
    "in",
    block.in_channels,
    "-> width",
    block.width,
    "=",
    block.cardinality,
    "x",
    block.path_width,
    "-> out",
    block.out_channels,
)""",
    ),
    (
        "markdown",
        """## One set of weights, three layouts

`random_weights` draws form (c)'s weights (every BN tensor random, so nothing hides behind an
identity BN). `to_form` converts them: path p of (a)/(b) gets rows `p*d:(p+1)*d` of conv1 and
conv2 (group p of the grouped conv), those BN channels, and in (a) the same *columns* of conv3.""",
    ),
    (
        "code",
        """w = {form: to_form(random_weights(config, "c", seed=0), config, "c", form) for form in "abc"}
c, a = w["c"], w["a"]
p, d = 2, block.path_width
for layer in ("conv1", "conv3"):
    print(
        f"(c) {layer}",
        c[f"layer1.0.{layer}.weight"].shape,
        f"  (a) path 2 {layer}",
        a[f"layer1.0.paths.2.{layer}.weight"].shape,
    )
assert np.array_equal(a["layer1.0.paths.2.conv1.weight"], c["layer1.0.conv1.weight"][p * d : (p + 1) * d])
assert np.array_equal(a["layer1.0.paths.2.conv3.weight"], c["layer1.0.conv3.weight"][:, p * d : (p + 1) * d])
print("path 2 owns rows/columns", p * d, "to", (p + 1) * d)""",
    ),
    (
        "markdown",
        """## The grouped 3x3 is C separate 3x3s

A grouped conv with C groups is a dense conv whose weight is block-diagonal: group p reads
channels `p*d:(p+1)*d` and writes the same channels. Here it is in plain torch.""",
    ),
    (
        "code",
        """x = torch.randn(2, block.width, 8, 8)
k = torch.from_numpy(c["layer1.0.conv2.weight"])  # (W, d, 3, 3): W output channels, d inputs per group
grouped = torch.nn.functional.conv2d(x, k, padding=1, groups=block.cardinality)
per_path = torch.cat(
    [
        torch.nn.functional.conv2d(x[:, q * d : (q + 1) * d], k[q * d : (q + 1) * d], padding=1)
        for q in range(block.cardinality)
    ],
    dim=1,
)
print("grouped vs C separate convs, max |difference|:", (grouped - per_path).abs().max().item())""",
    ),
    (
        "markdown",
        """## Concatenate then 1x1 = sum of 1x1s

A 1x1 conv is a matrix product at every pixel, and a matrix times a stacked vector is the sum of
its column blocks times the parts: `W3 [h_1; ...; h_C] = sum_p W3[:, p] h_p`. That is (b) = (a).""",
    ),
    (
        "code",
        """h = torch.relu(per_path)
w3 = torch.from_numpy(c["layer1.0.conv3.weight"])  # (out, W, 1, 1)
concat_then_1x1 = torch.nn.functional.conv2d(h, w3)
sum_of_1x1s = sum(
    torch.nn.functional.conv2d(h[:, q * d : (q + 1) * d], w3[:, q * d : (q + 1) * d])
    for q in range(block.cardinality)
)
err = ((concat_then_1x1 - sum_of_1x1s).abs().max() / concat_then_1x1.abs().max()).item()
print(f"(b) vs (a), relative: {err:.1e}  (float32 adds the C parts in another order: ~1e-7, not 0)")""",
    ),
    (
        "markdown",
        """## Whole networks: three torch models, one function

Each form is its own `nn.Module` (`resnext_torch`), loaded with its layout of the same weights.
In eval mode (running statistics) and in training mode (batch statistics) they agree.""",
    ),
    (
        "code",
        """images = torch.randn(4, 3, 16, 16)
logits = {}
for form in "abc":
    model = rt.create_model(config=config, form=form)
    rt.import_weights(model, w[form])
    with torch.no_grad():
        logits[form] = model.eval()(images)
for form in "ab":
    gap = ((logits[form] - logits["c"]).abs().max() / logits["c"].abs().max()).item()
    print(f"torch ({form}) vs (c): {gap:.1e}")""",
    ),
    (
        "markdown",
        """## The same in Flax

The Flax builds (`resnext_flax`, NHWC) take the same canonical weights; their logits match
torch's, form by form.""",
    ),
    (
        "code",
        """import resnext_flax as rf

for form in "abc":
    model = rf.create_model(config=config, form=form)
    rf.import_weights(model, w[form])
    model.eval()
    out = np.asarray(model(images.numpy().transpose(0, 2, 3, 1)))
    gap = np.abs(out - logits["c"].numpy()).max() / np.abs(logits["c"].numpy()).max()
    print(f"flax ({form}) vs torch (c): {gap:.1e}")""",
    ),
    (
        "markdown",
        """## Any block of any preset

`explain` (the `resnext-explain` command) runs this lesson on one block of a real preset, stage
by stage, in torch, Keras or Flax.""",
    ),
    (
        "code",
        """from resnext_explain import explain

lesson = explain("resnext50_32x4d", "layer2.0", framework="flax", image_size=64)
for stage in lesson.stages:
    print(f"{stage['step']:<22} {stage['error']:.1e}")
print("parameters per form:", lesson.params, "- the same function:", lesson.agrees)""",
    ),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb.cells = [make[kind](source) for kind, source in CELLS]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"  # stable ids: the file is the same every time it is written
    return nb


def main() -> None:
    nbformat.write(build(), HERE / "forms.ipynb")
    print(f"wrote {HERE / 'forms.ipynb'}")


if __name__ == "__main__":
    main()
