"""timm checkpoints port with no flags, proved by logits against timm itself; variants not held are refused.

Each timm model is built by ``timm.create_model`` (a small ResNeXt: the ``resnext50_32x4d``
builder with one block a stage, cardinality 4 -- the builder takes those as
arguments -- and one real preset), with random weights and every BN tensor randomised,
then saved the four ways timm saves: ``torch.save(state_dict)``, a safetensors file,
``save_for_hf``'s hub folder and ``train.py``'s checkpoint (``CheckpointSaver``). Each
is read with no flags into torch, Keras and Flax builds (forms a and c); their logits
equal timm's own (1e-5, relative). What we write loads into timm with its own loader.
timm's inputs: RGB in [0, 1] normalised by the ImageNet mean and std (its pretrained_cfg).
"""

import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import import_timm

from resnext_port.port import PortError, Weights, logits, port, read
from resnext_spec import ArchConfig, count_params, get_config, random_weights, save_checkpoint
from resnext_spec.tolerances import TOL, rel_error
from resnext_torch import randomise_batchnorm

timm = import_timm()
SMALL = dict(layers=(1, 1, 1, 1), cardinality=4, base_width=4, num_classes=5)


def timm_model(arch: str = "resnext50_32x4d", seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = timm.create_model(arch, **kwargs).eval()
    return randomise_batchnorm(model)


def timm_logits(model, seed: int = 0) -> np.ndarray:
    """timm's logits of the batch ``resnext_port.port.logits`` feeds our builds (2 images, 64 px)."""
    x = np.random.default_rng(seed).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        return model(torch.from_numpy(x)).double().numpy()


def save_the_timm_way(model, how: str, folder):
    """The file or folder timm writes, by timm's own code where it has one."""
    if how == "pth":
        torch.save(model.state_dict(), folder / "model.pth")
        return folder / "model.pth"
    if how == "safetensors":
        import safetensors.torch

        safetensors.torch.save_file(model.state_dict(), folder / "model.safetensors")
        return folder / "model.safetensors"
    if how == "hub":
        timm.models.save_for_hf(model, folder / "hub", model_args=dict(SMALL), safe_serialization=True)
        return folder / "hub"
    from timm.utils import CheckpointSaver  # train.py's checkpoints: epoch, arch, args, optimizer, EMA

    args = argparse.Namespace(model="resnext50_32x4d", lr=0.1, epochs=1)
    saver = CheckpointSaver(
        model, torch.optim.SGD(model.parameters(), lr=0.1), args=args, checkpoint_dir=str(folder)
    )
    saver.save_checkpoint(epoch=0, metric=0.5)
    return folder / "last.pth.tar"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    model = timm_model(**SMALL)
    folder = tmp_path_factory.mktemp("timm")
    files = {how: save_the_timm_way(model, how, folder) for how in ("pth", "safetensors", "hub", "train")}
    return files, timm_logits(model)


@pytest.mark.parametrize(
    ("how", "suffix", "framework", "form"),
    [
        ("pth", ".pth", "torch", "a"),
        ("pth", ".msgpack", "flax", "c"),
        ("safetensors", ".weights.h5", "keras", "a"),
        ("safetensors", ".pth", "torch", "c"),
        ("hub", ".msgpack", "flax", "a"),
        ("train", ".weights.h5", "keras", "c"),
    ],
)
def test_a_timm_resnext_ports_with_no_flags_and_gives_its_logits(
    small, tmp_path, how, suffix, framework, form
):
    files, expected = small
    result = port(files[how], tmp_path / f"out{suffix}", to_form=form)
    assert (result.config.cardinality, result.config.base_width, result.config.layers) == (4, 4, (1, 1, 1, 1))
    got = logits(framework, read(tmp_path / f"out{suffix}", stride_on="3x3"))
    assert rel_error(got, expected) <= TOL


def test_porting_a_timm_file_needs_no_timm(small, tmp_path):
    """What docs/porting.md tells a user whose timm lives in another environment: the port runs in a
    process where importing timm fails."""
    files, expected = small
    out = tmp_path / "out.safetensors"
    code = (
        "import sys; sys.modules['timm'] = None\n"
        "from resnext_cli import main\n"
        f"sys.exit(main(['port', {str(files['pth'])!r}, {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert rel_error(logits("torch", read(out)), expected) <= TOL


def test_a_timm_file_that_names_its_model_records_the_stride(small):
    files, _ = small
    for how in ("hub", "train"):  # the architecture is named: timm's ResNets stride on the 3x3
        w = read(files[how])
        assert w.stride_recorded and w.config.stride_on == "3x3"
        assert any("timm resnext50_32x4d" in n for n in w.notes)
        with pytest.raises(PortError, match="has the stride on the 3x3, not 1x1"):
            read(files[how], stride_on="1x1")
    assert any("EMA" in n or "state_dict" in n for n in read(files["train"]).notes)
    assert not read(files["pth"]).stride_recorded  # a bare state_dict cannot say


def test_timms_resnext50_preset_is_recognised_and_ported(tmp_path):
    model = timm_model("resnext50_32x4d", num_classes=7)
    torch.save(model.state_dict(), tmp_path / "timm.pth")
    result = port(tmp_path / "timm.pth", tmp_path / "ours.safetensors")
    assert result.preset is None and "resnext50_32x4d with num_classes=7" in " ".join(result.notes)
    assert rel_error(logits("torch", read(tmp_path / "ours.safetensors")), timm_logits(model)) <= TOL


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_what_we_write_loads_with_timms_own_loader(tmp_path, suffix):
    config = ArchConfig(layers=(1, 1, 1, 1), cardinality=4, base_width=4, num_classes=5)
    weights = random_weights(config, "c", 1)
    save_checkpoint(tmp_path / "ours.safetensors", weights, config)
    port(tmp_path / "ours.safetensors", tmp_path / f"out{suffix}", force=True)
    model = timm.create_model("resnext50_32x4d", **SMALL).eval()
    timm.models.load_checkpoint(model, str(tmp_path / f"out{suffix}"), strict=True)
    assert rel_error(timm_logits(model), logits("torch", Weights(weights, config, "c"))) <= TOL


# One timm model of each variant kind this project holds, one block a stage, each read into a
# different build (framework, form), and written back for timm's own strict loader.
VARIANT_KINDS = [
    ("resnet50c", "torch", "a"),  # deep stem
    ("resnet26t", "keras", "c"),  # tiered deep stem + avg_down
    ("resnet50d", "flax", "b"),  # deep stem + avg_down
    ("seresnet50", "keras", "b"),  # SE
    ("seresnext26d_32x4d", "flax", "a"),  # SE + ResNeXt
    ("ecaresnet26t", "torch", "b"),  # ECA
    ("resnetrs50", "flax", "c"),  # ResNet-RS: strided conv for the max-pool, SE at 1/4
    ("seresnet18", "torch", "c"),  # basic blocks with SE
]


@pytest.mark.parametrize(("arch", "framework", "form"), VARIANT_KINDS)
def test_each_timm_variant_ports_with_no_flags_and_goes_back_to_timm(tmp_path, arch, framework, form):
    model = timm_model(arch, layers=(1, 1, 1, 1), num_classes=5)
    torch.save(model.state_dict(), tmp_path / "timm.pth")
    suffix = {"torch": ".pth", "keras": ".weights.h5", "flax": ".msgpack"}[framework]
    port(tmp_path / "timm.pth", tmp_path / f"ours{suffix}", to_form=form)
    ours = read(tmp_path / f"ours{suffix}", stride_on="3x3")
    for each in ("torch", "keras", "flax"):  # what was written, in every framework
        assert rel_error(logits(each, ours), timm_logits(model)) <= TOL, each
    assert count_params(ours.config) == sum(p.numel() for p in model.parameters())
    port(tmp_path / f"ours{suffix}", tmp_path / "back.pth", to_form="c")
    again = timm.create_model(arch, layers=(1, 1, 1, 1), num_classes=5).eval()
    timm.models.load_checkpoint(again, str(tmp_path / "back.pth"), strict=True)
    assert rel_error(timm_logits(again), timm_logits(model)) <= TOL


def test_a_timm_hub_folder_of_a_variant_ports_as_the_model_it_names(tmp_path):
    model = timm_model("seresnext26d_32x4d", num_classes=5)
    timm.models.save_for_hf(model, tmp_path / "hub", safe_serialization=True)
    w = read(tmp_path / "hub")
    assert w.config == get_config("seresnext26d_32x4d", num_classes=5) and w.warnings == []
    assert rel_error(logits("torch", w), timm_logits(model)) <= TOL


def test_a_file_naming_a_model_its_tensors_are_not_is_refused(tmp_path):
    timm.models.save_for_hf(timm_model("resnet50", num_classes=5), tmp_path / "hub", safe_serialization=True)
    config = tmp_path / "hub" / "config.json"
    config.write_text(config.read_text().replace('"resnet50"', '"resnet50d"'))
    with pytest.raises(
        PortError, match="names timm's resnet50d, but its tensors are resnet50 .*avg_down=False"
    ):
        read(tmp_path / "hub")


@pytest.mark.parametrize(
    ("arch", "what"),
    [
        ("skresnext50_32x4d", "selective kernels"),
        ("resnetv2_50d_evos", "EvoNorm"),
    ],
)
def test_a_timm_variant_the_tensors_show_is_refused_by_name(tmp_path, arch, what):
    torch.save(timm_model(arch, layers=(1, 1, 1, 1), num_classes=5).state_dict(), tmp_path / "v.pth")
    with pytest.raises(PortError, match=f"{what}.*It holds timm's deep and tiered stems"):
        port(tmp_path / "v.pth", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("arch", ["resnetaa50d", "resnetblur50"])
def test_an_anti_aliased_hub_folder_ports_exactly_by_the_name_it_records(tmp_path, arch):
    # Its tensors are exactly the plain twin's (the pools have none): only the name says what it is.
    model = timm_model(arch, layers=(1, 1, 1, 1), num_classes=5)
    timm.models.save_for_hf(
        model, tmp_path / "hub", model_args={"layers": (1, 1, 1, 1)}, safe_serialization=True
    )
    w = read(tmp_path / "hub")
    assert w.config.aa_layer == get_config(arch).aa_layer and w.warnings == []
    for framework in ("torch", "keras", "flax"):
        assert rel_error(logits(framework, w), timm_logits(model)) <= TOL, framework


def test_a_plain_hub_folder_built_with_an_argument_the_tensors_cannot_show_is_refused(tmp_path):
    plain = timm_model("resnet50", num_classes=5)
    timm.models.save_for_hf(
        plain, tmp_path / "os16", model_args={"output_stride": 16}, safe_serialization=True
    )
    with pytest.raises(PortError, match="output_stride"):
        read(tmp_path / "os16")


def test_a_bare_state_dict_whose_layout_an_anti_aliased_network_shares_is_never_ported_in_silence(
    tmp_path, capsys
):
    """timm's resnetblur50 saves exactly resnet50's tensors: its bare state_dict ports as the plain
    network, and the command says on stderr which networks share the layout and the flag that
    chooses one; with it, the port is exact. A CIFAR-stem file, which no anti-aliased network
    shares, ports with no such warning."""
    from resnext_port.cli import main

    blur = timm_model("resnetblur50", num_classes=5)
    torch.save(blur.state_dict(), tmp_path / "blur.pth")
    assert main([str(tmp_path / "blur.pth"), str(tmp_path / "plain.safetensors")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "(resnetblur50, resnetaa50)" in err and "--model resnetaa50" in err
    # The warning is the reader's, so every tool that reads the file has it, not only the command.
    assert any("resnetblur50" in w for w in read(tmp_path / "blur.pth").warnings)
    assert rel_error(logits("torch", read(tmp_path / "plain.safetensors")), timm_logits(blur)) > 1e-2
    flags = ["--model", "resnetblur50", "--num-classes", "5"]
    assert main([str(tmp_path / "blur.pth"), str(tmp_path / "blur.safetensors"), *flags]) == 0
    assert "warning:" not in capsys.readouterr().err
    assert rel_error(logits("torch", read(tmp_path / "blur.safetensors")), timm_logits(blur)) <= TOL
    cifar = ArchConfig(layers=(1, 1), cardinality=2, base_width=8, stem="cifar", num_classes=3)
    torch.save(
        {k: torch.tensor(v) for k, v in random_weights(cifar).items()},
        tmp_path / "cifar.pth",
    )
    assert read(tmp_path / "cifar.pth").warnings == []


def test_a_headless_timm_variant_ports_and_verifies(tmp_path):
    """num_classes=0 (timm's backbone): no fc in the file, pooled features out, --verify at every stage."""
    model = timm_model("resnetrs50", layers=(1, 1, 1, 1), num_classes=0)
    torch.save(model.state_dict(), tmp_path / "backbone.pth")
    result = port(tmp_path / "backbone.pth", tmp_path / "backbone.weights.h5", to_form="b", verify=True)
    assert result.config.headless and result.config.attn_rd_ratio == 0.25
    assert result.verify_error <= TOL and set(result.verify_stages) >= {"stem", "layer4", "pool"}


def test_an_anti_aliased_network_written_as_pth_says_how_to_read_it_back(tmp_path):
    """A .pth holds tensors only, and anti-aliasing has none: the port warns, --verify still checks the
    written tensors under the network they belong to, and read with the flag the warning names, the
    file gives timm's logits."""
    model = timm_model("resnetaa50", num_classes=5)
    timm.models.save_for_hf(model, tmp_path / "hub", safe_serialization=True)
    result = port(tmp_path / "hub", tmp_path / "aa.pth", verify=True)
    assert result.verify_error <= TOL
    assert any("--model resnetaa50" in w for w in result.warnings)
    back = read(tmp_path / "aa.pth", model="resnetaa50", num_classes=5)
    assert rel_error(logits("torch", back), timm_logits(model)) <= TOL


def test_another_timm_family_is_called_not_a_resnet_layout(tmp_path):
    """timm's resnext26ts (byobnet: stem.conv1.conv, stages.0...) shares a name, not a layout."""
    torch.save(timm.create_model("resnext26ts", num_classes=5).state_dict(), tmp_path / "ts.pth")
    with pytest.raises(PortError, match=r"not a ResNet layout: no stem conv .*\(stem\.conv1\.conv\.weight"):
        port(tmp_path / "ts.pth", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
