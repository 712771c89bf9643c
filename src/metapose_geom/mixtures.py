"""Per-joint 2D evidence as spherical Gaussian mixtures: the validation rule, keypoints to
mixtures, and the mixture mean.

A mixture array has last axis ``[weight, mu_x, mu_y, variance]`` (variance, not sigma) and shape
``(..., K, 4)``; one frame's evidence is ``(C, J, K, 4)`` in box units (``design.md``, section 2).
Weights need not sum to one (the likelihood normalises them), but each joint's must be positive.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64

F64 = NDArray[np.float64]

#: Variance (box units squared) of the component that stands for a missing joint: one box wide.
UNINFORMATIVE_VARIANCE = 1.0
#: Spread (box units) of a keypoint detected with confidence 1; it grows as 1 / confidence.
KEYPOINT_SIGMA = 0.01
#: Smallest variance (box units squared) a component may have: below it ``1 / (2 variance)``
#: overflows float64 (the compiled core's limit too).
MIN_VARIANCE = 1e-300

__all__ = ["KEYPOINT_SIGMA", "MIN_VARIANCE", "UNINFORMATIVE_VARIANCE", "check_mixtures", "keypoints_to_mixtures",
           "missing_joints", "mixture_mean"]


def check_mixtures(mixtures: ArrayLike, name: str = "mixtures", positive_total: bool = True,
                   joint_names: tuple[str, ...] | None = None) -> F64:
    """The one validation rule for mixtures (..., K, 4): float64, finite, weights >= 0, variances
    >= :data:`MIN_VARIANCE`, and (``positive_total``) a positive total weight per joint. Returns
    the float64 array (a view of the input where no conversion was needed); raises ValueError
    naming ``name`` and where the first bad mixture is: for a (C, J, K, 4) frame the camera and
    the joint (``joint_names[j]`` where given), for (B, C, J, K, 4) frames also the frame, for
    other shapes its index."""
    array = as_float64(mixtures, name)
    if array.ndim < 2 or array.shape[-1] != 4 or array.shape[-2] == 0:
        raise ValueError(f"{name}: expected shape (..., K, 4) with K >= 1, got {array.shape}")

    def first(bad: NDArray[np.bool_]) -> str | None:
        """' at frame b, camera c, joint j (name)' of the first mixture (...,) where ``bad``, or None."""
        found = np.argwhere(bad)
        return None if not len(found) else _location(tuple(int(i) for i in found[0]), joint_names)

    where = first(~np.isfinite(array).all(axis=(-2, -1)))
    if where:
        raise ValueError(f"{name}: contains NaN or inf{where}")
    where = first((array[..., 0] < 0).any(axis=-1))
    if where:
        raise ValueError(f"{name}: weights must be >= 0{where}")
    variances = array[..., 3]
    where = first((variances < MIN_VARIANCE).any(axis=-1))
    if where:
        smallest = float(variances.min())
        raise ValueError(f"{name}: variances must be > 0 (at least {MIN_VARIANCE:g}, below which 1 / (2 variance) "
                         f"overflows), got {smallest:g}{where}")
    if positive_total:
        where = first(array[..., 0].sum(axis=-1) <= 0)
        if where:
            raise ValueError(f"{name}: zero total weight{where}")
    return array


def _location(index: tuple[int, ...], joint_names: tuple[str, ...] | None) -> str:
    """' at [frame b, ]camera c, joint j (name)' for the index of a (C, J) or (B, C, J) mixture,
    else ' at index (...)'."""
    if len(index) not in (2, 3):
        return f" at index {index}"
    *frame, camera, joint = index
    label = f" ({joint_names[joint]})" if joint_names is not None and joint < len(joint_names) else ""
    return " at " + "".join(f"frame {i}, " for i in frame) + f"camera {camera}, joint {joint}{label}"


def mixture_mean(mixtures: F64) -> F64:
    """(..., K, 4) -> (..., 2): each mixture's mean ``sum_k w_k mu_k / sum_k w_k``.

    The original's "mean heatmap" point. Expects checked mixtures (:func:`check_mixtures`)."""
    weights = mixtures[..., 0:1]
    return (weights * mixtures[..., 1:3]).sum(axis=-2) / weights.sum(axis=-2)


def missing_joints(mixtures: F64) -> NDArray[np.bool_]:
    """(..., K, 4) -> (...,): True where no component is sharper than one box
    (``UNINFORMATIVE_VARIANCE``): a missing keypoint, a blank heatmap; no real evidence."""
    return (mixtures[..., 3] >= UNINFORMATIVE_VARIANCE).all(axis=-1)


def keypoints_to_mixtures(points: F64, confidences: F64) -> F64:
    """points (..., 2) in box units (NaN: missing), confidences (...) in [0, 1] -> mixtures (..., 1, 4).

    Each keypoint becomes one component at the keypoint with standard deviation
    ``KEYPOINT_SIGMA / confidence`` box units, capped at one box. A keypoint with confidence 0 or
    a NaN coordinate is missing: its component sits at the box centre (0.5, 0.5) with variance
    ``UNINFORMATIVE_VARIANCE``, so it barely pulls a solution. Inputs are assumed checked
    (finite confidences in [0, 1], no inf)."""
    missing = np.isnan(points).any(axis=-1) | (confidences == 0)
    sigma = np.minimum(KEYPOINT_SIGMA / np.maximum(confidences, 1e-12), np.sqrt(UNINFORMATIVE_VARIANCE))
    mixtures = np.empty(points.shape[:-1] + (1, 4))
    mixtures[..., 0, 0] = 1.0
    mixtures[..., 0, 1:3] = np.where(missing[..., None], 0.5, points)
    mixtures[..., 0, 3] = np.where(missing, UNINFORMATIVE_VARIANCE, sigma**2)
    return mixtures
