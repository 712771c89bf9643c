"""Pose-error metrics as MetaPose computes them, on the compiled core.

All take a prediction and a ground truth of shape (..., J, 3) in the same units (mm when the
ground truth is in mm) and reduce over joints. Errors are Euclidean distances.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import as_float64, check_bool, check_number
from ._core_loader import core as _core
from .geometry import F64, ScaleMode, _scale_mode

__all__ = ["nmpjpe", "pck", "pmpjpe"]


def pmpjpe(prediction: ArrayLike, ground_truth: ArrayLike, scale: ScaleMode = "norm_ratio", per_joint: bool = False) -> F64:
    """Procrustes-aligned mean per-joint position error: (..., J, 3), (..., J, 3) -> (...) or (..., J).

    The prediction is aligned to the ground truth by :func:`metapose_geom.geometry.procrustes`
    (proper rotation; ``scale="norm_ratio"`` as the original, or ``"umeyama"``), then the
    per-joint distances are averaged (or returned, with ``per_joint=True``).
    """
    per_joint = check_bool(per_joint, "per_joint")
    errors = _core.pmpjpe_per_joint(
        as_float64(prediction, "prediction"), as_float64(ground_truth, "ground_truth"), _scale_mode(scale)
    )
    return errors if per_joint else _mean_over_joints(errors)


def _mean_over_joints(errors: F64) -> F64:
    """(..., J) -> (...) mean that does not overflow for errors near the float64 limit."""
    largest = errors.max(axis=-1, keepdims=True)
    safe = np.where(largest > 0, largest, 1.0)
    return (safe * (errors / safe).mean(axis=-1, keepdims=True))[..., 0]


def nmpjpe(prediction: ArrayLike, ground_truth: ArrayLike, mirror_fix: bool = False, per_joint: bool = False) -> F64:
    """Normalised mean per-joint position error: (..., J, 3), (..., J, 3) -> (...) or (..., J).

    Both poses are given in the same camera frame (camera 0's); both are centred on their mean
    joint, the prediction is rescaled by the norm ratio ``|gt| / |pred|`` (Frobenius), and the
    per-joint distances are averaged. With ``mirror_fix`` the better of the prediction and its
    depth-mirrored copy (z negated) is taken, by mean error.
    """
    per_joint = check_bool(per_joint, "per_joint")
    errors = _nmpjpe_per_joint(prediction, ground_truth, mirror_fix)
    return errors if per_joint else _mean_over_joints(errors)


def pck(prediction: ArrayLike, ground_truth: ArrayLike, threshold: float = 150.0, mirror_fix: bool = False) -> F64:
    """Fraction of joints whose NMPJPE-aligned error is below ``threshold``: (..., J, 3) x2 -> (...) in [0, 1]."""
    threshold = check_number(threshold, "threshold", low=0.0, low_open=True)
    return (_nmpjpe_per_joint(prediction, ground_truth, mirror_fix) < threshold).mean(axis=-1)


def _nmpjpe_per_joint(prediction: ArrayLike, ground_truth: ArrayLike, mirror_fix: bool) -> F64:
    mirror_fix = check_bool(mirror_fix, "mirror_fix")
    return _core.nmpjpe_per_joint(as_float64(prediction, "prediction"), as_float64(ground_truth, "ground_truth"), mirror_fix)
