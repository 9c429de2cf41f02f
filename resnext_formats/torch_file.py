"""The one torch-file reader of porting: ``torch.load`` with ``weights_only=True``, never a pickle's code.

Shared by the state_dict reader (``port``) and the Hugging Face folder reader (``hf``).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import PortError

# What torch.load(weights_only=True) raises for damaged bytes, measured on 3,000 truncated,
# byte-flipped or overwritten state_dict files: RuntimeError "PytorchStreamReader failed reading
# file ... archive is corrupted" (712), ValueError "negative seek value" and UnicodeDecodeError
# (699), KeyError from the pickle's memo (13), EOFError (8), AttributeError "'str' object has no
# attribute 'dtype'" and TypeError "_rebuild_tensor_v2() missing 1 required positional argument"
# (2 each), IndexError (1); pickle.UnpicklingError (123) has its own message.
TORCH_LOAD_ERRORS = (RuntimeError, ValueError, KeyError, EOFError, AttributeError, TypeError, IndexError)


def _first_clause(e: Exception) -> str:
    """What the loader said, to its first sentence: torch's zip reader goes on for 300 characters
    about miniz and how checkpoints get corrupted ("failed finding central directory. This is ...")."""
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text.split('. ')[0][:120]}"


def write_torch_state_dict(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """A plain ``torch.save`` of ``arrays`` as tensors, written atomically: another library's
    state_dict layout (timm's ResNetV2) that its own ``load_state_dict`` takes."""
    import torch

    from resnext_spec import atomic_write

    state = {k: torch.tensor(np.asarray(v)) for k, v in arrays.items()}  # copies: torch owns them
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_torch_state_dict(path: Path) -> tuple[dict[str, np.ndarray], list[str], str | None]:
    """(tensors, notes, the architecture a training checkpoint names) of a torch file."""
    import argparse

    import torch

    notes = []
    try:  # timm's train.py keeps its argparse.Namespace in the checkpoint: data, not code
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PortError(
            f"{path}: this pickle needs code to load (it holds more than tensors and plain containers), "
            "and running a file's code is what an attacker would ask for; it is read with "
            "weights_only=True only. Re-save just the state_dict: torch.save(model.state_dict(), path)"
            f" [{str(e).splitlines()[0]}]"
        ) from e
    except TORCH_LOAD_ERRORS as e:
        raise PortError(f"{path}: not a torch file, or truncated or corrupt ({_first_clause(e)})") from e
    arch = None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                notes.append(f"took the state_dict under {key!r} of a training checkpoint")
                if "state_dict_ema" in obj:
                    notes.append("the checkpoint also holds an EMA state_dict ('state_dict_ema'), not read")
                # timm's train.py names the model; without its args it writes the class name, 'resnet'
                named = obj.get("arch")
                arch = named if isinstance(named, str) and named != "resnet" else None
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PortError(
            f"{path}: a torch file, but not a state_dict (a dict of name -> tensor) "
            "or a training checkpoint holding one"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        notes.append("stripped the 'module.' prefix of DataParallel/DDP")
        state = {k[len("module.") :]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    narrow = sorted({str(v.dtype) for v in state.values() if v.dtype in (torch.bfloat16, torch.float16)})
    if narrow:  # numpy has no bfloat16; float32 holds every bf16 and fp16 value exactly
        notes.append(f"converted {' and '.join(narrow)} tensors to float32 (exact)")
    return (
        {
            k: (v.float() if v.dtype in (torch.bfloat16, torch.float16) else v).detach().cpu().numpy()
            for k, v in state.items()
        },
        notes,
        arch,
    )
