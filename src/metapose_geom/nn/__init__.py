"""Torch side of metapose-geom: differentiable, batched geometry and the refiner objective.

Importing this package imports torch (``import metapose_geom`` alone never does). Every
function takes any number of leading batch dimensions and float64 or float32 tensors; in
float64 they equal the compiled core (:mod:`metapose_geom.geometry`, the C++ refiner).
"""

from __future__ import annotations

from .geometry import MIXTURE_WEIGHT_FLOOR, mixture_log_likelihood, project_weak, rot6d_to_matrix, softplus
from .objective import (
    RefineResult,
    bone_lengths,
    keras_adam_refine,
    pack_solution,
    refiner_objective,
    solution_size,
    unpack_solution,
)

__all__ = [
    "MIXTURE_WEIGHT_FLOOR",
    "RefineResult",
    "bone_lengths",
    "keras_adam_refine",
    "mixture_log_likelihood",
    "pack_solution",
    "project_weak",
    "refiner_objective",
    "rot6d_to_matrix",
    "softplus",
    "solution_size",
    "unpack_solution",
]
