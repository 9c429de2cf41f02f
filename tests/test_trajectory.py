"""The trajectory check: K SGD steps with an lr drop in all nine builds, judged step by step
against torch, and a fault one step from zero momentum cannot show is caught."""

import numpy as np
import pytest
from helpers import TINY

from parity import run_parity
from parity.trajectory import STEPS
from resnext_spec.frameworks import FRAMEWORKS

# Nine builds stepped K times each (about 90 s on 2 cores): the full tier's. The fast tier's
# optimizer proof is the sgd check (three steps, momentum carried) of the shared tiny runs.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result():
    return run_parity(["tiny"], configs={"tiny": TINY}, checks=["trajectory"], image_size=16, batch=4)


def test_every_build_follows_torchs_trajectory(result):
    rows = [r for r in result.results if r.check == "trajectory"]
    assert {(r.framework, r.form) for r in rows} == {(fw, f) for fw in FRAMEWORKS for f in "abc"}
    assert {r.quantity for r in rows} == {"loss per step", "parameters", "running stats"}
    failed = [(r.framework, r.form, r.quantity, r.error, r.bound) for r in rows if not r.passed]
    assert not failed


def test_loss_curves_are_kept_for_the_plot(result):
    curves = result.meta["trajectories"]["tiny"]
    assert len(curves) == 1 + 3 * len(FRAMEWORKS)
    assert all(len(c) == STEPS for c in curves.values())
    truth = np.array(curves["torch (c) float64"])
    np.testing.assert_allclose(curves["torch (c)"], truth, rtol=1e-4)  # fp32 vs float64 torch


def test_keras_stock_sgd_is_caught(monkeypatch):
    """Keras's own SGD decays decoupled and keeps lr-scaled momentum: the one-step sgd check
    passes it (zero momentum, one rate); six steps across an lr drop do not."""
    import keras

    import resnext_keras

    class StockSGD(resnext_keras.KerasEngine):
        def __init__(self, config, form, weights, recipe, conv_impl="auto", devices=None):
            super().__init__(config, form, weights, recipe, conv_impl, devices)
            self.optimizer = keras.optimizers.SGD(
                recipe.lr, recipe.momentum, weight_decay=recipe.weight_decay
            )
            self.model.compile(optimizer=self.optimizer, loss=self.model.loss)
            self.optimizer.build(self.model.trainable_variables)

        def train_step(self, x, y, lr):
            self.optimizer.learning_rate = lr
            return float(self.model.train_on_batch(x, y.astype(np.int32), return_dict=True)["loss"]), 0

    monkeypatch.setattr(resnext_keras, "KerasEngine", StockSGD)
    result = run_parity(
        ["tiny"],
        configs={"tiny": TINY},
        frameworks=["torch", "keras"],
        forms=["c"],
        checks=["sgd", "trajectory"],
        image_size=16,
        batch=4,
    )
    keras_rows = [r for r in result.results if r.framework == "keras"]
    assert all(r.passed for r in keras_rows if r.check == "sgd")
    caught = {r.quantity for r in keras_rows if r.check == "trajectory" and not r.passed}
    assert "parameters" in caught
    assert all(r.passed for r in result.results if r.framework == "torch")


def test_loss_curves_plot_is_written_beside_the_ratio_plot(result, tmp_path):
    from parity.report import plot_trajectories

    out = plot_trajectories(result, tmp_path / "report.png")
    assert out == tmp_path / "report-trajectory.png"
    assert out.read_bytes()[:4] == b"\x89PNG"
