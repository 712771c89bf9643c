"""Plain numpy references for every kernel of ``metapose_geom._core``.

Written from the documented mathematics (``design.md`` and the docstrings of
``metapose_geom.geometry`` / ``metapose_geom.metrics``), independently of the C++.
Each function takes any number of leading batch dimensions ``...`` and is
vectorised over them (no Python loop per item), so the benchmarks can time it
against the compiled core. No pytest in here: this module is imported from
``benchmarks/`` too.

Where a derivative has a short closed form it is written out (weak projection,
mixture gradient); where it does not (Gram-Schmidt, distortion) it is taken by
the complex step ``Im f(x + i h) / h``, which is exact to rounding for these
analytic functions, so the references below are written to accept complex input.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "complex_step_jacobian",
    "matrix_to_rodrigues",
    "matrix_to_rot6d",
    "mixture_log_likelihood",
    "mixture_log_likelihood_with_gradient",
    "nmpjpe",
    "nmpjpe_per_joint",
    "pck",
    "pmpjpe",
    "pmpjpe_per_joint",
    "procrustes",
    "project_perspective",
    "project_perspective_with_jacobian",
    "project_weak",
    "project_weak_with_jacobian",
    "rodrigues_to_matrix",
    "rot6d_to_matrix",
    "rot6d_to_matrix_with_jacobian",
    "undistort_points",
]

MIXTURE_WEIGHT_EPS = 1e-8


def complex_step_jacobian(function, x: np.ndarray, trailing: int, step: float = 1e-30) -> np.ndarray:
    """Jacobian of ``function`` (batched, analytic) with respect to the last ``trailing`` axes of ``x``.

    Returns ``output.shape + x.shape[-trailing:]``. Works when ``function`` maps each batch item
    independently and accepts complex input; exact to rounding (no subtractive cancellation).
    """
    x = np.asarray(x, dtype=np.float64)
    inner = x.shape[x.ndim - trailing :]
    columns = []
    for flat in range(int(np.prod(inner))):
        index = np.unravel_index(flat, inner)
        perturbed = x.astype(np.complex128)
        perturbed[(Ellipsis, *index)] += 1j * step
        columns.append(np.imag(function(perturbed)) / step)
    stacked = np.stack(columns, axis=-1)
    return stacked.reshape(stacked.shape[:-1] + inner)


def _norm(v: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    # sqrt(sum v*v) rather than abs(): analytic, so the complex step goes through it.
    return np.sqrt(np.sum(v * v, axis=axis, keepdims=keepdims))


# --------------------------------------------------------------------------- rotations


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3): rows b1 = a1/|a1|, b2 = Gram-Schmidt of a2 against b1, b3 = b1 x b2."""
    rot6d = np.asarray(rot6d)
    a1 = rot6d[..., 0:3]
    a2 = rot6d[..., 3:6]
    b1 = a1 / _norm(a1, keepdims=True)
    u2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = u2 / _norm(u2, keepdims=True)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-2)


def rot6d_to_matrix_with_jacobian(rot6d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 6) -> rotation (..., 3, 3), jacobian (..., 3, 3, 6) = d rotation[a, b] / d rot6d[i]."""
    rot6d = np.asarray(rot6d, dtype=np.float64)
    return rot6d_to_matrix(rot6d), complex_step_jacobian(rot6d_to_matrix, rot6d, trailing=1)


def matrix_to_rot6d(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two rows."""
    rotation = np.asarray(rotation)
    return rotation[..., :2, :].reshape(rotation.shape[:-2] + (6,))


def _skew(v: np.ndarray) -> np.ndarray:
    zero = np.zeros_like(v[..., 0])
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack(
        [
            np.stack([zero, -z, y], axis=-1),
            np.stack([z, zero, -x], axis=-1),
            np.stack([-y, x, zero], axis=-1),
        ],
        axis=-2,
    )


def rodrigues_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3): R = cos t I + sin t [k]x + (1 - cos t) k k^T, k = v / t (R @ x rotates x)."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(rotvec, axis=-1)
    zero = theta == 0
    safe = np.where(zero, 1.0, theta)
    axis = np.where(zero[..., None], np.array([1.0, 0.0, 0.0]), rotvec / safe[..., None])
    cos = np.cos(theta)[..., None, None]
    sin = np.sin(theta)[..., None, None]
    one_minus_cos = (2.0 * np.sin(theta / 2.0) ** 2)[..., None, None]  # accurate for small t
    outer = axis[..., :, None] * axis[..., None, :]
    return cos * np.eye(3) + sin * _skew(axis) + one_minus_cos * outer


def matrix_to_rodrigues(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 3) axis * angle, angle in [0, pi].

    Angle from atan2(|w|, (trace - 1) / 2) with w the axial vector of the antisymmetric part
    (= sin t * k). For t < pi / 2 the axis is w / |w|; above it the axis comes from the
    symmetric part (R + R^T) / 2 - cos t I = (1 - cos t) k k^T, its sign taken from w.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    w = 0.5 * np.stack(
        [
            rotation[..., 2, 1] - rotation[..., 1, 2],
            rotation[..., 0, 2] - rotation[..., 2, 0],
            rotation[..., 1, 0] - rotation[..., 0, 1],
        ],
        axis=-1,
    )
    cos = np.clip((np.trace(rotation, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    sin = np.linalg.norm(w, axis=-1)
    theta = np.arctan2(sin, cos)

    # Small and moderate angles: v = t * w / |w| (v = w when |w| = 0, i.e. the identity).
    ratio = np.where(sin > 0, theta / np.where(sin > 0, sin, 1.0), 1.0)
    generic = w * ratio[..., None]

    # Large angles: k k^T from the symmetric part, column of the largest diagonal entry.
    # (Computed for every item and selected below; meaningless items may divide by ~0.)
    with np.errstate(divide="ignore", invalid="ignore"):
        axis = _axis_from_symmetric_part(rotation, cos, w)
    return np.where((cos < 0)[..., None], theta[..., None] * axis, generic)


def _axis_from_symmetric_part(rotation, cos, w):
    symmetric = 0.5 * (rotation + np.swapaxes(rotation, -1, -2)) - cos[..., None, None] * np.eye(3)
    diagonal = np.diagonal(symmetric, axis1=-2, axis2=-1)
    column = np.argmax(diagonal, axis=-1)
    picked = np.take_along_axis(symmetric, column[..., None, None], axis=-1)[..., 0]
    pivot = np.take_along_axis(diagonal, column[..., None], axis=-1)[..., 0]
    scale = np.sqrt(np.maximum(pivot * (1.0 - cos), np.finfo(float).tiny))
    axis = picked / scale[..., None]
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    flip = np.sum(axis * w, axis=-1) < 0
    return np.where(flip[..., None], -axis, axis)


# --------------------------------------------------------------------------- cameras


def project_weak(pose, rotation, scale, shift) -> np.ndarray:
    """pose (..., J, 3), rotation (..., C, 3, 3), scale (..., C), shift (..., C, 3) -> (..., C, J, 2).

    First two coordinates of ``scale[c] * pose @ rotation[c] + shift[c]`` (row vectors).
    """
    pose, rotation, scale, shift = (np.asarray(a) for a in (pose, rotation, scale, shift))
    rotated = np.einsum("...ji,...cik->...cjk", pose, rotation)
    full = scale[..., :, None, None] * rotated + shift[..., :, None, :]
    return full[..., :2]


def project_weak_with_jacobian(pose, rotation, scale, shift):
    """Values and closed-form derivatives of :func:`project_weak`.

    Returns points (..., C, J, 2), d_pose (..., C, J, 2, 3), d_rotation (..., C, J, 2, 3, 3),
    d_scale (..., C, J, 2), d_shift (..., C, J, 2, 3).
    """
    pose, rotation, scale, shift = (np.asarray(a, dtype=np.float64) for a in (pose, rotation, scale, shift))
    points = project_weak(pose, rotation, scale, shift)
    s = scale[..., :, None, None, None]
    # d p[c,j,k] / d pose[j,i] = s_c R_c[i,k]
    d_pose = s * np.swapaxes(rotation[..., :, :, :2], -1, -2)[..., :, None, :, :]
    d_pose = np.broadcast_to(d_pose, points.shape + (3,)).copy()
    # d p[c,j,k] / d R_c[a,b] = s_c pose[j,a] [b == k]
    select = np.eye(3)[:2]  # (k, b)
    d_rotation = (
        scale[..., :, None, None, None, None]
        * pose[..., None, :, None, :, None]
        * select[:, None, :]
    )
    d_rotation = np.broadcast_to(d_rotation, points.shape + (3, 3)).copy()
    # d p[c,j,k] / d s_c = (pose[j] @ R_c)[k]
    d_scale = np.einsum("...ji,...cik->...cjk", pose, rotation)[..., :2]
    # d p[c,j,k] / d t_c[i] = [i == k]
    d_shift = np.broadcast_to(select, points.shape + (3,)).copy()
    return points, d_pose, d_rotation, d_scale, d_shift


def project_perspective(points, rotation, translation, intrinsics, distortion) -> np.ndarray:
    """OpenCV's projectPoints: points (..., N, 3) world -> pixels (..., N, 2).

    Xc = R @ X + t; x = Xc0 / Xc2, y = Xc1 / Xc2; r2 = x^2 + y^2;
    xd = x (1 + k1 r2 + k2 r2^2 + k3 r2^3) + 2 p1 x y + p2 (r2 + 2 x^2);
    yd = y (1 + k1 r2 + k2 r2^2 + k3 r2^3) + p1 (r2 + 2 y^2) + 2 p2 x y;
    u = fx xd + cx, v = fy yd + cy. Accepts complex input (for the complex step).
    """
    points, rotation, translation, intrinsics, distortion = (
        np.asarray(a) for a in (points, rotation, translation, intrinsics, distortion)
    )
    camera = np.einsum("...ab,...nb->...na", rotation, points) + translation[..., None, :]
    x = camera[..., 0] / camera[..., 2]
    y = camera[..., 1] / camera[..., 2]
    k1, k2, p1, p2, k3 = (distortion[..., i, None] for i in range(5))
    fx, fy, cx, cy = (intrinsics[..., i, None] for i in range(4))
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([fx * xd + cx, fy * yd + cy], axis=-1)


def project_perspective_with_jacobian(points, rotation, translation, intrinsics, distortion):
    """pixels (..., N, 2) and d pixels / d points (..., N, 2, 3) (complex step, per point)."""
    points = np.asarray(points, dtype=np.float64)
    pixels = project_perspective(points, rotation, translation, intrinsics, distortion)
    # Each pixel depends only on its own point, so perturbing coordinate i of every point at
    # once gives the per-point derivative.
    columns = []
    for i in range(3):
        perturbed = points.astype(np.complex128)
        perturbed[..., i] += 1e-30j
        columns.append(np.imag(project_perspective(perturbed, rotation, translation, intrinsics, distortion)) / 1e-30)
    return pixels, np.stack(columns, axis=-1)


def _distort_normalised(x, y, distortion):
    k1, k2, p1, p2, k3 = (distortion[..., i, None] for i in range(5))
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    # d radial / dx = 2 x g, d radial / dy = 2 y g
    g = k1 + 2 * k2 * r2 + 3 * k3 * r2**2
    dxd_dx = radial + 2 * x * x * g + 2 * p1 * y + 6 * p2 * x
    dxd_dy = 2 * x * y * g + 2 * p1 * x + 2 * p2 * y
    dyd_dx = 2 * x * y * g + 2 * p1 * x + 2 * p2 * y
    dyd_dy = radial + 2 * y * y * g + 6 * p1 * y + 2 * p2 * x
    return xd, yd, dxd_dx, dxd_dy, dyd_dx, dyd_dy


def undistort_points(pixels, intrinsics, distortion, iterations: int = 50) -> np.ndarray:
    """pixels (..., N, 2) -> normalised (x, y) (..., N, 2) with distort(x, y) = ((u - cx)/fx, (v - cy)/fy).

    Plain Newton iteration from the distorted point, all points at once, a fixed number of steps
    (enough for the cameras the tests use; no damping).
    """
    pixels, intrinsics, distortion = (np.asarray(a, dtype=np.float64) for a in (pixels, intrinsics, distortion))
    fx, fy, cx, cy = (intrinsics[..., i, None] for i in range(4))
    target_x = (pixels[..., 0] - cx) / fx
    target_y = (pixels[..., 1] - cy) / fy
    x, y = target_x.copy(), target_y.copy()
    for _ in range(iterations):
        xd, yd, a, b, c, d = _distort_normalised(x, y, distortion)
        rx, ry = xd - target_x, yd - target_y
        det = a * d - b * c
        x = x - (d * rx - b * ry) / det
        y = y - (a * ry - c * rx) / det
    return np.stack([x, y], axis=-1)


# --------------------------------------------------------------------------- mixtures


def _component_log_terms(points, mixtures):
    points, mixtures = np.asarray(points), np.asarray(mixtures)
    weight, mean, variance = mixtures[..., 0], mixtures[..., 1:3], mixtures[..., 3]
    difference = points[..., None, :] - mean
    squared = np.sum(difference * difference, axis=-1)
    terms = np.log(weight + MIXTURE_WEIGHT_EPS) - np.log(2 * np.pi * variance) - squared / (2 * variance)
    return terms, difference, variance


def mixture_log_likelihood(points, mixtures) -> np.ndarray:
    """points (..., 2), mixtures (..., K, 4) [w, mu_x, mu_y, var] -> (...), by log-sum-exp over K."""
    terms, _, _ = _component_log_terms(points, mixtures)
    peak = np.max(terms, axis=-1)
    return peak + np.log(np.sum(np.exp(terms - peak[..., None]), axis=-1))


def mixture_log_likelihood_with_gradient(points, mixtures):
    """Value (...) and gradient with respect to the point (..., 2):
    d/dp = -sum_k r_k (p - mu_k) / var_k with responsibilities r = softmax(terms)."""
    terms, difference, variance = _component_log_terms(points, mixtures)
    peak = np.max(terms, axis=-1)
    exponent = np.exp(terms - peak[..., None])
    total = np.sum(exponent, axis=-1)
    value = peak + np.log(total)
    responsibility = exponent / total[..., None]
    gradient = -np.sum((responsibility / variance)[..., None] * difference, axis=-2)
    return value, gradient


# --------------------------------------------------------------------------- procrustes


def procrustes(source, target, scale: str = "umeyama"):
    """Similarity taking source (..., N, 3) onto target (..., N, 3): target ~ s * source @ R + t.

    R = U diag(1, 1, d) V^T from the SVD A^T B = U S V^T of the centred sets, d = sign det(U V^T)
    (never a reflection). Scale: "umeyama" = (S . diag(1, 1, d)).sum() / |A|^2, "norm_ratio" =
    |B| / |A|. Coincident source points (|A| = 0 up to rounding): R = I, s = 1.
    Returns (rotation (..., 3, 3), scale (...), translation (..., 3)).
    """
    if scale not in ("umeyama", "norm_ratio"):
        raise ValueError(f"scale: unknown mode {scale!r}")
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    source_mean = source.mean(axis=-2)
    target_mean = target.mean(axis=-2)
    a = source - source_mean[..., None, :]
    b = target - target_mean[..., None, :]
    covariance = np.swapaxes(a, -1, -2) @ b
    if not np.all(np.isfinite(covariance)):  # LAPACK may not return on inf / NaN
        raise ValueError("procrustes: non-finite cross-covariance")
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u @ vt))
    sign = np.where(sign == 0, 1.0, sign)
    correction = np.ones(singular.shape)
    correction[..., 2] = sign
    rotation = (u * correction[..., None, :]) @ vt
    norm_a2 = np.sum(a * a, axis=(-2, -1))
    norm_b2 = np.sum(b * b, axis=(-2, -1))
    coincident = norm_a2 <= (1e-24 * np.sum(source * source, axis=(-2, -1)))
    safe = np.where(coincident, 1.0, norm_a2)
    if scale == "umeyama":
        s = np.sum(singular * correction, axis=-1) / safe
    else:
        s = np.sqrt(norm_b2 / safe)
    s = np.where(coincident, 1.0, s)
    rotation = np.where(coincident[..., None, None], np.eye(3), rotation)
    translation = target_mean - s[..., None] * np.einsum("...i,...ik->...k", source_mean, rotation)
    return rotation, s, translation


# --------------------------------------------------------------------------- metrics


def pmpjpe_per_joint(prediction, ground_truth, scale: str = "norm_ratio") -> np.ndarray:
    """(..., J, 3) x2 -> (..., J): distances after aligning prediction onto ground truth by procrustes."""
    prediction, ground_truth = np.asarray(prediction, dtype=np.float64), np.asarray(ground_truth, dtype=np.float64)
    rotation, s, translation = procrustes(prediction, ground_truth, scale)
    aligned = s[..., None, None] * (prediction @ rotation) + translation[..., None, :]
    return np.linalg.norm(aligned - ground_truth, axis=-1)


def pmpjpe(prediction, ground_truth, scale: str = "norm_ratio") -> np.ndarray:
    return pmpjpe_per_joint(prediction, ground_truth, scale).mean(axis=-1)


def nmpjpe_per_joint(prediction, ground_truth, mirror_fix: bool = False) -> np.ndarray:
    """(..., J, 3) x2 -> (..., J): both centred on their mean joint, prediction rescaled by
    |gt| / |pred| (Frobenius); with mirror_fix the better (lower mean) of it and its z-negated copy."""
    prediction, ground_truth = np.asarray(prediction, dtype=np.float64), np.asarray(ground_truth, dtype=np.float64)
    p = prediction - prediction.mean(axis=-2, keepdims=True)
    g = ground_truth - ground_truth.mean(axis=-2, keepdims=True)
    ratio = np.linalg.norm(g, axis=(-2, -1)) / np.linalg.norm(p, axis=(-2, -1))
    errors = np.linalg.norm(ratio[..., None, None] * p - g, axis=-1)
    if not mirror_fix:
        return errors
    mirrored = p * np.array([1.0, 1.0, -1.0])
    errors_mirrored = np.linalg.norm(ratio[..., None, None] * mirrored - g, axis=-1)
    better = errors_mirrored.mean(axis=-1) < errors.mean(axis=-1)
    return np.where(better[..., None], errors_mirrored, errors)


def nmpjpe(prediction, ground_truth, mirror_fix: bool = False) -> np.ndarray:
    return nmpjpe_per_joint(prediction, ground_truth, mirror_fix).mean(axis=-1)


def pck(prediction, ground_truth, threshold: float = 150.0, mirror_fix: bool = False) -> np.ndarray:
    """Fraction of joints whose NMPJPE-aligned error is below threshold: (...)."""
    return (nmpjpe_per_joint(prediction, ground_truth, mirror_fix) < threshold).mean(axis=-1)
