"""Robust rotation averaging for a fixed rig seen over many frames.

Each solved frame f gives, for the cameras that saw the subject there, weak-camera rotations
``R_fc`` (C, 3, 3) relative to that frame's own reference (row vectors: camera c sees ``X @ R_fc``).
A fixed rig has one rotation ``R_c`` per camera, so ``R_c = Q_f R_fc`` for an unknown per-frame
rotation ``Q_f`` (the frame's reference axes in the rig's). :func:`average_rig_rotations` finds the
``R_c`` (camera ``anchor`` at the identity) and the ``Q_f`` by alternating robust means on SO(3):
``Q_f = mean_c R_c R_fc^T`` and ``R_c = mean_f Q_f R_fc``. Each mean is the geodesic L1 mean
(Weiszfeld's iteration in the tangent space, started at the chordal mean), so a frame whose
solution is wrong for one camera (a left/right swap, a depth flip) pulls on that camera's mean
with a bounded force rather than one growing with its error. Views far from the consensus are
then reported as outliers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ..geometry import matrix_to_rodrigues, rodrigues_to_matrix

F64 = NDArray[np.float64]

__all__ = ["RigRotations", "average_rig_rotations", "chordal_mean", "geodesic_median", "rotation_angles"]

#: Weiszfeld iterations of one geodesic median, and the step (radians) below which it stops.
_MEDIAN_ITERATIONS = 50
_MEDIAN_TOLERANCE = 1e-10
#: Alternations of the frame and camera means.
_ROUNDS = 10


def rotation_angles(rotation: F64) -> F64:
    """(..., 3, 3) rotations -> (...,) their angles in radians, in [0, pi] (atan2 of the sine from the
    antisymmetric part and the cosine from the trace: accurate near 0 and pi)."""
    cosine = (np.trace(rotation, axis1=-2, axis2=-1) - 1.0) / 2.0
    sine = np.linalg.norm(rotation - np.swapaxes(rotation, -1, -2), axis=(-2, -1)) / (2.0 * np.sqrt(2.0))
    return np.arctan2(sine, cosine)


def _project_to_rotation(matrix: F64) -> F64:
    """(..., 3, 3) -> the nearest proper rotations in the Frobenius norm (SVD, det fixed to +1)."""
    u, _, vt = np.linalg.svd(matrix)
    sign = np.sign(np.linalg.det(u @ vt))
    u = u.copy()
    u[..., :, 2] *= np.where(sign == 0, 1.0, sign)[..., None]
    return u @ vt


def chordal_mean(rotations: F64, weights: F64 | None = None) -> F64:
    """(..., N, 3, 3) rotations, optional (..., N) weights >= 0 -> (..., 3, 3): the rotation nearest
    to their weighted sum (the chordal L2 mean)."""
    w = np.ones(rotations.shape[:-2]) if weights is None else weights
    return _project_to_rotation(np.einsum("...n,...nab->...ab", w, np.nan_to_num(rotations)))


def geodesic_median(rotations: F64, mask: NDArray[np.bool_] | None = None, start: F64 | None = None) -> F64:
    """(..., N, 3, 3) rotations, optional (..., N) mask of the ones to use (at least one per set) ->
    (..., 3, 3): each set's geodesic L1 mean, the rotation M minimising ``sum_n angle(M^T R_n)``, by
    Weiszfeld's iteration in the tangent space from ``start`` (default the chordal mean)."""
    keep = np.ones(rotations.shape[:-2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    rotations = np.where(keep[..., None, None], rotations, np.eye(3))
    mean = chordal_mean(rotations, keep.astype(np.float64)) if start is None else np.array(start, dtype=np.float64)
    for _ in range(_MEDIAN_ITERATIONS):
        tangent = matrix_to_rodrigues(np.swapaxes(mean, -1, -2)[..., None, :, :] @ rotations)  # products stay rotations
        distance = np.linalg.norm(tangent, axis=-1)
        weight = np.where(keep, 1.0 / np.maximum(distance, 1e-9), 0.0)
        step = (weight[..., None] * tangent).sum(axis=-2) / weight.sum(axis=-1)[..., None]
        mean = mean @ rodrigues_to_matrix(step)
        if np.linalg.norm(step, axis=-1).max() < _MEDIAN_TOLERANCE:
            break
    return _project_to_rotation(mean)


class RigRotations(NamedTuple):
    """The rig's rotations and each frame's reference axes, from :func:`average_rig_rotations`."""

    rotation: F64  #: (C, 3, 3) each camera's rotation, row vectors (``X @ R_c``); the anchor's is I
    frame_rotation: F64  #: (F, 3, 3) ``Q_f``: frame f's reference axes in the rig's; NaN for frames not solved
    residual: F64  #: (F, C) radians: ``angle((Q_f R_fc)^T R_c)``, how far each view is from the rig; NaN if unused
    anchor: int  #: the camera whose rotation is the identity


def average_rig_rotations(rotations: F64, used: NDArray[np.bool_], anchor: int | None = None) -> RigRotations:
    """Robustly average per-frame weak-camera rotations into one rotation per camera of a fixed rig.

    Args:
        rotations: (F, C, 3, 3) each frame's camera rotations relative to its own reference
            (row vectors); anything (NaN included) where ``used`` is False.
        used: (F, C) bool: the views each frame was solved with (at least two per frame that counts).
        anchor: the camera fixed at the identity (default: the one used in most frames).

    Returns:
        A :class:`RigRotations`. ValueError when a camera shares no frame with the others (its
        rotation relative to them is unobserved).
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    used = np.asarray(used, dtype=bool)
    used = used & (used.sum(axis=1, keepdims=True) >= 2)
    frames, cameras = used.shape
    if rotations.shape != (frames, cameras, 3, 3):
        raise ValueError(f"rotations: expected shape {(frames, cameras, 3, 3)}, got {rotations.shape}")
    anchor = int(np.argmax(used.sum(axis=0))) if anchor is None else int(anchor)
    known = np.zeros(cameras, dtype=bool)
    rig = np.repeat(np.eye(3)[None], cameras, axis=0)
    known[anchor] = True
    # Seed: cameras seen with a known camera get the median of the relative rotations R_fk^T R_fc,
    # repeated until no camera is reached any more (cameras never filmed beside the anchor chain on).
    while not known.all():
        reached = False
        for c in np.flatnonzero(~known):
            estimates = []
            for k in np.flatnonzero(known):
                both = used[:, k] & used[:, c]
                if both.any():
                    relative = np.swapaxes(rotations[both, k], -1, -2) @ rotations[both, c]
                    estimates.append(rig[k] @ relative)
            if estimates:
                rig[c] = geodesic_median(np.concatenate(estimates))
                known[c] = True
                reached = True
        if not reached:
            missing = [int(c) for c in np.flatnonzero(~known)]
            raise ValueError(f"used: camera(s) {missing} never solved in a frame with the other cameras; their "
                             "rotations relative to the rig are unobserved")
    solved = used.any(axis=1)
    frame_rotation = np.full((frames, 3, 3), np.nan)
    rows = np.flatnonzero(solved)
    start = None
    for _ in range(_ROUNDS):
        candidates = rig[None] @ np.swapaxes(rotations[rows], -1, -2)  # (F', C, 3, 3): R_c R_fc^T
        frame_rotation[rows] = geodesic_median(candidates, used[rows], start)
        start = frame_rotation[rows]
        previous = rig.copy()
        mapped = frame_rotation[rows][:, None] @ rotations[rows]  # (F', C, 3, 3): Q_f R_fc
        others = np.arange(cameras) != anchor
        rig[others] = geodesic_median(np.swapaxes(mapped[:, others], 0, 1), used[rows][:, others].T, rig[others])
        if np.max(rotation_angles(np.swapaxes(previous, -1, -2) @ rig)) < 1e-10:
            break
    residual = np.full((frames, cameras), np.nan)
    mapped = frame_rotation[rows][:, None] @ rotations[rows]
    angles = rotation_angles(np.swapaxes(np.where(used[rows][..., None, None], mapped, np.eye(3)), -1, -2) @ rig[None])
    residual[rows] = np.where(used[rows], angles, np.nan)
    return RigRotations(rig, frame_rotation, residual, anchor)
