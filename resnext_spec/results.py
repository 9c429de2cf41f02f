"""The result type every framework's training helpers return, so the parity harness reads them alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PassResult:
    """One forward + backward pass, in float64 numpy, keyed by canonical names of the model's form.

    ``grads`` holds the parameters only (running statistics have no gradient);
    ``state`` holds every canonical tensor after the pass, so a training-mode
    pass shows the running statistics it updated.
    """

    logits: np.ndarray
    loss: float
    grads: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
