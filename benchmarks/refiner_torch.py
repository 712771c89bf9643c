"""The iterative refiner (IR) in batched torch (float64, autograd): the benchmarks' torch baseline.

The objective is the package's own :func:`metapose_geom.nn.objective.refiner_objective` (the torch
twin of the compiled objective, design.md section 3), and the loop is
:func:`metapose_geom.nn.objective.keras_adam_refine`: it takes any number of leading batch
dimensions, so all B frames run as one batch, each step one forward pass and one
``torch.autograd.grad`` of the summed objective (frames are independent, so that is every frame's
own gradient), then the Keras-form Adam update on the whole (B, P) tensor. Bone term: none.

The thread count is the caller's business (the benchmark sets ``torch.set_num_threads(1)`` for the
single-thread comparison). torch is imported here, not by the benchmarks' conftest, so the kernel
benchmarks never load it.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from metapose_geom.nn.objective import keras_adam_refine

F64 = NDArray[np.float64]

__all__ = ["refine"]


def refine(
    mixtures: F64,
    x0: F64,
    steps: int = 100,
    learning_rate: float = 1e-2,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-7,
) -> tuple[F64, F64]:
    """mixtures (B, C, J, K, 4), x0 (B, P) float64 numpy -> x (B, P), objective (B,) as numpy.

    The conversions are zero-copy (``torch.from_numpy`` / ``Tensor.numpy``); the timing is the
    torch work.
    """
    result = keras_adam_refine(
        torch.from_numpy(np.ascontiguousarray(mixtures, dtype=np.float64)),
        torch.from_numpy(np.ascontiguousarray(x0, dtype=np.float64)),
        steps=steps,
        learning_rate=learning_rate,
        beta1=beta1,
        beta2=beta2,
        epsilon=epsilon,
    )
    return result["x"].numpy(), result["objective"].numpy()
