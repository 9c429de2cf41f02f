"""The Flax runner: NCHW numpy in, NHWC to the model."""

from __future__ import annotations

import numpy as np

from resnext_spec import ArchConfig, is_running_stat
from resnext_spec.errors import ConfigError
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import FROM_CHANNELS_LAST

from .runner_base import SGD, PassResult, check_dtype


class FlaxRunner:
    framework = "flax"

    def __init__(
        self, device: str = "cpu", jit: str = "auto", conv_impl: str = "auto", dtype: str = "float32"
    ) -> None:
        """``jit``: "always", "never", or "auto" = form (c) only.

        Explicit paths make XLA compile times explode (resnext50_32x4d form (a):
        877 s to compile one gradient pass on 2 CPU cores, 27 s to run it eagerly),
        and the harness runs each build only once or twice. ``dtype`` "float64"
        needs JAX's x64 mode on while the runner works (``runner_base.jax_x64``).
        """
        if jit not in ("auto", "always", "never"):
            raise ConfigError(f"flax jit must be 'auto', 'always' or 'never', got {jit!r}")
        self.jit = jit
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

        def loss_and_grads(model, x, labels):
            """(loss, logits, grads); in train mode the BN running statistics are updated in place."""

            def loss_fn(m):
                logits = m(x)
                return train.cross_entropy(logits, labels), logits

            (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
            return loss, logits, grads

        def update(optimizer, model, grads) -> None:
            optimizer.update(model, grads)

        self._eager_loss_and_grads, self._compiled_loss_and_grads = loss_and_grads, nnx.jit(loss_and_grads)
        self._eager_update, self._compiled_update = update, nnx.jit(update)
        # (compute dtype, parameter dtype): bfloat16 is mixed precision, float32 parameters.
        self.dtypes = {
            "float32": (jnp.float32, jnp.float32),
            "float64": (jnp.float64, jnp.float64),
            "bfloat16": (jnp.bfloat16, jnp.float32),
        }[dtype]

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

    def _jit(self, model) -> bool:
        return self.jit == "always" or (self.jit == "auto" and model.form == "c")

    def _input(self, x: np.ndarray):
        return self.jnp.asarray(x.transpose(0, 2, 3, 1), dtype=self.dtypes[0])

    @staticmethod
    def _numpy(a) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def logits(self, model, x) -> np.ndarray:
        # One forward pass. Eagerly, JAX compiles each new op on its own: for plain convs that
        # costs less than compiling the whole network (resnet152 at 32 px, batch 2: 6.2 s eager,
        # 8.5 s jit), for the patches lowering's many small ops far more (resnext50_32x4d 8.9 s
        # eager, 2.3 s jit; resnext101_64x4d 9.1 / 5.2), so "auto" compiles grouped form (c).
        grouped = model.form == "c" and model.config.cardinality > 1
        with self.jax.default_device(self.device):
            model.eval()
            nhwc = self._input(x)
            jit = self.jit == "always" or (self.jit == "auto" and grouped)
            out = self.train.forward(model, nhwc) if jit else model(nhwc)
            return self._numpy(out)

    def state(self, model) -> dict[str, np.ndarray]:
        """Every canonical tensor (parameters and running statistics), torch layout, float64."""
        return {
            name: FROM_CHANNELS_LAST[t](self._numpy(var[...])) for name, var, t in self.weight_table(model)
        }

    def _result(self, model, loss, logits, grads) -> PassResult:
        nnx = self.nnx
        # The gradient state mirrors the model, so the weight table read on it finds each gradient.
        grad_model = nnx.merge(nnx.graphdef(model), grads, nnx.state(model, nnx.Not(nnx.Param)))
        named = {
            name: FROM_CHANNELS_LAST[t](self._numpy(var[...]))
            for name, var, t in self.weight_table(grad_model)
            if not is_running_stat(name)
        }
        return PassResult(self._numpy(logits), float(loss), named, self.state(model))

    def _loss_and_grads(self, model):
        # jit=False runs op by op: the same arithmetic, and far quicker for a single
        # pass of the explicit-path forms (see __init__).
        return self._compiled_loss_and_grads if self._jit(model) else self._eager_loss_and_grads

    def forward_backward(self, model, x, labels, train) -> PassResult:
        """Logits, mean cross-entropy and its gradients w.r.t. every canonical parameter."""
        with self.jax.default_device(self.device):
            model.train() if train else model.eval()
            loss, logits, grads = self._loss_and_grads(model)(model, self._input(x), self.jnp.asarray(labels))
            return self._result(model, loss, logits, grads)

    def full_fp32(self):
        """Full fp32 convs and matmuls while the context is open (JAX on GPU would use TF32)."""
        return self.rf.full_fp32()

    def sgd_steps(self, model, x, labels, sgd: SGD) -> tuple[PassResult, dict[str, np.ndarray]]:
        """``sgd.steps`` training-mode steps of ``resnext_flax.train.sgd`` (torch's update), fresh state."""
        t = self.train
        with self.jax.default_device(self.device):
            model.train()
            optimizer = t.make_optimizer(
                model, lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay
            )
            update = self._compiled_update if self._jit(model) else self._eager_update
            x, labels = self._input(x), self.jnp.asarray(labels)
            first = None
            for _ in range(sgd.steps):
                loss, logits, grads = self._loss_and_grads(model)(model, x, labels)
                if first is None:
                    first = self._result(model, loss, logits, grads)
                update(optimizer, model, grads)
            return first, self.state(model)
