"""resnext_torch against torchvision itself: same weights in, same logits and gradients out.

torchvision is an implementation we did not write, so it is an independent check of
the torch builds (and through the harness, of all nine). Its weights (randomly drawn by
torchvision, BN running statistics randomised here so eval mode is not the identity)
are loaded with torchvision's own state_dict into our form (c), converted to forms (a)
and (b) by resnext_spec, and every build is run on the same batch: eval logits,
train-mode logits and every parameter gradient, each as a relative L2 error against
torchvision, in float32 (TF32 off) and float64 (where both compute the same function,
errors sit near 1e-15).

Usage: python -m parity.torchvision_check [--device cuda] [--models resnet50,...] [--json PATH]
Needs torchvision (not a dependency of the project; the GPU machine has it).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torchvision

import resnext_torch as rt
from resnext_spec import get_config, to_form

MODELS = "resnet18,resnet50,wide_resnet50_2,resnext50_32x4d,resnext101_32x8d"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def run(model: torch.nn.Module, x: torch.Tensor, probe: torch.Tensor) -> dict[str, object]:
    """Eval logits, train logits and the gradient of <train logits, probe> per parameter."""
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    model.train()
    model.zero_grad()
    train_logits = model(x)
    (train_logits * probe).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return {"eval": eval_logits, "train": train_logits.detach(), "grads": grads}


def check(name: str, device: str, dtype: torch.dtype, batch: int, size: int, seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    peer = getattr(torchvision.models, name)(weights=None)
    rt.randomise_batchnorm(peer, seed)
    # Copies: a state_dict shares storage, and the train-mode pass below updates running stats in place.
    state = {k: v.clone() for k, v in peer.state_dict().items()}
    cfg = get_config(name)
    canonical_c = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
    probe = torch.randn(batch, 1000, generator=torch.Generator().manual_seed(seed + 2)).to(device, dtype)
    truth = run(peer.to(device, dtype), x, probe)
    forms = "abc" if cfg.cardinality > 1 else "c"  # with one path, (a) and (b) are (c)
    out: dict[str, object] = {"model": name, "device": device, "dtype": str(dtype)}
    out.update(batch=batch, image_size=size)
    for form in forms:
        ours = rt.create_model(name, form=form)
        if form == "c":
            ours.load_state_dict(state)  # torchvision's own dict, strictly: the names are theirs
        else:
            rt.import_weights(ours, to_form(canonical_c, cfg, "c", form))
        got = run(ours.to(device, dtype), x, probe)
        grads = got["grads"]
        if form != "c":  # our per-path gradients, joined back into torchvision's tensors
            as_np = {k: v.cpu().numpy() for k, v in grads.items()}
            grads = {k: torch.from_numpy(v) for k, v in to_form(as_np, cfg, form, "c", partial=True).items()}
        worst = max(rel(grads[k], g) for k, g in truth["grads"].items())
        out[form] = {
            "eval": rel(got["eval"], truth["eval"]),
            "train": rel(got["train"], truth["train"]),
            "grad_worst_tensor": worst,
            "grad_tensors": len(truth["grads"]),
        }
        print(
            f"{name:>18} ({form}) {device} {str(dtype)[6:]}: eval {out[form]['eval']:.2e}"
            f"  train {out[form]['train']:.2e}  worst grad tensor {worst:.2e} over {len(truth['grads'])}",
            flush=True,
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default=MODELS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t = time.perf_counter()
    rows = [
        check(m, a.device, getattr(torch, d), a.batch, a.image_size, a.seed)
        for d in a.dtypes.split(",")
        for m in a.models.split(",")
    ]
    info = {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__}
    if a.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    print(f"{len(rows)} models in {time.perf_counter() - t:.0f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "versions": info}, f, indent=1)


if __name__ == "__main__":
    main()
