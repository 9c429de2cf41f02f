"""The Keras runner: NCHW numpy in, NHWC to the model. The Keras backend is fixed per process.

Gradients are backend-specific in Keras 3 (``tf.GradientTape``, ``jax.grad`` over
``stateless_call``, torch autograd); everything else is shared.
"""

from __future__ import annotations

import os
import time
import weakref

import numpy as np

from resnext_spec import ArchConfig, is_running_stat
from resnext_spec.errors import ConfigError
from resnext_spec.frameworks import KERAS_BACKENDS
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import FROM_CHANNELS_LAST

from .runner_base import (
    SGD,
    PassResult,
    UnsupportedPrecision,
    check_compile,
    check_dtype,
    compiles,
    split_stages,
)

# The Keras dtype policy of each runner dtype.
POLICIES = {"float32": "float32", "float64": "float64", "bfloat16": "mixed_bfloat16"}


class KerasRunner:
    framework = "keras"

    def __init__(
        self,
        backend: str | None = None,
        conv_impl: str = "auto",
        dtype: str = "float32",
        compile: str = "auto",
    ) -> None:
        """``compile``: "auto", "always" or "never" (``runner_base.compiles``).

        Compiled as Keras's own ``fit`` compiles its step by default: a
        ``tf.function`` graph on TensorFlow (no XLA: Keras leaves it off on CPU),
        ``jax.jit`` on JAX; on torch Keras runs eagerly by default, and so does
        this runner. "never" runs the same code op by op, for debugging.
        """
        self.compile = check_compile(compile)
        self.compile_s = 0.0  # seconds spent tracing and compiling, summed; the harness reads it
        self.conv_impl = check_conv_impl(conv_impl)
        self.dtype = check_dtype(dtype)
        if backend is not None:
            if backend not in KERAS_BACKENDS:
                raise ConfigError(f"unknown Keras backend {backend!r}; choose from {list(KERAS_BACKENDS)}")
            loaded = _loaded_backend()
            if loaded is not None and loaded != backend:
                raise ConfigError(
                    f"Keras is already running on {loaded!r} in this process; its backend is fixed "
                    f"when keras is first imported (set KERAS_BACKEND={backend} before starting)"
                )
            os.environ["KERAS_BACKEND"] = backend
        import keras

        import resnext_keras
        from resnext_keras.weights import weight_table

        self.keras, self.rk, self.weight_table = keras, resnext_keras, weight_table
        # model -> its stages model (``resnext_keras.stages_model``), which every pass runs: the same
        # variables, with every stage's output beside the logits.
        self._nets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.backend = keras.backend.backend()
        if dtype == "float64" and self.backend != "tensorflow":
            # Measured on JAX with x64 on: BN and average pooling 2.4e-7 / 3.6e-8 off float64.
            raise UnsupportedPrecision(
                f"Keras on {self.backend} computes parts of a float64 model in float32: its type "
                "promotion (keras.src.backend.common.dtypes.result_type) turns 64-bit results into "
                "32-bit on every backend but TensorFlow; run float64 with KERAS_BACKEND=tensorflow, "
                "or leave keras out (--frameworks torch,flax)"
            )

    def build(self, config: ArchConfig, form: str):
        return self.rk.create_model(
            config=config, form=form, conv_impl=self.conv_impl, dtype=POLICIES[self.dtype]
        )

    def export(self, model) -> dict[str, np.ndarray]:
        return self.rk.export_weights(model)

    def load(self, model, weights: dict[str, np.ndarray]) -> None:
        self.rk.import_weights(model, weights)

    def count(self, model) -> int:
        return self.rk.count_params(model)

    def _input(self, x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return nhwc.astype(np.float64 if self.dtype == "float64" else np.float32)

    def _numpy(self, t) -> np.ndarray:
        # A copy: TensorFlow may hand out a view of a variable's buffer, which later steps change.
        # (Cast in numpy: a Keras cast to float64 would be truncated on JAX without x64 mode.)
        if "float16" in str(t.dtype):  # bfloat16 / float16: TensorFlow cannot hand these to numpy
            t = self.keras.ops.cast(t, "float32")
        return np.asarray(self.keras.ops.convert_to_numpy(t)).astype(np.float64)  # astype copies

    def compiled(self, model) -> bool:
        """JAX: by ``runner_base.compiles``. TensorFlow: only when asked ("always"): its eager ops run
        through TF's C++ fast path, and for the one to three calls a build makes, tracing costs more
        than it saves (resnext26_8x16d on 2 cores: form (a) 9.8 s eager, 27.4 s as tf.function, of
        which 10.5 s tracing; form (c) 4.0 / 8.0 s). torch: eager, as Keras runs it by default."""
        if self.backend == "tensorflow":
            return self.compile == "always"
        return self.backend == "jax" and compiles(self.compile, model.config, model.form)

    def runs_beside(self, config: ArchConfig, form: str) -> bool:
        """No: Keras builds run in the harness's own thread (TensorFlow and eager Keras are mostly
        Python between ops, which a second thread would only queue behind)."""
        return False

    def net(self, model):
        """The functional model every pass runs: ``model``'s layers, with every stage's output."""
        if model not in self._nets:
            self._nets[model] = self.rk.stages_model(model)
        return self._nets[model]

    def stages(self, model, x) -> dict[str, np.ndarray]:
        """Eval-mode outputs at every stage and the logits (maps NCHW): one forward pass."""
        x, net = self._input(x), self.net(model)
        if not self.compiled(model):
            out = net(x, training=False)
        elif self.backend == "tensorflow":
            import tensorflow as tf

            out = self._traced(tf.function(lambda x: net(x, training=False)), x)(x)
        else:

            def forward(tv, ntv, x):
                return net.stateless_call(tv, ntv, x, training=False)[0]

            state = [v.value for v in net.trainable_variables], [v.value for v in net.non_trainable_variables]
            out = self._jitted(forward, *state, x)(*state, x)
        logits, stages = split_stages(out, model.config, self._numpy, nhwc=True)
        return {**stages, "logits": self._numpy(logits)}

    def _traced(self, fn, *args):
        """A tf.function traced now for ``args``, its tracing time counted as compile time."""
        t0 = time.perf_counter()
        concrete = fn.get_concrete_function(*args)
        self.compile_s += time.perf_counter() - t0
        return concrete

    def _jitted(self, fn, *args):
        """``jax.jit(fn)`` compiled now for ``args``, its tracing and compile time counted."""
        import jax

        t0 = time.perf_counter()
        exe = jax.jit(fn).lower(*args).compile()
        self.compile_s += time.perf_counter() - t0
        return exe

    def state(self, model) -> dict[str, np.ndarray]:
        """Every canonical tensor (parameters and running statistics), torch layout, float64."""
        return {
            name: FROM_CHANNELS_LAST[t](self._numpy(var.value)) for name, var, t in self.weight_table(model)
        }

    def _steps(self, model, x: np.ndarray, labels: np.ndarray, train: bool, opt=None, steps: int = 1):
        """``steps`` passes, each followed by ``opt``'s update when given; the first pass's PassResult.

        Train mode updates the moving statistics. A compiled build runs each pass and
        its update as one compiled step. With ``opt``, the result's state holds the
        running statistics the first pass left (the parameters have moved by then).
        """
        net = self.net(model)
        variables = net.trainable_variables
        if opt is not None:
            opt.build(variables)  # its variables made before any graph is traced
        if not self.compiled(model):
            step = lambda x, labels: self._value_and_grads(net, x, labels, train)  # noqa: E731
        elif self.backend == "tensorflow":
            step = self._tf_step(net, x, labels, train, opt)
        else:
            step = self._jax_step(net, x, labels, train, opt)
        first = None
        for _ in range(steps):
            out, loss, grads = step(x, labels)
            if opt is not None and not self.compiled(model):
                opt.apply(grads, variables)
            if first is None:
                first = self._result(model, net, out, loss, grads)
                if opt is not None:
                    first.state = {k: v for k, v in first.state.items() if is_running_stat(k)}
        return first

    def _tf_step(self, net, x, labels, train: bool, opt):
        """The pass (and update) as one tf.function, traced now."""
        import tensorflow as tf

        def step(x, labels):
            out, loss, grads = self._value_and_grads(net, x, labels, train)
            if opt is not None:
                opt.apply(grads, net.trainable_variables)
            return out, loss, grads

        return self._traced(tf.function(step), x, labels)

    def _jax_step(self, net, x, labels, train: bool, opt):
        """The pass (and update) as one jax.jit of ``stateless_call``, compiled now; it writes the
        new values back into the model's (and optimizer's) variables after each call."""
        groups = [net.trainable_variables, net.non_trainable_variables, opt.variables if opt else []]

        def pure(tv, ntv, ov, x, labels):
            loss, out, grads, ntv = _jax_value_and_grads(net, tv, ntv, x, labels, train)
            if opt is not None:
                tv, ov = opt.stateless_apply(ov, grads, tv)
            return out, loss, grads, (tv, ntv, ov)

        def values():
            return [[v.value for v in g] for g in groups]

        exe = self._jitted(pure, *values(), x, labels)

        def step(x, labels):
            out, loss, grads, new = exe(*values(), x, labels)
            for g, vals in zip(groups, new, strict=True):
                for v, value in zip(g, vals, strict=True):
                    v.assign(value)
            return out, loss, grads

        return step

    def _value_and_grads(self, net, x: np.ndarray, labels: np.ndarray, train: bool):
        """(stage outputs with the logits, loss, grads in ``net``'s trainable-variable order) op by
        op; train mode updates the moving statistics."""
        variables = net.trainable_variables
        if self.backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                out = net(x, training=train)
                loss = cross_entropy(out["logits"], labels)
            return out, loss, tape.gradient(loss, variables)
        if self.backend == "jax":
            frozen = net.non_trainable_variables
            loss, out, grads, new_ntv = _jax_value_and_grads(
                net, [v.value for v in variables], [v.value for v in frozen], x, labels, train
            )
            for v, value in zip(frozen, new_ntv, strict=True):
                v.assign(value)
            return out, loss, grads
        if self.backend == "torch":
            import torch

            for v in variables:
                v.value.grad = None
            out = net(torch.as_tensor(x), training=train)
            loss = cross_entropy(out["logits"], torch.as_tensor(labels))
            loss.backward()
            return {k: v.detach() for k, v in out.items()}, loss.detach(), [v.value.grad for v in variables]
        raise NotImplementedError(f"no gradient code for the Keras backend {self.backend!r}")

    def _result(self, model, net, out, loss, grads) -> PassResult:
        index = {id(v): i for i, v in enumerate(net.trainable_variables)}
        named = {
            name: FROM_CHANNELS_LAST[t](self._numpy(grads[index[id(var)]]))
            for name, var, t in self.weight_table(model)
            if not is_running_stat(name)
        }
        logits, stages = split_stages(out, model.config, self._numpy, nhwc=True)
        return PassResult(self._numpy(logits), float(self._numpy(loss)), named, self.state(model), stages)

    def forward_backward(self, model, x, labels, train) -> PassResult:
        """Logits, mean cross-entropy and its gradients w.r.t. every canonical parameter."""
        return self._steps(model, self._input(x), np.asarray(labels), train)

    def full_fp32(self):
        """Full fp32 convs and matmuls while the context is open (JAX on GPU would use TF32)."""
        import resnext_keras

        return resnext_keras.full_fp32()

    def sgd_steps(self, model, x, labels, sgd: SGD) -> tuple[PassResult, dict[str, np.ndarray]]:
        """``sgd.steps`` training-mode steps of ``resnext_keras.TorchSGD`` (torch's update), fresh state.

        Keras's own ``SGD`` would not pass: its weight decay is decoupled, so from
        the second step on it moves differently from torch's.
        """
        opt = self.rk.TorchSGD(
            sgd.lr,
            sgd.momentum,
            coupled_weight_decay=sgd.weight_decay,
            lr_dtype="float64" if self.dtype == "float64" else None,
        )
        first = self._steps(model, self._input(x), np.asarray(labels), True, opt, sgd.steps)
        return first, self.state(model)


def _jax_value_and_grads(net, tv, ntv, x, labels, train: bool):
    """(loss, stage outputs with the logits, grads, new non-trainable values) of a stages model on
    JAX, through ``stateless_call``."""
    import jax

    def f(tv, ntv):
        out, new_ntv = net.stateless_call(tv, ntv, x, training=train)
        return cross_entropy(out["logits"], labels), (out, new_ntv)

    (loss, (out, new_ntv)), grads = jax.value_and_grad(f, has_aux=True)(tv, ntv)
    return loss, out, grads, new_ntv


def _loaded_backend() -> str | None:
    import sys

    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of integer labels, from logits, in the backend's own ops."""
    import keras

    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
