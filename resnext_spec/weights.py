"""Canonical weight dicts: checking them against a (config, form), and making seeded ones.

A canonical dict is ``{name: np.ndarray}`` in torch naming and layout, float32.
``check_weights`` is the one place that decides whether a dict fits a model; every
framework's ``import_weights`` calls it before touching the model, so a bad dict
is rejected whole with every problem listed, and the model stays as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from .config import ArchConfig
from .errors import ResNeXtError
from .layout import HEAD_TENSORS, canonical_shapes

IGNORED_SUFFIXES = ("num_batches_tracked",)


class WeightsMismatchError(ResNeXtError):
    """A weight dict does not fit the model: carries every problem found, not just the first."""

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        bad_dtype: list[tuple[str, str]],
        context: str = "",
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        self.bad_dtype = bad_dtype
        lines = [f"weights do not fit the model{context}:"]
        if missing:
            lines.append(f"  {len(missing)} missing: {_preview(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected: {_preview(unexpected)}")
        hint = _hint(missing, unexpected)
        if hint:
            lines.append(f"  hint: {hint}")
        for name, want, got in mismatched:
            lines.append(f"  shape mismatch {name}: expected {want}, got {got}")
            if name == "fc.weight":
                lines.append(
                    f"  hint: the weights have {got[0]} classes; build the model with num_classes={got[0]}"
                )
        for name, dtype in bad_dtype:
            lines.append(f"  {name}: dtype {dtype} is not a floating-point type")
        super().__init__("\n".join(lines))


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


class HeadLeftOutWarning(UserWarning):
    """A full checkpoint went into a headless model: its classifier (``fc.*``) was not loaded."""


def _hint(missing: list[str], unexpected: list[str]) -> str:
    """Name the likely cause of a missing/unexpected pattern that the user can fix."""
    if sorted(missing) == sorted(HEAD_TENSORS) and not unexpected:
        return (
            "the weights are headless (no classifier fc.*); build the model with num_classes=0 "
            "(Keras: include_top=False), or start a fine-tune from them (resnext-train --init-from), "
            "which gives the model a fresh head"
        )
    if not unexpected:
        return ""
    if any(".paths." in n for n in unexpected) and not any(".paths." in n for n in missing):
        return "the weights look like form (a)/(b) (they have .paths.); load them with that form"
    if any(".paths." in n for n in missing) and not any(".paths." in n for n in unexpected):
        return "the weights look like form (c) (no .paths.); load them with form 'c' or convert with to_form"
    prefixes = {n.split(".", 1)[0] for n in unexpected}
    if len(prefixes) == 1 and missing:
        prefix = prefixes.pop()
        if {n.split(".", 1)[-1] for n in unexpected} & set(missing):
            return f"every unexpected name starts with {prefix + '.'!r}; strip that prefix"
    return ""


def check_weights(
    weights: Mapping[str, object],
    config: ArchConfig,
    form: str,
    *,
    strict: bool = True,
    context: str = "",
) -> dict[str, np.ndarray]:
    """Validate ``weights`` against (config, form) and return them as float32 numpy arrays.

    Float64 arrays stay float64, so float64 runs (the parity harness's float64
    precision, its float64-rounding perturbations) load exactly what they computed.

    ``num_batches_tracked`` entries are dropped. A full checkpoint fits a headless model
    (``num_classes=0``): its ``fc.*`` are left out, with a :class:`HeadLeftOutWarning` that
    says so, as a backbone is made from a classifier. With ``strict=False`` missing names
    are allowed (the caller loads only what is there); unexpected names, wrong
    shapes and non-float dtypes are always errors. Raises one
    :class:`WeightsMismatchError` listing every problem.
    """
    expected = canonical_shapes(config, form)
    given = {k: v for k, v in weights.items() if k.rsplit(".", 1)[-1] not in IGNORED_SUFFIXES}
    head = {k: given.pop(k) for k in HEAD_TENSORS if k in given} if config.headless else {}
    missing = [k for k in expected if k not in given] if strict else []
    unexpected = [k for k in given if k not in expected]
    mismatched, bad_dtype, arrays = [], [], {}
    for name, value in given.items():
        if name not in expected:
            continue
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            bad_dtype.append((name, str(arr.dtype)))
        elif tuple(arr.shape) != expected[name]:
            mismatched.append((name, expected[name], tuple(arr.shape)))
        else:
            arrays[name] = arr if arr.dtype == np.float64 else arr.astype(np.float32, copy=False)
    if missing or unexpected or mismatched or bad_dtype:
        raise WeightsMismatchError(missing, unexpected, mismatched, bad_dtype, context)
    if head:
        shape = np.shape(head.get("fc.weight", ()))
        classes = f" ({shape[0]} classes)" if len(shape) == 2 else ""
        warnings.warn(
            f"left out the classifier {', '.join(sorted(head))}{classes}: the model is headless",
            HeadLeftOutWarning,
            stacklevel=3,
        )
    return {k: arrays[k] for k in expected if k in arrays}
