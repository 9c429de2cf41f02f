"""What the commands print is what a user can act on: no log line from a library about something the
project has already handled, in a subprocess with its output to a pipe, as a user sees it."""

import os
import subprocess
import sys

import numpy as np
import torch

from resnext_spec import ArchConfig, random_weights

# TensorFlow's C++ runtime says this when its CPU kernels refuse a grouped conv's gradient, which the
# project probes for and then computes its own way (resnext_keras.grouped_conv).
HANDLED = ("Local rendezvous is aborting", "INVALID_ARGUMENT", "Gradients for grouped convolutions")


def run(code: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(code, capture_output=True, text=True, env=env, timeout=600)


def test_a_keras_training_step_on_tensorflow_prints_no_refused_kernel():
    step = (
        "import numpy as np, tensorflow as tf\n"
        "from resnext_keras.grouped_conv import tf_grouped_conv\n"
        "x = tf.Variable(np.ones((1, 4, 4, 4), np.float32))\n"
        "w = tf.Variable(np.ones((3, 3, 2, 4), np.float32))\n"
        "with tf.GradientTape() as tape:\n"
        "    y = tf.reduce_sum(tf_grouped_conv(x, w, 2, 1))\n"
        "print([float(tf.reduce_sum(g)) for g in tape.gradient(y, [x, w])])\n"
    )
    done = run([sys.executable, "-c", step])
    assert done.returncode == 0, done.stderr
    assert not [h for h in HANDLED if h in done.stderr], done.stderr


def test_port_verify_into_keras_prints_no_refused_kernel(tmp_path):
    config = ArchConfig(layers=(1, 1), cardinality=2, base_width=4, stem="cifar", num_classes=3)
    weights = random_weights(config, "c", seed=0)
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, tmp_path / "m.pth")
    done = run(
        [sys.executable, "-m", "resnext_cli", "port", str(tmp_path / "m.pth"), str(tmp_path / "m.weights.h5"),
         "--verify", "--stride-on", "3x3"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not [h for h in HANDLED if h in done.stderr], done.stderr
