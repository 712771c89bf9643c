"""From a static weak-perspective rig to full-perspective OpenCV cameras: the initial cameras,
then a robust bundle adjustment over every frame's keypoints.

Initial cameras. A weak camera sees the subject as ``s X R + t`` in box units, i.e. at
``b s`` pixels per unit of the pose (``b`` the box size); a perspective camera of focal ``f``
sees a subject at depth ``Z`` at ``f / Z`` pixels per unit. So with the poses in metres and a
focal length (given, or the prior), each view gives the subject's depth ``Z_fc = f_c / (b s)``
and, from where the subject's centre is in the image, the centre's position in camera c,
``Z_fc (x_n, y_n, 1)``. Every such position is ``R_c P_f + t_c`` with ``P_f`` the frame's
subject position in the world: one linear least-squares problem in all ``P_f`` and ``t_c``.

A weak camera's rotation is that of a virtual camera looking *at the subject*, not along its
optical axis: a subject off the image centre is seen from a direction ``atan(offset / f)`` away
from the axis. :func:`towards` is the rotation that turns the optical axis to that direction;
the rig averages the per-frame rotations after taking it out (:func:`optical_axis_rotations`).

Bundle adjustment. Parameters: per camera a Rodrigues vector, a translation, a focal length
(``fx``, with ``fy / fx`` kept as given), the principal point and ``k1, k2``, each free or fixed per
stage; per frame and joint a 3D point. Residuals: ``sqrt(confidence) * (projection - keypoint)`` in
pixels for every keypoint used, under a robust loss (``soft_l1`` on each residual's length, at a
scale of :data:`ROBUST_SCALE` of the subject's size in the image). Solved by Levenberg-Marquardt
written here in numpy: each iteration reweights the observations by the loss, forms the normal
equations with analytic Jacobians (points from the core's projection Jacobian, camera parameters
from it through the camera frame), eliminates the points (3 x 3 blocks, Schur complement) and
solves the small camera system. ``scipy.optimize.least_squares`` (trust region, LSMR, sparse
Jacobian) reached the same cameras on the shared capture in 20 s against 1.5 s here: its
iterative linear solves do not use the block structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .._checks import as_float64, check_int, check_number
from ..geometry import (
    PerspectiveCameras,
    matrix_to_rodrigues,
    project_perspective,
    project_perspective_with_jacobian,
    rodrigues_to_matrix,
    undistort_points,
)

F64 = NDArray[np.float64]

__all__ = ["BundleResult", "PARAMETERS", "ROBUST_SCALE", "bundle_adjust", "initial_translations", "towards"]

#: The per-camera parameters of the bundle adjustment, in their order in a camera's block.
PARAMETERS = ("rotation", "translation", "focal", "principal_point", "k1", "k2")
_SLICES = {"rotation": slice(0, 3), "translation": slice(3, 6), "focal": slice(6, 7),
           "principal_point": slice(7, 9), "k1": slice(9, 10), "k2": slice(10, 11)}
_BLOCK = 11
#: Scale of the robust loss, as a fraction of the subject's median size in the images (pixels):
#: residuals well beyond it (a swapped limb, a wrong detection) count as their square root.
ROBUST_SCALE = 0.01


def towards(direction: F64) -> F64:
    """(..., 3) unit directions in a camera frame -> (..., 3, 3) the smallest rotations taking
    the optical axis (0, 0, 1) to them (their columns: the axes of a camera looking that way)."""
    axis = np.cross(np.array([0.0, 0.0, 1.0]), direction)
    sine = np.linalg.norm(axis, axis=-1)
    angle = np.arctan2(sine, direction[..., 2])
    rotvec = np.where(sine[..., None] > 0, axis / np.maximum(sine, 1e-300)[..., None] * angle[..., None], 0.0)
    return rodrigues_to_matrix(rotvec)


def initial_translations(rotation: F64, depth_points: F64, used: NDArray[np.bool_]) -> tuple[F64, F64]:
    """Camera translations and subject positions from the subject's centre seen in camera frames.

    Args:
        rotation: (C, 3, 3) world-to-camera rotations (column vectors).
        depth_points: (F, C, 3) the subject's centre in each camera's frame (any values where unused).
        used: (F, C) the views that count.

    Returns:
        translation (C, 3) and positions (F, 3) minimising ``sum |R_c P_f + t_c - depth_points_fc|^2``
        with the positions' mean at 0 (the gauge); a frame without a used view gets NaN.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import lsqr

    frames, cameras = used.shape
    rows, cols, vals, rhs = [], [], [], []
    equation = 0
    for f, c in zip(*np.nonzero(used)):
        for a in range(3):
            rows += [equation] * 4
            cols += [3 * f, 3 * f + 1, 3 * f + 2, 3 * frames + 3 * c + a]
            vals += [rotation[c, a, 0], rotation[c, a, 1], rotation[c, a, 2], 1.0]
            rhs.append(depth_points[f, c, a])
            equation += 1
    seen = used.any(axis=1)
    for a in range(3):  # the gauge: sum of the positions = 0
        rows += [equation] * int(seen.sum())
        cols += [3 * f + a for f in np.flatnonzero(seen)]
        vals += [1.0] * int(seen.sum())
        rhs.append(0.0)
        equation += 1
    matrix = coo_matrix((vals, (rows, cols)), shape=(equation, 3 * (frames + cameras))).tocsr()
    solution = lsqr(matrix, np.array(rhs), atol=1e-12, btol=1e-12, iter_lim=20000)[0]
    positions = solution[: 3 * frames].reshape(frames, 3)
    positions[~seen] = np.nan
    return solution[3 * frames:].reshape(cameras, 3), positions


@dataclass(frozen=True)
class BundleResult:
    """What :func:`bundle_adjust` returns."""

    cameras: PerspectiveCameras  #: the adjusted cameras (fx = fy)
    points: F64  #: (F, J, 3) the adjusted points; NaN for points seen by fewer than two views
    residuals: F64  #: (C, F, J) pixels, |projection - keypoint| for the observations used; NaN elsewhere
    cost: float  #: the robust cost at the end
    iterations: int  #: Levenberg-Marquardt iterations
    seconds: float


def _camera_blocks(cameras: PerspectiveCameras) -> F64:
    """The cameras' parameter blocks (C, 11): Rodrigues vector, translation, fx, cx, cy, k1, k2."""
    blocks = np.zeros((cameras.num_cameras, _BLOCK))
    blocks[:, 0:3] = matrix_to_rodrigues(cameras.rotation)
    blocks[:, 3:6] = cameras.translation
    blocks[:, 6] = cameras.intrinsics[:, 0]
    blocks[:, 7:9] = cameras.intrinsics[:, 2:4]
    blocks[:, 9:11] = cameras.distortion[:, :2]
    return blocks


def _camera_arrays(blocks: F64, aspect: F64, distortion_rest: F64) -> tuple[F64, F64, F64, F64]:
    """blocks (C, 11), aspect (C,) fy / fx, the rest of the distortion (C, 3) -> rotation (C, 3, 3),
    translation (C, 3), intrinsics (C, 4), distortion (C, 5)."""
    rotation = rodrigues_to_matrix(blocks[:, 0:3])
    intrinsics = np.column_stack([blocks[:, 6], blocks[:, 6] * aspect, blocks[:, 7], blocks[:, 8]])
    distortion = np.column_stack([blocks[:, 9], blocks[:, 10], distortion_rest])
    return rotation, blocks[:, 3:6], intrinsics, distortion


def _soft_l1(squared: F64) -> tuple[F64, F64]:
    """rho(s) = 2 (sqrt(1 + s) - 1) and its derivative, for s = |r|^2 / scale^2."""
    root = np.sqrt(1.0 + squared)
    return 2.0 * squared / (root + 1.0), 1.0 / root  # 2 (root - 1) without the cancellation


def bundle_adjust(cameras: PerspectiveCameras, points: F64, keypoints: F64, weights: F64,
                  free: Sequence[str] = ("rotation", "translation"), robust_scale: float = 5.0,
                  fixed_cameras: Sequence[int] = (), max_iterations: int = 100,
                  tolerance: float = 1e-10) -> BundleResult:
    """Robust bundle adjustment of perspective cameras and 3D points (Levenberg-Marquardt).

    Args:
        cameras: the C start cameras (fx and fy are replaced by their mean: one focal length).
        points: (F, J, 3) start points, world units.
        keypoints: (C, F, J, 2) pixels; any value where the weight is 0.
        weights: (C, F, J) >= 0 (confidences); 0 leaves the keypoint out.
        free: the camera parameters adjusted, from :data:`PARAMETERS`; points are always adjusted.
        robust_scale: pixels, the scale ``d`` of the loss: an observation with weighted residual
            ``r`` (2,) costs ``d^2 (sqrt(1 + |r|^2 / d^2) - 1)`` (``soft_l1`` on its length).
        fixed_cameras: cameras kept as they are.
        max_iterations: Levenberg-Marquardt iterations at most; it stops earlier when an accepted
            step lowers the cost by less than ``tolerance`` relatively.

    Each iteration reweights the observations by the loss (iteratively reweighted least
    squares), forms the normal equations, eliminates the points (3 x 3 blocks, Schur complement)
    and solves the small camera system; a step that raises the cost, or puts an observed point
    behind its camera, is refused and the damping raised. A point seen (weight > 0) by fewer than
    two cameras is left out (NaN in the result).
    """
    from threadpoolctl import threadpool_limits

    cameras = PerspectiveCameras.checked(cameras, "cameras")
    C = cameras.num_cameras
    points = as_float64(points, "points")
    weights = as_float64(weights, "weights")
    keypoints = as_float64(keypoints, "keypoints")
    if weights.ndim != 3 or weights.shape[0] != C:
        raise ValueError(f"weights: expected shape (C={C}, F, J), got {weights.shape}")
    if points.shape != weights.shape[1:] + (3,):
        raise ValueError(f"points: expected shape (F, J, 3) = {weights.shape[1:] + (3,)}, got {points.shape}")
    if keypoints.shape != weights.shape + (2,):
        raise ValueError(f"keypoints: expected shape (C, F, J, 2) = {weights.shape + (2,)}, got {keypoints.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights: expected finite values >= 0")
    if not np.isfinite(keypoints[weights > 0]).all():
        raise ValueError("keypoints: NaN or inf where the weight is > 0 (give those weight 0)")
    seen_twice = (weights > 0).sum(axis=0) >= 2
    if not seen_twice.any():
        raise ValueError("weights: no point is seen (weight > 0) by two cameras")
    if not np.isfinite(points[seen_twice]).all():
        raise ValueError("points: NaN or inf for a point seen by two cameras")
    robust_scale = check_number(robust_scale, "robust_scale", 0.0, low_open=True)
    max_iterations = check_int(max_iterations, "max_iterations", 1)
    tolerance = check_number(tolerance, "tolerance", 0.0)
    fixed_cameras = [check_int(c, "fixed_cameras", 0, C - 1) for c in fixed_cameras]
    with threadpool_limits(1, "blas"):  # small products: BLAS threads only contend (and on a busy machine, badly)
        return _bundle_adjust(cameras, points, keypoints, weights, free, robust_scale, fixed_cameras, max_iterations,
                              tolerance)


def _bundle_adjust(cameras: PerspectiveCameras, points: F64, keypoints: F64, weights: F64, free: Sequence[str],
                   robust_scale: float, fixed_cameras: Sequence[int], max_iterations: int,
                   tolerance: float) -> BundleResult:
    import time

    clock = time.perf_counter()
    unknown = sorted(set(free) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"free: unknown parameter(s) {unknown}; known: {list(PARAMETERS)}")
    C, F, J = weights.shape
    observed = (weights > 0).reshape(C, F * J).T  # (N, C) over all frame-joints
    active = observed.sum(axis=1) >= 2
    seen = observed[active]  # (Np, C)
    weight = weights.reshape(C, F * J).T[active] * seen  # (Np, C)
    target = np.moveaxis(keypoints.reshape(C, F * J, 2), 0, 1)[active]  # (Np, C, 2)
    target = np.where(seen[..., None], target, 0.0)
    x_points = points.reshape(F * J, 3)[active].copy()  # (Np, 3)
    sqrt_w = np.sqrt(weight)
    chosen = np.zeros(_BLOCK, dtype=bool)
    for name in free:
        chosen[_SLICES[name]] = True
    mask = np.repeat(chosen[None], C, axis=0)
    mask[list(fixed_cameras)] = False
    columns = np.flatnonzero(chosen)
    blocks = _camera_blocks(cameras)
    blocks[:, 0:3] = 0.0  # rotations as increments on `reference` (left-multiplied), re-based after each step
    reference = np.asarray(cameras.rotation, dtype=np.float64).copy()
    rest = cameras.distortion[:, 2:].copy()
    aspect = cameras.intrinsics[:, 1] / cameras.intrinsics[:, 0]  # kept: "focal" scales fx and fy together

    def camera_arrays(blocks: F64, reference: F64) -> tuple[F64, F64, F64, F64]:
        rotation, translation, intrinsics, distortion = _camera_arrays(blocks, aspect, rest)
        return rotation @ reference, translation, intrinsics, distortion

    def project(blocks: F64, reference: F64, x_points: F64, jacobian: bool = False):
        rotation, translation, intrinsics, distortion = camera_arrays(blocks, reference)
        # views that do not see a point project a stand-in on their optical axis instead
        ahead = np.einsum("cba,cb->ca", rotation, np.array([0.0, 0.0, 1.0]) - translation)
        stacked = np.where(seen.T[..., None], x_points[None], ahead[:, None, :])  # (C, Np, 3)
        if not jacobian:
            return np.moveaxis(project_perspective(stacked, rotation, translation, intrinsics, distortion), 0, 1)
        pixels, d_points = project_perspective_with_jacobian(stacked, rotation, translation, intrinsics, distortion)
        # camera parameters, analytically from d pixels / d camera-frame point = d_points R^T:
        # increment w (X_cam = exp(w) R X + t): -d_cam [R X]_x; t: d_cam; f: (pixel - c) / f;
        # c: identity; k1, k2: (fx, fy) x_n r^2, (fx, fy) x_n r^4 with x_n the undistorted normalised point
        d_cam = d_points @ np.swapaxes(rotation, -1, -2)[:, None]  # (C, Np, 2, 3)
        rotated = np.einsum("cab,cnb->cna", rotation, stacked)  # R X
        in_camera = rotated + translation[:, None, :]
        normal = in_camera[..., :2] / in_camera[..., 2:3]
        r2 = (normal ** 2).sum(axis=-1, keepdims=True)
        focal = intrinsics[:, None, None, 0:2]  # (C, 1, 1, 2): fx, fy
        d_camera = np.zeros(stacked.shape[:2] + (2, _BLOCK))
        skew = np.zeros(stacked.shape[:2] + (3, 3))
        skew[..., 0, 1], skew[..., 0, 2], skew[..., 1, 2] = -rotated[..., 2], rotated[..., 1], -rotated[..., 0]
        skew -= np.swapaxes(skew, -1, -2)  # [R X]_x
        d_camera[..., 0:3] = -d_cam @ skew
        d_camera[..., 3:6] = d_cam
        d_camera[..., 6] = (pixels - intrinsics[:, None, 2:4]) / intrinsics[:, None, 0:1]
        d_camera[..., 0, 7] = 1.0
        d_camera[..., 1, 8] = 1.0
        d_camera[..., 9] = focal[:, 0] * normal * r2
        d_camera[..., 10] = focal[:, 0] * normal * r2 ** 2
        return np.moveaxis(pixels, 0, 1), np.moveaxis(d_points, 0, 1), np.moveaxis(d_camera, 0, 1)

    def cost_of(pixels: F64) -> tuple[float, F64, F64]:
        residual = (pixels - target) * sqrt_w[..., None]  # (Np, C, 2)
        squared = (residual ** 2).sum(axis=-1) / robust_scale ** 2
        rho, slope = _soft_l1(squared)
        return float(0.5 * robust_scale ** 2 * (rho * seen).sum()), residual, slope * seen

    try:
        pixels = project(blocks, reference, x_points)
    except ValueError:
        raise ValueError("points: a start point is at or behind a camera that sees it") from None
    cost, residual, irls = cost_of(pixels)
    damping = 1e-3
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        pixels, d_point, d_camera = project(blocks, reference, x_points, jacobian=True)
        d_point = d_point * sqrt_w[..., None, None]  # (Np, C, 2, 3)
        # only the columns some camera adjusts; a fixed camera's derivatives are zero
        d_camera = d_camera[..., columns] * (sqrt_w[..., None, None] * mask[None, :, None, columns])
        Np, P = len(x_points), len(columns)
        wc = irls[..., None, None] * d_camera  # (Np, C, 2, P)
        wp = irls[..., None, None] * d_point  # (Np, C, 2, 3)
        # every sum over observations as a matrix product, not an einsum loop
        camera_rows = np.moveaxis(d_camera, 1, 0).reshape(C, Np * 2, P)
        weighted_rows = np.moveaxis(wc, 1, 0).reshape(C, Np * 2, P)
        U = np.matmul(np.swapaxes(weighted_rows, -1, -2), camera_rows)  # (C, P, P)
        V = np.matmul(np.swapaxes(wp.reshape(Np, C * 2, 3), -1, -2), d_point.reshape(Np, C * 2, 3))  # (Np, 3, 3)
        W = np.matmul(np.swapaxes(wc, -1, -2), d_point)  # (Np, C, P, 3)
        g_camera = np.matmul(np.swapaxes(weighted_rows, -1, -2),
                             np.moveaxis(residual, 1, 0).reshape(C, Np * 2, 1))[..., 0]  # (C, P)
        g_point = np.matmul(np.swapaxes(wp.reshape(Np, C * 2, 3), -1, -2), residual.reshape(Np, C * 2, 1))[..., 0]
        W_flat = np.moveaxis(W, 0, 2).reshape(C * P, Np * 3)  # rows (c, i), columns (p, k)
        keep = mask[:, columns].ravel()
        while True:
            Ud = U + damping * (np.einsum("cii->ci", U)[..., None] * np.eye(P)) + 1e-12 * np.eye(P)
            Vd = V + damping * (np.einsum("pii->pi", V)[..., None] * np.eye(3)) + 1e-12 * np.eye(3)
            V_inv = np.linalg.inv(Vd)
            WV = np.matmul(W, V_inv[:, None])  # (Np, C, P, 3)
            S = -(np.moveaxis(WV, 0, 2).reshape(C * P, Np * 3) @ W_flat.T).reshape(C, P, C, P)
            for c in range(C):
                S[c, :, c, :] += Ud[c]
            rhs = -g_camera + np.matmul(WV, g_point[:, None, :, None]).sum(axis=0)[..., 0]
            S = S.reshape(C * P, C * P)
            step = np.zeros(C * P)
            if keep.any():
                step[keep] = np.linalg.solve(S[np.ix_(keep, keep)], rhs.ravel()[keep])
            step = step.reshape(C, P)
            delta_camera = np.zeros((C, _BLOCK))
            delta_camera[:, columns] = step
            coupled = np.matmul(np.swapaxes(W, -1, -2), step[None, :, :, None])[..., 0].sum(axis=1)  # (Np, 3)
            delta_point = -np.matmul(V_inv, (g_point + coupled)[..., None])[..., 0]
            new_blocks, new_points = blocks + delta_camera, x_points + delta_point
            new_reference = rodrigues_to_matrix(new_blocks[:, 0:3]) @ reference
            new_blocks[:, 0:3] = 0.0
            try:
                new_cost, new_residual, new_irls = cost_of(project(new_blocks, new_reference, new_points))
            except ValueError:  # an observed point behind its camera
                new_cost = np.inf
            if new_cost < cost:
                improvement = (cost - new_cost) / max(cost, 1e-300)
                blocks, reference, x_points = new_blocks, new_reference, new_points
                cost, residual, irls = new_cost, new_residual, new_irls
                damping = max(damping / 3.0, 1e-9)
                break
            damping *= 4.0
            if damping > 1e9:
                improvement = 0.0
                break
        if improvement < tolerance:
            break
    rotation, translation, intrinsics, distortion = camera_arrays(blocks, reference)
    adjusted = PerspectiveCameras(rotation, translation, intrinsics, distortion, cameras.image_size.copy())
    out_points = np.full((F * J, 3), np.nan)
    out_points[active] = x_points
    errors = np.full((F * J, C), np.nan)
    length = np.linalg.norm(residual, axis=-1) / np.where(seen, sqrt_w, 1.0)
    errors[active] = np.where(seen, length, np.nan)
    return BundleResult(adjusted, out_points.reshape(F, J, 3), errors.T.reshape(C, F, J), cost, iterations,
                        time.perf_counter() - clock)


def optical_axis_rotations(centres: F64, focal: F64, principal_point: F64) -> F64:
    """centres (F, C, 2) pixels of the subject's centre per view, focal (C,) px, principal_point
    (C, 2) px -> (F, C, 3, 3) the rotations :func:`towards` the subject (NaN rows stay NaN)."""
    normalised = (centres - principal_point[None]) / focal[None, :, None]
    direction = np.concatenate([normalised, np.ones(normalised.shape[:-1] + (1,))], axis=-1)
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    finite = np.isfinite(direction).all(axis=-1)
    out = np.full(direction.shape[:-1] + (3, 3), np.nan)
    out[finite] = towards(direction[finite])
    return out


def undistorted_centres(centres: F64, intrinsics: F64, distortion: F64) -> F64:
    """centres (F, C, 2) pixels -> the same points with the lens distortion taken out (pixels)."""
    out = np.full_like(centres, np.nan)
    for c in range(centres.shape[1]):
        finite = np.isfinite(centres[:, c]).all(axis=-1)
        if finite.any():
            normal = undistort_points(centres[finite, c], intrinsics[c], distortion[c])
            out[finite, c] = normal * intrinsics[c, :2] + intrinsics[c, 2:]
    return out
