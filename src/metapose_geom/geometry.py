"""Geometry kernels of the compiled core: rotations, cameras, mixtures, Procrustes.

Every function takes float64 arrays with any number of leading batch dimensions
``...``; all arguments of one call share the same leading shape exactly (no
broadcasting). Array-likes of any real numeric dtype are converted to float64;
anything else (complex, bool, object, strings), a wrong trailing shape, NaN or
inf, an empty array or mismatched batch shapes raise :class:`ValueError` naming
the argument and what was expected.

Conventions (see ``design.md``):

* rotations are 3x3 matrices; the 6D representation is the first two *rows*
  ``[R00, R01, R02, R10, R11, R12]``, mapped back by Gram-Schmidt;
* a weak camera sees a pose ``X`` (J, 3) as ``scale * X @ R + shift`` (row
  vectors) and the image point is the first two coordinates;
* a perspective camera maps a world point ``X`` to the camera frame as
  ``R @ X + t`` (column vectors, as OpenCV), then divides by depth, applies
  Brown-Conrady distortion ``(k1, k2, p1, p2, k3)`` and the intrinsics
  ``(fx, fy, cx, cy)``;
* mixtures have last axis ``[weight, mu_x, mu_y, variance]``.

Work is done with the GIL released; large batches are spread over
:func:`get_num_threads` threads.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64, check_choice, check_int
from ._core_loader import core as _core

F64 = NDArray[np.float64]

__all__ = [
    "PerspectiveCameras",
    "Similarity",
    "WeakProjection",
    "get_num_threads",
    "matrix_to_rodrigues",
    "matrix_to_rot6d",
    "mixture_log_likelihood",
    "mixture_log_likelihood_with_gradient",
    "procrustes",
    "project_perspective",
    "project_perspective_with_jacobian",
    "project_weak",
    "project_weak_with_jacobian",
    "rodrigues_to_matrix",
    "rot6d_to_matrix",
    "rot6d_to_matrix_with_jacobian",
    "set_num_threads",
    "undistort_points",
]


def set_num_threads(count: int) -> None:
    """Use ``count`` threads (>= 1) for large batches; 0 means one per hardware core."""
    _core.set_num_threads(check_int(count, "count", 0))


def get_num_threads() -> int:
    """Number of threads large batches are spread over."""
    return int(_core.get_num_threads())


# --------------------------------------------------------------------------- rotations


def rot6d_to_matrix(rot6d: ArrayLike) -> F64:
    """(..., 6) -> (..., 3, 3): first two rows, Gram-Schmidt, third row = row0 x row1.

    Raises ValueError where the first row is zero or the two rows are parallel.
    """
    return _core.rot6d_to_matrix(as_float64(rot6d, "rot6d"))


def rot6d_to_matrix_with_jacobian(rot6d: ArrayLike) -> tuple[F64, F64]:
    """(..., 6) -> rotation (..., 3, 3) and jacobian (..., 3, 3, 6).

    ``jacobian[..., a, b, i]`` is d rotation[..., a, b] / d rot6d[..., i].
    """
    return _core.rot6d_to_matrix_with_jacobian(as_float64(rot6d, "rot6d"))


def matrix_to_rot6d(rotation: ArrayLike) -> F64:
    """(..., 3, 3) -> (..., 6): the first two rows, flattened."""
    return _core.matrix_to_rot6d(as_float64(rotation, "rotation"))


def rodrigues_to_matrix(rotvec: ArrayLike) -> F64:
    """(..., 3) axis * angle (radians) -> (..., 3, 3), as OpenCV's Rodrigues (R @ x rotates x)."""
    return _core.rodrigues_to_matrix(as_float64(rotvec, "rotvec"))


def matrix_to_rodrigues(rotation: ArrayLike) -> F64:
    """(..., 3, 3) rotation -> (..., 3) axis * angle with angle in [0, pi].

    Raises ValueError for a matrix that is not a rotation (orthonormal to 1e-6, det +1).
    """
    return _core.matrix_to_rodrigues(as_float64(rotation, "rotation"))


# --------------------------------------------------------------------------- cameras


class WeakProjection(NamedTuple):
    """Weak-perspective projection and its derivatives (shapes for pose (..., J, 3), C cameras)."""

    points: F64  #: (..., C, J, 2) image points
    d_pose: F64  #: (..., C, J, 2, 3) d points[c, j, k] / d pose[j, i]
    d_rotation: F64  #: (..., C, J, 2, 3, 3) d points[c, j, k] / d rotation[c, a, b]
    d_scale: F64  #: (..., C, J, 2) d points[c, j, k] / d scale[c]
    d_shift: F64  #: (..., C, J, 2, 3) d points[c, j, k] / d shift[c, i]


def project_weak(pose: ArrayLike, rotation: ArrayLike, scale: ArrayLike, shift: ArrayLike) -> F64:
    """Weak-perspective projection: pose (..., J, 3), rotation (..., C, 3, 3), scale (..., C), shift (..., C, 3)
    -> image points (..., C, J, 2) = first two coordinates of ``scale[c] * pose @ rotation[c] + shift[c]``.

    Units are those of the inputs (box units in the solver). ``scale`` may be any finite value.
    """
    return _core.project_weak(*_weak_args(pose, rotation, scale, shift))


def project_weak_with_jacobian(
    pose: ArrayLike, rotation: ArrayLike, scale: ArrayLike, shift: ArrayLike
) -> WeakProjection:
    """As :func:`project_weak`, with the derivatives with respect to the pose and every camera parameter."""
    return WeakProjection(*_core.project_weak_with_jacobian(*_weak_args(pose, rotation, scale, shift)))


def _weak_args(pose: ArrayLike, rotation: ArrayLike, scale: ArrayLike, shift: ArrayLike) -> tuple[F64, ...]:
    return (
        as_float64(pose, "pose"),
        as_float64(rotation, "rotation"),
        as_float64(scale, "scale"),
        as_float64(shift, "shift"),
    )


class PerspectiveCameras(NamedTuple):
    """C full-perspective cameras, world-to-camera ``X_cam = R @ X + t`` (x right, y down, z forward).

    The cameras the synthetic data is made with, and the ones the AniPose baseline adjusts.
    """

    rotation: F64  #: (C, 3, 3)
    translation: F64  #: (C, 3) world units (mm for the synthetic data)
    intrinsics: F64  #: (C, 4) [fx, fy, cx, cy] px
    distortion: F64  #: (C, 5) [k1, k2, p1, p2, k3]
    image_size: F64  #: (C, 2) [width, height] px

    @property
    def num_cameras(self) -> int:
        return int(np.shape(self.rotation)[0])

    @property
    def centres(self) -> F64:
        """(C, 3) the camera centres in the world, ``-R^T t`` (world units)."""
        return -np.einsum("cji,cj->ci", np.asarray(self.rotation), np.asarray(self.translation))

    @classmethod
    def checked(cls, value: object, name: str = "cameras") -> PerspectiveCameras:
        """``value.validated(name)`` for a PerspectiveCameras; ValueError naming ``name`` for anything else."""
        if not isinstance(value, cls):
            raise ValueError(f"{name}: expected a PerspectiveCameras, got {type(value).__name__}")
        return value.validated(name)

    def validated(self, name: str = "cameras") -> PerspectiveCameras:
        """A float64 copy after checking the shapes (C >= 2 cameras), that every value is finite,
        that the rotations are rotations (orthonormal to 1e-6, determinant +1) and that the focal
        lengths and image sizes are positive; ValueError naming ``name`` and the field otherwise."""
        rotation = as_float64(self.rotation, f"{name}.rotation")
        count = rotation.shape[0] if rotation.ndim == 3 else -1
        if rotation.shape != (count, 3, 3) or count < 2:
            raise ValueError(f"{name}.rotation: expected shape (C, 3, 3) with C >= 2, got {rotation.shape}")
        parts = [rotation]
        for field, size in (("translation", 3), ("intrinsics", 4), ("distortion", 5), ("image_size", 2)):
            value = as_float64(getattr(self, field), f"{name}.{field}")
            if value.shape != (count, size):
                raise ValueError(f"{name}.{field}: expected shape (C={count}, {size}), got {value.shape}")
            parts.append(value)
        for field, value in zip(self._fields, parts):
            if not np.isfinite(value).all():
                raise ValueError(f"{name}.{field}: contains NaN or inf")
        rotation, _, intrinsics, _, image_size = parts
        gram = rotation @ np.swapaxes(rotation, -1, -2)
        if np.abs(gram - np.eye(3)).max() > 1e-6 or (np.linalg.det(rotation) <= 0).any():
            raise ValueError(f"{name}.rotation: expected rotation matrices (orthonormal, determinant +1)")
        if (intrinsics[:, :2] <= 0).any():
            raise ValueError(f"{name}.intrinsics: expected focal lengths fx, fy > 0")
        if (image_size <= 0).any():
            raise ValueError(f"{name}.image_size: expected width and height > 0")
        return PerspectiveCameras(*(part.copy() for part in parts))


def project_perspective(
    points: ArrayLike, rotation: ArrayLike, translation: ArrayLike, intrinsics: ArrayLike, distortion: ArrayLike
) -> F64:
    """Full-perspective projection with Brown-Conrady distortion, as OpenCV's ``projectPoints``.

    points (..., N, 3) world, rotation (..., 3, 3) and translation (..., 3) world-to-camera
    (``R @ X + t``), intrinsics (..., 4) ``[fx, fy, cx, cy]`` in pixels, distortion (..., 5)
    ``[k1, k2, p1, p2, k3]`` -> pixels (..., N, 2).

    Raises ValueError for a point at or behind the camera (depth <= 0).
    """
    return _core.project_perspective(*_perspective_args(points, rotation, translation, intrinsics, distortion))


def project_perspective_with_jacobian(
    points: ArrayLike, rotation: ArrayLike, translation: ArrayLike, intrinsics: ArrayLike, distortion: ArrayLike
) -> tuple[F64, F64]:
    """As :func:`project_perspective`, also returning d pixels / d points: (..., N, 2, 3)."""
    return _core.project_perspective_with_jacobian(
        *_perspective_args(points, rotation, translation, intrinsics, distortion)
    )


def _perspective_args(
    points: ArrayLike, rotation: ArrayLike, translation: ArrayLike, intrinsics: ArrayLike, distortion: ArrayLike
) -> tuple[F64, ...]:
    return (
        as_float64(points, "points"),
        as_float64(rotation, "rotation"),
        as_float64(translation, "translation"),
        as_float64(intrinsics, "intrinsics"),
        as_float64(distortion, "distortion"),
    )


def undistort_points(pixels: ArrayLike, intrinsics: ArrayLike, distortion: ArrayLike) -> F64:
    """Invert the intrinsics and distortion: pixels (..., N, 2) -> normalised image coordinates (..., N, 2).

    The result ``(x, y)`` is the point ``(x, y, 1)`` in the camera frame, as OpenCV's
    ``undistortPoints`` without ``P``; found by damped Newton iteration to full float64
    precision. Raises ValueError for a pixel where the distortion cannot be inverted.
    """
    return _core.undistort_points(
        as_float64(pixels, "pixels"), as_float64(intrinsics, "intrinsics"), as_float64(distortion, "distortion")
    )


# --------------------------------------------------------------------------- mixtures


def mixture_log_likelihood(points: ArrayLike, mixtures: ArrayLike) -> F64:
    """Spherical Gaussian-mixture log-likelihood, one mixture per point.

    points (..., 2), mixtures (..., K, 4) ``[weight, mu_x, mu_y, variance]`` -> (...)::

        log sum_k exp(log(w_k + 1e-8) - log(2 pi var_k) - |p - mu_k|^2 / (2 var_k))

    computed by log-sum-exp, so far-away points stay finite. Weights need not sum to one and
    may be zero; negative weights and variances <= 0 raise ValueError.
    """
    return _core.mixture_log_likelihood(as_float64(points, "points"), as_float64(mixtures, "mixtures"))


def mixture_log_likelihood_with_gradient(points: ArrayLike, mixtures: ArrayLike) -> tuple[F64, F64]:
    """As :func:`mixture_log_likelihood`, also returning its gradient with respect to the point (..., 2)."""
    return _core.mixture_log_likelihood_with_gradient(as_float64(points, "points"), as_float64(mixtures, "mixtures"))


# --------------------------------------------------------------------------- procrustes


class Similarity(NamedTuple):
    """A similarity transform acting on row vectors: ``target ~ scale * source @ rotation + translation``."""

    rotation: F64  #: (..., 3, 3), a proper rotation (det +1)
    scale: F64  #: (...)
    translation: F64  #: (..., 3)


ScaleMode = Literal["umeyama", "norm_ratio"]
_SCALE_MODES = {"umeyama": 0, "norm_ratio": 1}


def procrustes(source: ArrayLike, target: ArrayLike, scale: ScaleMode = "umeyama") -> Similarity:
    """Similarity Procrustes taking ``source`` (..., N, 3) onto ``target`` (..., N, 3).

    The rotation maximises ``trace(R^T A^T B)`` over proper rotations (never a reflection) for the
    centred point sets A, B. ``scale="umeyama"`` gives the least-squares scale; ``"norm_ratio"``
    gives ``|B| / |A|`` (Frobenius norms), as MetaPose's stage 1 and metrics use.

    Degenerate inputs have a defined, finite answer: when the source points coincide the rotation
    is the identity and the scale 1; collinear or otherwise rank-deficient sets get a deterministic
    optimal rotation.
    """
    mode = _scale_mode(scale)
    return Similarity(*_core.procrustes(as_float64(source, "source"), as_float64(target, "target"), mode))


def _scale_mode(scale: str) -> int:
    return _SCALE_MODES[check_choice(scale, "scale", tuple(_SCALE_MODES))]
