"""The Flax runner: NCHW numpy in, NHWC to the model."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import numpy as np

from resnext_spec import ArchConfig, is_running_stat
from resnext_spec.errors import ConfigError
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import FROM_CHANNELS_LAST

from .runner_base import SGD, PassResult, check_compile, check_dtype, compiles, split_stages

# XLA's backend optimisation off for the harness's compiles on CPU: each compiled function runs one
# to three times here, and compiling dominates. resnext26_8x16d on 2 cores, one run each: the Flax
# builds' compile time 45 s -> 28 s (form (c)'s SGD step 5.2 -> 2.5 s, running 0.42 -> 0.63 s per
# step); every check still passes. (On GPU the defaults stay.)
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


class FlaxRunner:
    framework = "flax"

    def __init__(
        self, device: str = "cpu", compile: str = "auto", conv_impl: str = "auto", dtype: str = "float32"
    ) -> None:
        """``compile``: "auto", "always" or "never" (``runner_base.compiles``).

        A compiled build runs every pass through ``jax.jit`` of the split model
        state, the way the Flax docs write a fast step (``nnx.jit`` walks the module
        graph on every call); "never" runs the same functions op by op, for
        debugging. ``dtype`` "float64" needs JAX's x64 mode on while the runner
        works (``runner_base.jax_x64``).
        """
        self.compile = check_compile(compile)
        self.conv_impl = check_conv_impl(conv_impl)
        self.dtype = check_dtype(dtype)
        import jax
        import jax.numpy as jnp
        from flax import nnx

        import resnext_flax
        from resnext_flax import train
        from resnext_flax.weights import weight_table

        self.jax, self.jnp, self.nnx, self.rf, self.train = jax, jnp, nnx, resnext_flax, train
        self.weight_table = weight_table
        try:
            self.device = jax.devices("gpu" if device == "gpu" else "cpu")[0]
        except RuntimeError as e:  # JAX: "Unknown backend: 'gpu' requested, but no platforms ..."
            raise ConfigError(f"--device {device}: JAX has no such device here ({e})") from e
        # (compute dtype, parameter dtype): bfloat16 is mixed precision, float32 parameters.
        self.dtypes = {
            "float32": (jnp.float32, jnp.float32),
            "float64": (jnp.float64, jnp.float64),
            "bfloat16": (jnp.bfloat16, jnp.float32),
        }[dtype]
        self.compile_s = 0.0  # seconds spent tracing and compiling, summed; the harness reads it
        # model -> {(function, graph, shapes) -> its executable}: the compiled programs go with their
        # model, not at the end of the run (on the default model they held gigabytes by the third form)
        self._executables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def build(self, config: ArchConfig, form: str):
        # A plain initialised build: nnx.eval_shape would skip the random init, but
        # tracing thousands of modules made it far slower (resnext50_32x4d form (a):
        # 218 s abstract vs 3.4 s concrete on 2 CPU cores).
        dtype, param_dtype = self.dtypes
        with self.jax.default_device(self.device):
            return self.rf.create_model(
                config=config, form=form, conv_impl=self.conv_impl, dtype=dtype, param_dtype=param_dtype
            )

    def export(self, model) -> dict[str, np.ndarray]:
        return self.rf.export_weights(model)

    def load(self, model, weights: dict[str, np.ndarray]) -> None:
        with self.jax.default_device(self.device):
            self.rf.import_weights(model, weights)

    def count(self, model) -> int:
        return self.rf.count_params(model)

    def compiled(self, model) -> bool:
        return compiles(self.compile, model.config, model.form)

    def runs_beside(self, config: ArchConfig, form: str) -> bool:
        """Whether the harness may run this build in a worker thread beside the other builds: when
        it runs compiled, since XLA lets go of the GIL while it compiles and runs (the bulk of a
        compiled build's time), so it overlaps the eager builds on a second core."""
        return compiles(self.compile, config, form)

    def _input(self, x: np.ndarray):
        return self.jnp.asarray(x.transpose(0, 2, 3, 1), dtype=self.dtypes[0])

    @staticmethod
    def _numpy(a) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def _executable(self, model, fn: Callable, graphdef, state, args):
        """``fn`` compiled for this graph and these shapes: once, ahead of time, so that the
        time spent tracing and compiling is measured apart from the run."""
        key = (fn, graphdef, *((a.shape, a.dtype) for a in self.jax.tree.leaves((state, args))))
        mine = self._executables.setdefault(model, {})
        if key not in mine:
            t0 = time.perf_counter()
            with self.jax.default_device(self.device):
                lowered = self.jax.jit(fn, static_argnums=0).lower(graphdef, state, *args)
                cpu = self.device.platform == "cpu"
                mine[key] = lowered.compile(CPU_COMPILER_OPTIONS if cpu else None)
            self.compile_s += time.perf_counter() - t0
        return mine[key]

    def _run(self, fn: Callable, node, model, *args):
        """``fn(graphdef, state, *args)`` on ``node``'s split state; its new state written back."""
        nnx = self.nnx
        graphdef, state = nnx.split(node)
        with self.jax.default_device(self.device):
            if self.compiled(model):
                *out, new_state = self._executable(model, fn, graphdef, state, args)(state, *args)
            else:
                *out, new_state = fn(graphdef, state, *args)
        nnx.update(node, new_state)
        return out

    def _optimizer(self, model, sgd: SGD):
        with self.jax.default_device(self.device):
            return self.train.make_optimizer(
                model, lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay
            )

    def stages(self, model, x) -> dict[str, np.ndarray]:
        """Eval-mode outputs at every stage and the logits (maps NCHW): one forward pass."""
        model.eval()
        (out,) = self._run(_forward, model, model, self._input(x))
        logits, stages = split_stages(out, model.config, self._numpy, nhwc=True)
        return {**stages, "logits": self._numpy(logits)}

    def state(self, model) -> dict[str, np.ndarray]:
        """Every canonical tensor (parameters and running statistics), torch layout, float64."""
        return {
            name: FROM_CHANNELS_LAST[t](self._numpy(var[...])) for name, var, t in self.weight_table(model)
        }

    def _result(self, model, loss, out, grads) -> PassResult:
        nnx = self.nnx
        # The gradient state mirrors the model, so the weight table read on it finds each gradient.
        grad_model = nnx.merge(nnx.graphdef(model), grads, nnx.state(model, nnx.Not(nnx.Param)))
        named = {
            name: FROM_CHANNELS_LAST[t](self._numpy(var[...]))
            for name, var, t in self.weight_table(grad_model)
            if not is_running_stat(name)
        }
        logits, stages = split_stages(out, model.config, self._numpy, nhwc=True)
        return PassResult(self._numpy(logits), float(loss), named, self.state(model), stages)

    def forward_backward(self, model, x, labels, train) -> PassResult:
        """Logits, mean cross-entropy and its gradients w.r.t. every canonical parameter."""
        model.train() if train else model.eval()
        loss, out, grads = self._run(_pass, model, model, self._input(x), self.jnp.asarray(labels))
        return self._result(model, loss, out, grads)

    def full_fp32(self):
        """Full fp32 convs and matmuls while the context is open (JAX on GPU would use TF32)."""
        return self.rf.full_fp32()

    def sgd_steps(self, model, x, labels, sgd: SGD) -> tuple[PassResult, dict[str, np.ndarray]]:
        """``sgd.steps`` training-mode steps of ``resnext_flax.train.sgd`` (torch's update), fresh state."""
        model.train()
        optimizer = self._optimizer(model, sgd)
        x, labels = self._input(x), self.jnp.asarray(labels)
        first = None
        for _ in range(sgd.steps):
            loss, out, grads = self._run(_step, (model, optimizer), model, x, labels)
            if first is None:
                # The pass and the update are one compiled function, so the parameters have moved
                # by now: the first result's state holds the running statistics the pass left.
                first = self._result(model, loss, out, grads)
                first.state = {k: v for k, v in first.state.items() if is_running_stat(k)}
        return first, self.state(model)


# The compiled functions: pure in (graphdef, state, ...) -> (..., new state), so jax.jit takes them as
# they are; the model's mode (train/eval) is in its graphdef, so each mode compiles once.


def _forward(graphdef, state, x):
    from flax import nnx

    model = nnx.merge(graphdef, state)
    return model.forward_stages(x), nnx.state(model)


def _value_and_grads(model, x, labels):
    """(loss, every stage's output with the logits, grads)."""
    from flax import nnx

    from resnext_flax.train import cross_entropy

    def loss_fn(m):
        out = m.forward_stages(x)
        return cross_entropy(out["logits"], labels), out

    (loss, out), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    return loss, out, grads


def _pass(graphdef, state, x, labels):
    """(loss, stage outputs with logits, grads, state); in train mode BN's running statistics move."""
    from flax import nnx

    model = nnx.merge(graphdef, state)
    return *_value_and_grads(model, x, labels), nnx.state(model)


def _step(graphdef, state, x, labels):
    """One SGD step: the pass of :func:`_pass`, then the optimizer's update, in one function."""
    from flax import nnx

    model, optimizer = nnx.merge(graphdef, state)
    loss, out, grads = _value_and_grads(model, x, labels)
    optimizer.update(model, grads)
    return loss, out, grads, nnx.state((model, optimizer))
