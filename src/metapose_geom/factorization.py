"""Pose and weak cameras from the 2D evidence alone: multi-view affine factorisation.

The start the solver takes when no monocular guesses are given (``RefineOptions(init="auto")``
or ``init="factorization"``). Per frame, with the mixture means ``p_cj`` (box units) of C views
and J joints, the weak model ``p_cj = s_c X_j R_c[:, :2] + t_c`` is an affine one,
``p_cj = M_c X_j + t_c`` with ``M_c`` (2, 3) of rank 2, so the 2C x J measurement matrix of the
tracks, centred per view, has rank 3: ``W = M S``. The steps:

1. **Weighted rank-3 fit.** Each (c, j) gets the weight ``1 / v_cj``, ``v_cj`` the mixture's
   per-axis variance about its mean (a sharp keypoint counts more than a vague or two-peaked
   one), and 0 where the joint has no real evidence in the view
   (:func:`metapose_geom.mixtures.missing_joints`). Started from the SVD of the joints every
   view sees (or every view of a subset, when fewer than four are seen by all; failing that, of
   the matrix with missing entries filled by their view's mean), alternating least squares
   (joints given the cameras, then cameras and shifts given the joints) minimises
   ``sum w |p - M X - t|^2``; with noise-free data the start is already exact.
2. **Metric upgrade.** The fit holds up to an affine map: ``M G`` and ``G^-1 S`` fit alike. For
   weak cameras the rows ``m_c, n_c`` of ``M_c G`` are orthogonal and of equal length, which is
   linear in the symmetric ``Q = G G^T``: ``m_c Q m_c^T = n_c Q n_c^T`` and ``m_c Q n_c^T = 0``,
   2C equations in Q's 6 entries, solved (the smallest right singular vector) with the scale
   fixed by a mean squared camera scale of 1. Q is projected onto the positive-definite matrices
   (eigenvalues floored at ``Q_FLOOR`` of the largest) and ``G = V sqrt(diag(e))`` from its
   eigen-decomposition. With **two views** the 4 equations leave a one-parameter family of Q:
   metric reconstructions that all reproduce the 2D exactly, each with its own angle between the
   two views and the pose's depth relief stretched to match (the two-view ambiguity of affine
   cameras). The member whose bone-length ratios are nearest the skeleton's rest pose is taken (a
   60-point grid over the family, then a golden-section search); on noise-free synthetic frames
   its pose is a few millimetres (PMPJPE) from the truth.
3. **Cameras.** ``s_c R_c[:, :2]`` is ``[m_c, n_c]^T``: the nearest orthonormal pair (SVD) gives
   the first two columns of ``R_c``, their cross product the third, the mean singular value
   ``s_c``.
4. **Chirality.** Affine cameras cannot tell the pose from its mirror image (``X D`` seen by
   cameras ``D R_c`` gives the same 2D for a reflection D). The pose is aligned to the skeleton's
   rest pose (x to the subject's left, y up, z forward) by an orthogonal Procrustes that allows
   a reflection; when the best fit is a reflection the mirrored reconstruction is used. The
   forearms (``CHIRALITY_SKIPS``) are left out of that fit: they swing too freely for the rest
   pose to say where they are. On varied synthetic poses this picks the right image 97.5% of the
   time (87% with the forearms in); a miss gives the exact mirror image, which the refiner
   cannot undo (the objective does not change under it).
5. **Output.** Expressed in camera 0's frame (``R_0 = I``, ``s_0 = 1``, as stage 1 gives it),
   the pose centred on its mean joint; each shift is the weighted least-squares one (depth 0).
   A joint seen by fewer than two views has no determined depth: it takes the point of its
   viewing ray nearest the rest pose aligned to the other joints (the rest-pose joint itself
   when no view sees it).

:func:`factorize` is vectorised over frames (batched numpy SVD, eigen-decompositions and 3x3 /
4x4 solves) and a frame's result does not depend on the other frames of the call.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

from . import layout
from .geometry import matrix_to_rot6d
from .mixtures import check_mixtures, missing_joints, mixture_mean
from .skeletons import CHIRALITY_SKIPS, H36M_17, Skeleton, mirror_image_poses

F64 = NDArray[np.float64]

__all__ = ["CHIRALITY_SKIPS", "MIN_JOINTS_PER_VIEW", "Q_FLOOR", "TWO_VIEW_WARNING", "factorize"]

#: An affine camera (8 numbers) needs at least this many joints with evidence in its view.
MIN_JOINTS_PER_VIEW = 4
#: Eigenvalues of the metric-upgrade matrix Q are floored at this fraction of the largest, which
#: bounds how far a noisy upgrade can stretch the pose (by at most ``Q_FLOOR ** -0.5`` = 100x).
Q_FLOOR = 1e-4
#: What the one warning of a two-view call says.
TWO_VIEW_WARNING = (
    "factorisation with two views: the metric upgrade of two weak cameras leaves a one-parameter "
    "family of poses that all reproduce the 2D exactly; the start takes the member whose bone-length "
    "ratios best match the skeleton's rest pose (give monocular guesses, or a third view, for an "
    "unambiguous start)"
)

_ALS_MAX_STEPS = 200  # alternating least-squares sweeps at most
_ALS_RELATIVE_DECREASE = 1e-6  # a frame stops when a sweep lowers its residual by less than this share
_ALS_EXACT = 1e-26  # ... or when its residual is below this share of its weighted spread (noise-free)
_RIDGE = 1e-9  # in the fit, pull of an undetermined joint towards the centre, relative to a typical weight
_GRID = 60  # two views: grid points over the family's angle in [0, pi)
_GOLDEN_STEPS = 60  # two views: golden-section steps after the grid


def factorize(mixtures: F64, skeleton: Skeleton = H36M_17) -> F64:
    """mixtures (B, C, J, K, 4) box units -> x (B, P) solution vectors, box units, ``P = 3 J + 10 C``.

    The pose and weak cameras of each frame from its 2D evidence alone, in the solver's layout
    ``[pose J*3 | rot6d C*6 | scale_raw C | shift C*3]`` (:mod:`metapose_geom.layout`): camera 0
    has rotation I and scale 1, the pose (box units of view 0) is centred on its mean joint, and
    ``s_c X R_c + t_c`` reproduces the mixture means (exactly for noise-free weak-perspective 2D
    with C >= 3). See the module's docstring for the method.

    Args:
        mixtures: (B, C, J, K, 4) ``[weight, mu_x, mu_y, variance]``, box units, C >= 2.
        skeleton: the joint layout (J joints); its rest pose settles the mirror ambiguity and,
            with two views, the one-parameter family the metric upgrade leaves.

    Returns:
        (B, P) float64.

    Raises:
        ValueError: one view; or, naming the first such frame, a view with evidence for fewer
            than ``MIN_JOINTS_PER_VIEW`` joints, a view whose joints are all at one point, fewer
            than four joints seen by two or more views, or 2D evidence of rank below 3 (views that
            all see the pose from one direction, or coplanar joints).

    Warns:
        UserWarning: once per call with two views (``TWO_VIEW_WARNING``).

    Example::

        scene = synth.make_scene(0, num_cameras=4)
        x0 = factorize(scene.mixtures[None])          # (1, 3 * 17 + 10 * 4)
    """
    mixtures = check_mixtures(mixtures)
    if mixtures.ndim != 5:
        raise ValueError(f"mixtures: expected shape (B, C, J, K, 4), got {mixtures.shape}")
    if not isinstance(skeleton, Skeleton):
        raise ValueError(f"skeleton: expected a Skeleton, got {type(skeleton).__name__}")
    if mixtures.shape[2] != skeleton.num_joints:
        raise ValueError(f"mixtures: J = {mixtures.shape[2]} joints, but skeleton {skeleton.name!r} has "
                         f"{skeleton.num_joints}")
    if mixtures.shape[1] == 2:
        warnings.warn(TWO_VIEW_WARNING, UserWarning, stacklevel=2)
    return factorize_frames(mixtures, skeleton)


def factorize_frames(mixtures: F64, skeleton: Skeleton, first_frame: int = 0) -> F64:
    """:func:`factorize` without the argument checks and the two-view warning (the solver's
    entry, which warns once per call itself); errors name frame ``first_frame + b``."""
    B, C, J = mixtures.shape[:3]
    if C < 2:
        raise ValueError(f"mixtures: the factorisation needs two or more views, got C = {C}")
    points = mixture_mean(mixtures)  # (B, C, J, 2)
    weights = _weights(mixtures, points)  # (B, C, J)
    seen = weights > 0
    _check_frames(points, weights, first_frame)
    determined = seen.sum(axis=1) >= 2  # (B, J): depth fixed by two or more views

    M, t, X = _affine_fit(points, weights, determined, first_frame)  # (B, C, 2, 3), (B, C, 2), (B, J, 3)
    rest = skeleton.rest_pose()
    Q = _metric_upgrade(M, X, determined, skeleton) if C == 2 else _metric_upgrade_many(M, first_frame)
    values, vectors = np.linalg.eigh(Q)
    values = np.maximum(values, Q_FLOOR * values[:, -1:])
    M = M @ (vectors * np.sqrt(values)[:, None, :])[:, None]  # M G, G = V sqrt(e)
    X = X @ (vectors / np.sqrt(values)[:, None, :])  # X G^-T

    mirrored = mirror_image_poses(X, skeleton, determined)
    X[mirrored, :, 2] *= -1.0
    M[mirrored, :, :, 2] *= -1.0
    rotation, scale = _cameras(M)  # (B, C, 3, 3), (B, C)

    # camera 0's frame: pose' = s_0 X R_0, R_c' = R_0^T R_c, s_c' = s_c / s_0
    X = scale[:, :1, None] * X @ rotation[:, 0]
    rotation = np.swapaxes(rotation[:, :1], -1, -2) @ rotation
    scale = scale / scale[:, :1]
    shift = _shifts(points, weights * determined[:, None, :], X, rotation, scale)
    X = _fill_undetermined(X, points, weights, determined, rotation, scale, shift, rest)
    centre = X.mean(axis=1)  # (B, 3)
    X = X - centre[:, None, :]
    shift = shift + scale[..., None] * (centre[:, None, None, :] @ rotation)[:, :, 0, :]
    shift[..., 2] = 0.0
    return layout.pack(X, matrix_to_rot6d(rotation), layout.raw_from_scale(scale), shift)


# --------------------------------------------------------------------------- evidence


def _weights(mixtures: F64, points: F64) -> F64:
    """(B, C, J, K, 4), means (B, C, J, 2) -> (B, C, J): ``1 / per-axis variance`` of each mixture
    about its mean, 0 for a joint without real evidence; scaled to a mean of 1 per frame."""
    w = mixtures[..., 0]
    spread = ((mixtures[..., 1:3] - points[..., None, :]) ** 2).sum(axis=-1) / 2  # (B, C, J, K)
    variance = (w * (mixtures[..., 3] + spread)).sum(axis=-1) / w.sum(axis=-1)
    weights = np.where(missing_joints(mixtures), 0.0, 1.0 / variance)
    total = weights.reshape(weights.shape[0], -1).sum(axis=-1)
    return weights / np.maximum(total, np.finfo(float).tiny)[:, None, None] * weights[0].size


def _check_frames(points: F64, weights: F64, first_frame: int) -> None:
    """ValueError naming the first frame (and view) the factorisation cannot handle."""
    seen = weights > 0
    counts = seen.sum(axis=2)  # (B, C)
    few = np.argwhere(counts < MIN_JOINTS_PER_VIEW)
    if len(few):
        b, c = few[0]
        raise ValueError(f"frames[{first_frame + b}]: camera {c} has evidence for {counts[b, c]} joint(s); the "
                         f"factorisation needs at least {MIN_JOINTS_PER_VIEW} per view (give monocular guesses, "
                         "or leave that view out)")
    mean = (weights[..., None] * points).sum(axis=2) / weights.sum(axis=2)[..., None]  # (B, C, 2)
    extent = np.where(seen, np.abs(points - mean[:, :, None]).max(axis=-1), 0.0).max(axis=-1)  # (B, C)
    flat = np.argwhere(extent <= 1e-9)
    if len(flat):
        b, c = flat[0]
        raise ValueError(f"frames[{first_frame + b}]: camera {c} sees every joint at one point; the "
                         "factorisation needs the joints spread out in every view")
    both = (seen.sum(axis=1) >= 2).sum(axis=-1)  # (B,)
    few = np.flatnonzero(both < 4)
    if len(few):
        b = few[0]
        raise ValueError(f"frames[{first_frame + b}]: {both[b]} joint(s) have evidence in two or more views; the "
                         "factorisation needs at least 4")


# --------------------------------------------------------------------------- step 1: the weighted affine fit


def _sum_last(array: F64) -> F64:
    """Sum over the last axis of a C-contiguous copy: one fixed order per element, whatever the batch."""
    return np.ascontiguousarray(array).sum(axis=-1)


def _affine_fit(points: F64, weights: F64, determined: NDArray[np.bool_], first_frame: int
                ) -> tuple[F64, F64, F64]:
    """points (B, C, J, 2), weights (B, C, J) -> M (B, C, 2, 3), t (B, C, 2), X (B, J, 3) minimising
    ``sum w |p - M X - t|^2``; X is centred with unit singular values (the affine gauge)."""
    B, C, J = weights.shape
    M, t, X = _start(points, weights, determined, first_frame)
    mean = (weights[..., None] * points).sum(axis=2) / weights.sum(axis=2)[..., None]  # (B, C, 2)
    spread = (weights * ((points - mean[:, :, None]) ** 2).sum(axis=-1)).reshape(B, -1).sum(axis=-1)
    flat_points = np.moveaxis(points, 2, 1).reshape(B, J, 2 * C)
    flat_weights = np.repeat(np.swapaxes(weights, 1, 2), 2, axis=-1)
    residual = _residual(flat_points, flat_weights, M, t, X)
    active = np.arange(B)
    for _ in range(_ALS_MAX_STEPS):
        if not len(active):
            break
        p, w, d = points[active], weights[active], determined[active]
        x = _joint_step(p, w, d, M[active], t[active])
        m, tt, x = _whiten(M[active], t[active], x)
        m, tt = _camera_step(p, w * d[:, None, :], x, first_frame + active)  # a joint seen once fits any camera
        r = _residual(flat_points[active], flat_weights[active], m, tt, x)
        M[active], t[active], X[active] = m, tt, x
        done = (r >= residual[active] * (1 - _ALS_RELATIVE_DECREASE)) | (r <= _ALS_EXACT * spread[active])
        residual[active] = r
        active = active[~done]
    return M, t, X


def _start(points: F64, weights: F64, determined: NDArray[np.bool_], first_frame: int) -> tuple[F64, F64, F64]:
    """The start of the sweeps: the SVD of the block of joints that every view of a subset sees
    (exact for noise-free 2D), the joints from those views, the other cameras from the joints.

    The subset is every view when four or more joints are seen by all (a frame's usual case), else
    the views left after dropping, one at a time, the view whose loss adds most common joints,
    until four are common; without such a subset (or when a left-out view would see fewer than
    four of the joints it fixes), the SVD of the matrix with missing entries filled by their
    view's mean. Zero rows and columns in the SVD leave that of the block as it is."""
    B, C, J = weights.shape
    seen = weights > 0
    views = np.ones((B, C), dtype=bool)
    columns = seen.all(axis=1)  # (B, J)
    for b in np.flatnonzero(columns.sum(axis=-1) < 4):  # rare: a per-frame search
        views[b], columns[b] = _view_subset(seen[b])
    mean = (weights[..., None] * points).sum(axis=2) / weights.sum(axis=2)[..., None]  # (B, C, 2)
    filled = np.where(seen[..., None], points, mean[:, :, None, :])
    rows = np.swapaxes(filled, -1, -2).reshape(B, 2 * C, J)  # x and y rows of each view
    used = np.repeat(views, 2, axis=1)[:, :, None] & columns[:, None, :]  # (B, 2C, J)
    centre = (rows * used).sum(axis=-1, keepdims=True) / np.maximum(used.sum(axis=-1, keepdims=True), 1)
    u, sv, vt = np.linalg.svd((rows - centre) * used, full_matrices=False)
    flat = np.flatnonzero(sv[:, 2] <= 1e-9 * sv[:, 0])
    if len(flat):
        raise ValueError(f"frames[{first_frame + flat[0]}]: the 2D evidence has rank below 3: the views see the "
                         "pose from one direction, or its joints lie in a plane; there is no 3D shape to factorise")
    M = (u[:, :, :3] * sv[:, None, :3]).reshape(B, C, 2, 3)
    t = centre.reshape(B, C, 2)
    inside = weights * views[..., None]
    fixed = (inside > 0).sum(axis=1) >= 2  # (B, J): joints two views of the subset see
    X = _joint_step(points, inside, fixed, M, t)
    M, t = _camera_step(points, weights * fixed[:, None, :], X, first_frame + np.arange(B))
    return M, t, X


def _view_subset(seen: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """seen (C, J) -> views (C,) and columns (J,) of the start's SVD (see :func:`_start`)."""
    C = seen.shape[0]
    views = np.ones(C, dtype=bool)
    while seen[views].all(axis=0).sum() < 4 and views.sum() > 2:
        gains = [seen[views & (np.arange(C) != c)].all(axis=0).sum() if views[c] else -1 for c in range(C)]
        views[int(np.argmax(gains))] = False
    columns = seen[views].all(axis=0)
    fixed = seen[views].sum(axis=0) >= 2
    if columns.sum() >= 4 and ((seen & fixed).sum(axis=1) >= 4).all():
        return views, columns
    return np.ones(C, dtype=bool), np.ones(seen.shape[1], dtype=bool)


def _matmul(a: F64, b: F64) -> F64:
    """(..., n, k) @ (..., k, m) for small k, as k broadcast products: the same bits for a frame
    whatever the batch around it (and faster than matmul's loop over tiny matrices)."""
    out = a[..., :, 0:1] * b[..., 0:1, :]
    for k in range(1, a.shape[-1]):
        out = out + a[..., :, k:k + 1] * b[..., k:k + 1, :]
    return out


def _residual(flat_points: F64, flat_weights: F64, M: F64, t: F64, X: F64) -> F64:
    """(B,) ``sum_cj w |p - M X - t|^2`` from points and weights laid out (B, J, 2C) (x, y per view)."""
    B, C = t.shape[:2]
    flat = M.reshape(B, 2 * C, 3)
    squared = (flat_points - X @ np.swapaxes(flat, -1, -2) - t.reshape(B, 1, 2 * C)) ** 2
    return _sum_last((flat_weights * squared).reshape(B, -1))


def _solve_symmetric(A: F64, rhs: F64) -> F64:
    """A (..., 9) the entries of symmetric positive-definite 3x3 matrices, rhs (..., 3) -> A^-1 rhs
    (..., 3), by the adjugate."""
    a, b, c, d, e, f = A[..., 0], A[..., 1], A[..., 2], A[..., 4], A[..., 5], A[..., 8]
    r0, r1, r2 = rhs[..., 0], rhs[..., 1], rhs[..., 2]
    adj00, adj01, adj02 = d * f - e * e, c * e - b * f, b * e - c * d
    adj11, adj12, adj22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * adj00 + b * adj01 + c * adj02
    out = np.empty(rhs.shape)
    out[..., 0] = (adj00 * r0 + adj01 * r1 + adj02 * r2) / det
    out[..., 1] = (adj01 * r0 + adj11 * r1 + adj12 * r2) / det
    out[..., 2] = (adj02 * r0 + adj12 * r1 + adj22 * r2) / det
    return out


def _joint_step(points: F64, weights: F64, determined: NDArray[np.bool_], M: F64, t: F64) -> F64:
    """Joints given the cameras: per (b, j), ``sum_c w M_c^T M_c X = sum_c w M_c^T (p - t_c)``; a joint
    seen by fewer than two views is pulled (weakly) towards the origin, the centre of the gauge."""
    B, C, J = weights.shape
    normal = _matmul(np.swapaxes(M, -1, -2), M).reshape(B, C, 9)
    A = np.swapaxes(weights, 1, 2) @ normal  # (B, J, 9)
    weighted = np.moveaxis(weights[..., None] * (points - t[:, :, None, :]), 2, 1).reshape(B, J, 2 * C)
    rhs = weighted @ M.reshape(B, 2 * C, 3)  # (B, J, 3)
    typical = (A[..., 0] + A[..., 4] + A[..., 8]).mean(axis=-1) / 3  # (B,)
    ridge = np.where(determined, 0.0, _RIDGE * typical[:, None])  # (B, J)
    A[..., [0, 4, 8]] += ridge[..., None]
    return _solve_symmetric(A, rhs)


def _whiten(M: F64, t: F64, X: F64) -> tuple[F64, F64, F64]:
    """Re-express the fit with X centred and ``X^T X = I``: with ``L L^T = Xc^T Xc`` (Cholesky),
    ``X' = Xc L^-T``, ``M' = M L``, ``t' = t + M mu`` (the same projections; keeps the sweeps well
    conditioned)."""
    mu = X.mean(axis=1)  # (B, 3)
    t = t + _matmul(M, mu[:, None, :, None])[..., 0]
    centred = X - mu[:, None]
    gram = _sum_last(np.moveaxis(centred[..., :, None] * centred[..., None, :], 1, -1))  # (B, 3, 3)
    gram = gram + 1e-12 * (gram[:, 0, 0] + gram[:, 1, 1] + gram[:, 2, 2])[:, None, None] * np.eye(3)
    L = np.linalg.cholesky(gram)
    return _matmul(M, L[:, None]), t, _matmul(centred, np.swapaxes(_lower_inverse(L), -1, -2))


def _lower_inverse(L: F64) -> F64:
    """(..., 3, 3) lower-triangular with a positive diagonal -> its inverse (lower-triangular)."""
    a, b, c, d, e, f = L[..., 0, 0], L[..., 1, 0], L[..., 1, 1], L[..., 2, 0], L[..., 2, 1], L[..., 2, 2]
    inverse = np.zeros(L.shape)
    inverse[..., 0, 0], inverse[..., 1, 1], inverse[..., 2, 2] = 1 / a, 1 / c, 1 / f
    inverse[..., 1, 0] = -b / (a * c)
    inverse[..., 2, 1] = -e / (c * f)
    inverse[..., 2, 0] = (b * e - c * d) / (a * c * f)
    return inverse


def _camera_step(points: F64, weights: F64, X: F64, frames: NDArray[np.int64]) -> tuple[F64, F64]:
    """Cameras given the joints: per (b, c) the weighted least-squares ``[M_c | t_c]`` (8 numbers);
    ValueError naming ``frames[b]`` where the joints a view sees do not fix its camera."""
    B, C, J = weights.shape
    homogeneous = np.concatenate([X, np.ones((B, J, 1))], axis=-1)[:, None]  # (B, 1, J, 4)
    weighted = np.swapaxes(weights[..., None] * homogeneous, -1, -2)  # (B, C, 4, J)
    normal = weighted @ homogeneous  # (B, C, 4, 4)
    try:
        solution = np.linalg.solve(normal, weighted @ points)  # (B, C, 4, 2)
    except np.linalg.LinAlgError:
        counts = (weights > 0).sum(axis=-1)  # (B, C)
        b, c = np.argwhere(np.linalg.matrix_rank(normal) < 4)[0]
        raise ValueError(f"frames[{frames[b]}]: camera {c} sees {counts[b, c]} joint(s) that another view also "
                         "sees, or they lie in a plane; the factorisation needs four or more spread in 3D") from None
    return np.swapaxes(solution[:, :, :3], -1, -2), solution[:, :, 3]


# --------------------------------------------------------------------------- step 2: the metric upgrade


def _quadratic_rows(a: F64, b: F64) -> F64:
    """(..., 3), (..., 3) -> (..., 6): the coefficients of ``a Q b^T`` in ``[q00, q01, q02, q11, q12, q22]``."""
    return np.stack([a[..., 0] * b[..., 0], a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0],
                     a[..., 0] * b[..., 2] + a[..., 2] * b[..., 0], a[..., 1] * b[..., 1],
                     a[..., 1] * b[..., 2] + a[..., 2] * b[..., 1], a[..., 2] * b[..., 2]], axis=-1)


def _symmetric(q: F64) -> F64:
    """(..., 6) -> (..., 3, 3)."""
    return q[..., [0, 1, 2, 1, 3, 4, 2, 4, 5]].reshape(q.shape[:-1] + (3, 3))


def _upgrade_system(M: F64) -> tuple[F64, F64]:
    """M (B, C, 2, 3) -> the constraint rows (B, 2C, 6) and the scale row (B, 6): mean squared scale."""
    m, n = M[:, :, 0], M[:, :, 1]
    mm, nn = _quadratic_rows(m, m), _quadratic_rows(n, n)
    rows = np.concatenate([mm - nn, _quadratic_rows(m, n)], axis=1)
    scale = np.swapaxes((mm + nn) / 2, 1, 2).mean(axis=-1)
    return rows, scale


def _metric_upgrade_many(M: F64, first_frame: int) -> F64:
    """Three or more views: Q (B, 3, 3) from the smallest right singular vector of the constraints."""
    rows, scale = _upgrade_system(M)
    q = np.linalg.svd(rows)[2][:, -1]  # (B, 6)
    norm = _sum_last(scale * q)
    bad = np.flatnonzero(np.abs(norm) <= 1e-12 * np.linalg.norm(scale, axis=-1) * np.linalg.norm(q, axis=-1))
    if len(bad):
        raise ValueError(f"frames[{first_frame + bad[0]}]: the metric upgrade failed: no camera scale fits the "
                         "views (degenerate view directions)")
    return _symmetric(q / norm[:, None])


def _metric_upgrade(M: F64, X: F64, determined: NDArray[np.bool_], skeleton: Skeleton) -> F64:
    """Two views: Q (B, 3, 3), the positive-definite member of the family (the 2D null space of the 4
    constraints, scale fixed) whose bone-length ratios are nearest the rest pose's."""
    rows, scale = _upgrade_system(M)
    basis = np.linalg.svd(rows)[2][:, -2:]  # (B, 2, 6)
    bones = np.array(skeleton.bones)
    vectors = X[:, bones[:, 1]] - X[:, bones[:, 0]]  # (B, nB, 3)
    valid = determined[:, bones[:, 0]] & determined[:, bones[:, 1]]  # (B, nB)
    reference = skeleton.bone_lengths(skeleton.rest_pose())

    def cost(angle: F64) -> F64:  # angle (B, G) -> (B, G)
        q = np.cos(angle)[..., None] * basis[:, None, 0] + np.sin(angle)[..., None] * basis[:, None, 1]
        q = q / _sum_last(scale[:, None] * q)[..., None]  # (B, G, 6)
        return _bone_mismatch(q, vectors, valid, reference)

    step = np.pi / _GRID
    grid = np.broadcast_to(np.arange(_GRID) * step, (M.shape[0], _GRID))
    best = grid[np.arange(M.shape[0]), np.argmin(cost(grid), axis=-1)]
    low, high = best - step, best + step
    ratio = (np.sqrt(5.0) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = cost(a[:, None])[:, 0], cost(b[:, None])[:, 0]
    for _ in range(_GOLDEN_STEPS):
        left = fa <= fb  # the minimum is in [low, b]
        high = np.where(left, b, high)
        low = np.where(left, low, a)
        a, b = np.where(left, high - ratio * (high - low), b), np.where(left, a, low + ratio * (high - low))
        fresh = cost(np.where(left, a, b)[:, None])[:, 0]
        fa, fb = np.where(left, fresh, fb), np.where(left, fa, fresh)
    angle = (low + high) / 2
    q = np.cos(angle)[:, None] * basis[:, 0] + np.sin(angle)[:, None] * basis[:, 1]
    q = q / _sum_last(scale * q)[:, None]
    return _symmetric(q)


def _bone_mismatch(q: F64, vectors: F64, valid: NDArray[np.bool_], reference: F64) -> F64:
    """q (B, G, 6), bone vectors (B, nB, 3) of the affine pose -> (B, G): ``sum (l / mean l - r / mean r)^2``
    over the valid bones, with ``l^2 = d Q^-1 d^T`` the metric lengths; inf where Q is not positive definite."""
    a, b, c, d, e, f = np.moveaxis(q, -1, 0)  # Q = [[a b c] [b d e] [c e f]]
    minor = a * d - b * b
    det = a * (d * f - e * e) - b * (b * f - c * e) + c * (b * e - c * d)
    positive = (a > 0) & (minor > 0) & (det > 0)
    adjugate = np.stack([d * f - e * e, c * e - b * f, b * e - c * d, a * f - c * c, b * c - a * e, minor], axis=-1)
    inverse = adjugate / np.where(positive, det, 1.0)[..., None]  # (B, G, 6)
    x, y, z = np.moveaxis(vectors, -1, 0)  # (B, nB)
    products = np.stack([x * x, 2 * x * y, 2 * x * z, y * y, 2 * y * z, z * z], axis=-1)  # (B, nB, 6)
    squared = inverse @ np.swapaxes(products, -1, -2)  # (B, G, nB)
    lengths = np.sqrt(np.maximum(squared, 0.0)) * valid[:, None, :]
    count = valid.sum(axis=-1)  # (B,)
    ratios = lengths / np.maximum(_sum_last(lengths) / count[:, None], np.finfo(float).tiny)[..., None]
    wanted = valid * reference / (valid @ reference / count)[:, None]  # (B, nB)
    mismatch = _sum_last((ratios - wanted[:, None, :]) ** 2)
    return np.where(positive, mismatch, np.inf)


# --------------------------------------------------------------------------- steps 3 and 4: cameras, chirality


def _cameras(M: F64) -> tuple[F64, F64]:
    """Metric M (B, C, 2, 3) -> rotations (B, C, 3, 3) (columns: the orthonormalised rows m, n and
    their cross product) and scales (B, C) (the mean singular value of ``[m, n]``)."""
    u, sv, vt = np.linalg.svd(np.swapaxes(M, -1, -2), full_matrices=False)  # [m n] (3, 2)
    pair = u @ vt  # (B, C, 3, 2)
    third = np.cross(pair[..., 0], pair[..., 1])
    return np.concatenate([pair, third[..., None]], axis=-1), sv.mean(axis=-1)


# --------------------------------------------------------------------------- step 5: shifts, undetermined joints


def _shifts(points: F64, weights: F64, X: F64, rotation: F64, scale: F64) -> F64:
    """(B, C, 3): the weighted least-squares image shift of each view (depth 0)."""
    projected = scale[..., None, None] * (X[:, None] @ rotation[..., :2])  # (B, C, J, 2)
    residual = np.moveaxis(weights[..., None] * (points - projected), 2, -1)  # (B, C, 2, J)
    shift = np.zeros(scale.shape + (3,))
    shift[..., :2] = _sum_last(residual) / _sum_last(weights)[..., None]
    return shift


def _fill_undetermined(X: F64, points: F64, weights: F64, determined: NDArray[np.bool_], rotation: F64,
                       scale: F64, shift: F64, rest: F64) -> F64:
    """Joints seen by fewer than two views: the point of their viewing ray (if any) nearest the rest
    pose aligned to the determined joints (similarity, proper rotation)."""
    frames = np.flatnonzero(~determined.all(axis=1))
    if not len(frames):
        return X
    X = X.copy()
    for b in frames:  # rare: frames with a joint seen by fewer than two views
        keep = determined[b]
        source, target = rest[keep], X[b, keep]
        source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
        u, sv, vt = np.linalg.svd((source - source_mean).T @ (target - target_mean))
        flip = np.sign(np.linalg.det(u @ vt))
        sv[2] *= flip
        u[:, 2] *= flip
        size = sv.sum() / ((source - source_mean) ** 2).sum()
        prior = size * (rest - source_mean) @ (u @ vt) + target_mean  # (J, 3)
        for j in np.flatnonzero(~keep):
            X[b, j] = prior[j]
            views = np.flatnonzero(weights[b, :, j] > 0)
            if len(views):  # one view: the prior moved onto that view's ray, parallel to its image plane
                c = views[0]
                camera = scale[b, c] * rotation[b, c, :, :2]  # (3, 2): x -> x @ camera + shift[:2]
                offset = points[b, c, j] - shift[b, c, :2] - prior[j] @ camera
                X[b, j] = prior[j] + offset @ camera.T / scale[b, c] ** 2
    return X
