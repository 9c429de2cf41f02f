"""A compiled build computes what the same build computes op by op: every pass the harness runs.

The harness compiles the Keras and Flax builds (``parity.runner_base.compiles``):
jax.jit of the split Flax state, jax.jit of Keras's ``stateless_call`` on JAX, a
tf.function on TensorFlow when asked. Compiling may fuse and reorder, never change
the function. In float64 every number agrees with the eager run to 1e-12 relative,
per tensor: eval logits and gradients, training-mode logits, gradients and running
statistics, the state after three SGD steps (measured: at most 9.4e-15). In fp32 the
logits and running statistics agree to 1e-6 (measured: at most 3e-7); gradients and
the SGD state are judged in float64 only, since with randomised BN statistics fp32
keeps few of their digits: two correct orderings of TINY's form (c) training pass
differed by 2.8e-2 in one gradient tensor, and by 1.1e-1 after three steps, while
the same two in float64 agreed to 2.2e-15 and 7.1e-15.
"""

import numpy as np
import pytest

from parity.runner_base import SGD, jax_x64
from parity.runners import make_runner
from resnext_spec import ArchConfig, random_weights, to_form
from resnext_spec.tolerances import rel_error

BOUND = {"float32": 1e-6, "float64": 1e-12}
# Two blocks of two paths in two stages: every kind of block (projection, stride, paths) at the
# least cost; eager Flax compiles each op on its own, which made a bigger config the slowest test.
TINY = ArchConfig(layers=(1, 1), cardinality=2, base_width=4, stem="cifar", num_classes=5)


def passes(runner, form: str) -> dict[str, np.ndarray]:
    """Every number the harness reads from a build, keyed by pass and tensor."""
    w = to_form(random_weights(TINY, "c", seed=3), TINY, "c", form)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    labels = rng.integers(0, TINY.num_classes, 4)
    model = runner.build(TINY, form)
    out = {}
    runner.load(model, w)
    out["eval logits"] = runner.stages(model, x)["logits"]
    for train in (False, True):
        runner.load(model, w)
        r = runner.forward_backward(model, x, labels, train)
        out[f"{train=} logits"] = r.logits
        out |= {f"{train=} grad {k}": v for k, v in r.grads.items()}
        out |= {f"{train=} state {k}": v for k, v in r.state.items()}
    runner.load(model, w)
    first, after = runner.sgd_steps(model, x, labels, SGD())
    out |= {f"sgd first state {k}": v for k, v in first.state.items()}
    out |= {f"sgd after {k}": v for k, v in after.items()}
    return out


def worst(compiled: dict, eager: dict, dtype: str) -> tuple[float, str]:
    assert compiled.keys() == eager.keys()
    judged = [k for k in eager if dtype == "float64" or "grad" not in k and "sgd after" not in k]
    return max((rel_error(compiled[k], eager[k]), k) for k in judged)


def check(framework: str, dtype: str, form: str, compiled_mode: str = "always") -> None:
    with jax_x64(dtype == "float64"):
        compiled = make_runner(framework, dtype=dtype, compile=compiled_mode)
        eager = make_runner(framework, dtype=dtype, compile="never")
        model = compiled.build(TINY, form)
        assert compiled.compiled(model) and not eager.compiled(model)
        error, where = worst(passes(compiled, form), passes(eager, form), dtype)
    assert error <= BOUND[dtype], (framework, dtype, form, where, error)


# The fast tier runs form (a), the one compiling made new; the full tier every form.
EVERY_FORM = ["a", pytest.param("b", marks=pytest.mark.slow), pytest.param("c", marks=pytest.mark.slow)]


@pytest.mark.first_backend_only
@pytest.mark.parametrize("form", EVERY_FORM)
def test_flax_compiled_equals_eager_in_fp32(form):
    check("flax", "float32", form)


@pytest.mark.slow
@pytest.mark.first_backend_only
@pytest.mark.parametrize("form", ["a", "b", "c"])
def test_flax_compiled_equals_eager_in_float64(form):
    check("flax", "float64", form)


# Keras runs compiled on JAX (jax.jit) and, asked, on TensorFlow (tf.function): the fast tier checks
# TensorFlow's, the full tier's Keras passes JAX's too (its eager form (a) alone takes 37 s).
@pytest.mark.keras
@pytest.mark.parametrize("form", EVERY_FORM[:2])
def test_keras_compiled_equals_eager_in_fp32(form):
    import keras

    if keras.backend.backend() == "torch":
        pytest.skip("Keras on torch runs eagerly, as Keras itself does by default")
    check("keras", "float32", form)


@pytest.mark.slow
@pytest.mark.keras
def test_keras_compiled_equals_eager_in_float64_on_tensorflow():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras computes float64 faithfully on TensorFlow only (KerasRunner refuses the rest)")
    check("keras", "float64", "a")


def test_auto_compiles_small_builds_and_leaves_many_paths_eager():
    from parity.runner_base import MAX_COMPILED_PATHS, compiles, explicit_paths
    from resnext_spec import get_config

    r50 = get_config("resnext50_32x4d")
    assert explicit_paths(r50, "a") == 16 * 32 > MAX_COMPILED_PATHS  # 16 blocks of 32 paths
    assert explicit_paths(r50, "c") == 0
    assert not compiles("auto", r50, "a") and compiles("auto", r50, "c") and compiles("always", r50, "a")
    assert compiles("auto", TINY, "a") and not compiles("never", TINY, "c")
