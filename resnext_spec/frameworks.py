"""The three frameworks by name: the one list every tool takes its choices from.

Each name maps to the package that builds it; those packages offer the same facade (build,
predict, ``forward_stages``, load and save), so a tool that has a framework's name needs
nothing else to know about it.
"""

from __future__ import annotations

from .errors import ConfigError

# name -> the model package, and what that package needs installed to import.
PACKAGES = {"torch": "resnext_torch", "keras": "resnext_keras", "flax": "resnext_flax"}
REQUIRES = {"torch": ("torch",), "keras": ("keras",), "flax": ("jax", "flax")}
FRAMEWORKS = tuple(PACKAGES)
KERAS_BACKENDS = ("tensorflow", "jax", "torch")  # the backends Keras 3 runs on here
# The layout each framework's models take their images in.
CHANNELS_FIRST = {"torch": True, "keras": False, "flax": False}


def check_framework(name: str) -> str:
    """``name`` if it is one of :data:`FRAMEWORKS`, else a ``ConfigError`` naming the choices."""
    if name not in PACKAGES:
        raise ConfigError(f"unknown framework {name!r}; choose from {', '.join(FRAMEWORKS)}")
    return name


def installed_frameworks() -> list[str]:
    """The frameworks whose packages can be imported here, in :data:`FRAMEWORKS` order."""
    from importlib.util import find_spec

    return [fw for fw in FRAMEWORKS if all(find_spec(m) is not None for m in REQUIRES[fw])]


LAYOUTS = ("nchw", "nhwc")


def relayout(a, src: str, dst: str):
    """A numpy batch of images or feature maps in layout ``dst`` from layout ``src`` ("nchw" or
    "nhwc"); arrays of other ranks (logits, pooled features) are returned as they are."""
    for layout in (src, dst):
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if src == dst or a.ndim != 4:
        return a
    return a.transpose(0, 2, 3, 1) if dst == "nhwc" else a.transpose(0, 3, 1, 2)
