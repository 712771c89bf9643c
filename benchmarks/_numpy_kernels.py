"""Plain vectorised numpy versions of the compiled kernels, for the benchmarks.

These are the fall-backs used when ``tests/reference.py`` does not provide a kernel (the
benchmarks prefer the test suite's references, see ``conftest.py``). They follow the contracts
in ``metapose_geom.geometry`` and ``metapose_geom.metrics`` and take the same arguments. They
are written as a competent numpy user would write them: whole-batch array operations, no Python
loop over items (``undistort_points`` loops over Newton iterations only).
"""

from __future__ import annotations

import numpy as np

_LOG_2PI = np.log(2.0 * np.pi)
_SCALE_MODES = ("umeyama", "norm_ratio")


# --------------------------------------------------------------------------- helpers


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) with ``skew(v) @ w == cross(v, w)``."""
    out = np.zeros(v.shape + (3,))
    out[..., 0, 1] = -v[..., 2]
    out[..., 0, 2] = v[..., 1]
    out[..., 1, 0] = v[..., 2]
    out[..., 1, 2] = -v[..., 0]
    out[..., 2, 0] = -v[..., 1]
    out[..., 2, 1] = v[..., 0]
    return out


# --------------------------------------------------------------------------- rotations


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3): rows e0 = a/|a|, e1 = Gram-Schmidt of b, e2 = e0 x e1."""
    a = rot6d[..., :3]
    b = rot6d[..., 3:]
    e0 = a / np.linalg.norm(a, axis=-1, keepdims=True)
    u = b - np.sum(e0 * b, axis=-1, keepdims=True) * e0
    e1 = u / np.linalg.norm(u, axis=-1, keepdims=True)
    e2 = np.cross(e0, e1)
    return np.stack([e0, e1, e2], axis=-2)


def rot6d_to_matrix_with_jacobian(rot6d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 6) -> rotation (..., 3, 3), jacobian (..., 3, 3, 6) = d rotation[a, b] / d rot6d[i]."""
    a = rot6d[..., :3]
    b = rot6d[..., 3:]
    eye = np.eye(3)
    norm_a = np.linalg.norm(a, axis=-1)[..., None, None]
    e0 = a / norm_a[..., 0]
    de0_da = (eye - e0[..., :, None] * e0[..., None, :]) / norm_a
    dot = np.sum(e0 * b, axis=-1)
    u = b - dot[..., None] * e0
    norm_u = np.linalg.norm(u, axis=-1)[..., None, None]
    e1 = u / norm_u[..., 0]
    du_de0 = -(e0[..., :, None] * b[..., None, :] + dot[..., None, None] * eye)
    du_da = du_de0 @ de0_da
    du_db = eye - e0[..., :, None] * e0[..., None, :]
    de1_du = (eye - e1[..., :, None] * e1[..., None, :]) / norm_u
    de1_da = de1_du @ du_da
    de1_db = de1_du @ du_db
    e2 = np.cross(e0, e1)
    skew_e0 = _skew(e0)
    de2_da = -_skew(e1) @ de0_da + skew_e0 @ de1_da
    de2_db = skew_e0 @ de1_db
    jacobian = np.zeros(rot6d.shape[:-1] + (3, 3, 6))
    jacobian[..., 0, :, :3] = de0_da
    jacobian[..., 1, :, :3] = de1_da
    jacobian[..., 1, :, 3:] = de1_db
    jacobian[..., 2, :, :3] = de2_da
    jacobian[..., 2, :, 3:] = de2_db
    return np.stack([e0, e1, e2], axis=-2), jacobian


def matrix_to_rot6d(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two rows, copied into a new array as the core returns one.

    (Without the copy numpy returns a view of the input and does no work at all.)
    """
    return rotation[..., :2, :].reshape(rotation.shape[:-2] + (6,)).copy()


def rodrigues_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3): I + sin(t)/t K + (1 - cos t)/t^2 K^2, K = skew(rotvec), Taylor near 0."""
    theta2 = np.sum(rotvec * rotvec, axis=-1)
    theta = np.sqrt(theta2)
    small = theta < 1e-4
    safe = np.where(small, 1.0, theta)
    sin_term = np.where(small, 1.0 - theta2 / 6.0, np.sin(safe) / safe)
    cos_term = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    k = _skew(rotvec)
    return np.eye(3) + sin_term[..., None, None] * k + cos_term[..., None, None] * (k @ k)


def matrix_to_rodrigues(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3): angle from atan2(|vee(R - R^T)|/2, (tr R - 1)/2); near pi from R + I."""
    r = rotation
    vee = 0.5 * np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], axis=-1)
    sin_theta = np.linalg.norm(vee, axis=-1)
    cos_theta = np.clip(0.5 * (np.trace(r, axis1=-2, axis2=-1) - 1.0), -1.0, 1.0)
    theta = np.arctan2(sin_theta, cos_theta)
    # Generic and small-angle case: rotvec = vee * theta / sin(theta), with theta/sin -> 1 at 0.
    small = sin_theta < 1e-12
    factor = np.where(small, 1.0, theta / np.where(small, 1.0, sin_theta))
    out = vee * factor[..., None]
    # Near pi: sin(theta) is tiny and loses the axis; use (R + R^T)/2 - cos(theta) I = (1 - cos) k k^T.
    near_pi = (cos_theta < -0.99) & (sin_theta < 0.1)
    if np.any(near_pi):
        rp = r[near_pi]
        sym = 0.5 * (rp + np.swapaxes(rp, -1, -2)) - cos_theta[near_pi, None, None] * np.eye(3)
        column = np.argmax(np.diagonal(sym, axis1=-2, axis2=-1), axis=-1)
        axis = np.take_along_axis(sym, column[:, None, None], axis=-1)[..., 0]
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        # Choose the axis sign that agrees with the (small) skew part.
        sign = np.where(np.sum(axis * vee[near_pi], axis=-1) < 0, -1.0, 1.0)
        out[near_pi] = axis * (sign * theta[near_pi])[:, None]
    return out


# --------------------------------------------------------------------------- cameras


def project_weak(pose: np.ndarray, rotation: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """pose (..., J, 3), rotation (..., C, 3, 3), scale (..., C), shift (..., C, 3) -> (..., C, J, 2)."""
    rotated = np.einsum("...ja,...cab->...cjb", pose, rotation[..., :, :2])
    return scale[..., None, None] * rotated + shift[..., :, None, :2]


def project_weak_with_jacobian(
    pose: np.ndarray, rotation: np.ndarray, scale: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`project_weak`, with d_pose, d_rotation, d_scale, d_shift materialised as arrays."""
    batch = pose.shape[:-2]
    joints = pose.shape[-2]
    cameras = rotation.shape[-3]
    rotated = np.einsum("...ja,...cab->...cjb", pose, rotation[..., :, :2])  # (..., C, J, 2)
    points = scale[..., None, None] * rotated + shift[..., :, None, :2]
    # d points[c, j, k] / d pose[j, i] = scale[c] * rotation[c, i, k]
    d_pose_cam = scale[..., None, None] * np.swapaxes(rotation[..., :, :2], -1, -2)  # (..., C, 2, 3)
    d_pose = np.empty(batch + (cameras, joints, 2, 3))
    d_pose[...] = d_pose_cam[..., :, None, :, :]
    # d points[c, j, k] / d rotation[c, a, b] = scale[c] * pose[j, a] * (b == k)
    scaled_pose = scale[..., :, None, None] * pose[..., None, :, :]  # (..., C, J, 3)
    d_rotation = np.zeros(batch + (cameras, joints, 2, 3, 3))
    d_rotation[..., 0, :, 0] = scaled_pose
    d_rotation[..., 1, :, 1] = scaled_pose
    d_shift = np.zeros(batch + (cameras, joints, 2, 3))
    d_shift[..., 0, 0] = 1.0
    d_shift[..., 1, 1] = 1.0
    return points, d_pose, d_rotation, rotated, d_shift


def _distort(x: np.ndarray, y: np.ndarray, distortion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brown-Conrady on normalised coordinates; distortion (..., 5) broadcast against x (..., N)."""
    k1, k2, p1, p2, k3 = (distortion[..., i, None] for i in range(5))
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xy = x * y
    return (
        x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x),
        y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy,
    )


def project_perspective(
    points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, intrinsics: np.ndarray, distortion: np.ndarray
) -> np.ndarray:
    """points (..., N, 3), R (..., 3, 3), t (..., 3), [fx, fy, cx, cy] (..., 4), (..., 5) -> pixels (..., N, 2)."""
    camera = np.einsum("...ab,...nb->...na", rotation, points) + translation[..., None, :]
    x = camera[..., 0] / camera[..., 2]
    y = camera[..., 1] / camera[..., 2]
    xd, yd = _distort(x, y, distortion)
    fx, fy, cx, cy = (intrinsics[..., i, None] for i in range(4))
    return np.stack([fx * xd + cx, fy * yd + cy], axis=-1)


def undistort_points(
    pixels: np.ndarray, intrinsics: np.ndarray, distortion: np.ndarray, max_iterations: int = 30
) -> np.ndarray:
    """pixels (..., N, 2) -> normalised (..., N, 2), by vectorised Newton on the distortion map.

    Starts from the distorted point; every iteration updates the whole batch; stops when the
    largest step is below 1e-15 (relative), which takes 4-6 iterations for lens-like distortion.
    """
    fx, fy, cx, cy = (intrinsics[..., i, None] for i in range(4))
    target_x = (pixels[..., 0] - cx) / fx
    target_y = (pixels[..., 1] - cy) / fy
    k1, k2, p1, p2, k3 = (distortion[..., i, None] for i in range(5))
    x = target_x.copy()
    y = target_y.copy()
    for _ in range(max_iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        g2 = 2.0 * (k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2))  # d radial / d r2, times 2
        xy = x * y
        fx_ = x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x) - target_x
        fy_ = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy - target_y
        jxx = radial + g2 * x * x + 2.0 * p1 * y + 6.0 * p2 * x
        jxy = g2 * xy + 2.0 * p1 * x + 2.0 * p2 * y
        jyy = radial + g2 * y * y + 6.0 * p1 * y + 2.0 * p2 * x
        det = jxx * jyy - jxy * jxy
        step_x = (jyy * fx_ - jxy * fy_) / det
        step_y = (jxx * fy_ - jxy * fx_) / det
        x -= step_x
        y -= step_y
        if max(np.max(np.abs(step_x)), np.max(np.abs(step_y))) < 1e-15 * (1.0 + max(np.max(np.abs(x)), np.max(np.abs(y)))):
            break
    return np.stack([x, y], axis=-1)


# --------------------------------------------------------------------------- mixtures


def _mixture_terms(points: np.ndarray, mixtures: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weight = mixtures[..., 0]
    mean = mixtures[..., 1:3]
    variance = mixtures[..., 3]
    diff = points[..., None, :] - mean  # (..., K, 2)
    exponent = np.log(weight + 1e-8) - _LOG_2PI - np.log(variance) - 0.5 * np.sum(diff * diff, axis=-1) / variance
    peak = np.max(exponent, axis=-1, keepdims=True)
    return exponent - peak, peak[..., 0], diff / variance[..., None]


def mixture_log_likelihood(points: np.ndarray, mixtures: np.ndarray) -> np.ndarray:
    """points (..., 2), mixtures (..., K, 4) -> (...), by log-sum-exp."""
    shifted, peak, _ = _mixture_terms(points, mixtures)
    return peak + np.log(np.sum(np.exp(shifted), axis=-1))


def mixture_log_likelihood_with_gradient(points: np.ndarray, mixtures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`mixture_log_likelihood`, with d / d point (..., 2) = -sum_k resp_k (p - mu_k) / var_k."""
    shifted, peak, scaled_diff = _mixture_terms(points, mixtures)
    exp = np.exp(shifted)
    total = np.sum(exp, axis=-1)
    responsibility = exp / total[..., None]
    gradient = -np.sum(responsibility[..., None] * scaled_diff, axis=-2)
    return peak + np.log(total), gradient


# --------------------------------------------------------------------------- procrustes and metrics


def procrustes(source: np.ndarray, target: np.ndarray, scale: str = "umeyama") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """source, target (..., N, 3) -> rotation (..., 3, 3), scale (...), translation (..., 3) with
    ``target ~ scale * source @ rotation + translation`` (proper rotation from the SVD of A^T B)."""
    if scale not in _SCALE_MODES:
        raise ValueError(f"scale: expected one of {_SCALE_MODES}, got {scale!r}")
    source_mean = source.mean(axis=-2)
    target_mean = target.mean(axis=-2)
    a = source - source_mean[..., None, :]
    b = target - target_mean[..., None, :]
    u, singular, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    sign = np.where(np.linalg.det(u @ vt) < 0.0, -1.0, 1.0)
    u[..., :, 2] *= sign[..., None]
    rotation = u @ vt
    norm_a2 = np.sum(a * a, axis=(-2, -1))
    if scale == "umeyama":
        factor = (singular[..., 0] + singular[..., 1] + sign * singular[..., 2]) / norm_a2
    else:
        factor = np.sqrt(np.sum(b * b, axis=(-2, -1)) / norm_a2)
    translation = target_mean - factor[..., None] * np.einsum("...a,...ab->...b", source_mean, rotation)
    return rotation, factor, translation


def pmpjpe(prediction: np.ndarray, ground_truth: np.ndarray, scale: str = "norm_ratio", per_joint: bool = False) -> np.ndarray:
    """Procrustes-aligned mean per-joint error (..., J, 3) x2 -> (...) or (..., J)."""
    rotation, factor, translation = procrustes(prediction, ground_truth, scale)
    aligned = factor[..., None, None] * (prediction @ rotation) + translation[..., None, :]
    errors = np.linalg.norm(aligned - ground_truth, axis=-1)
    return errors if per_joint else errors.mean(axis=-1)


def _nmpjpe_errors(prediction: np.ndarray, ground_truth: np.ndarray, mirror_fix: bool) -> np.ndarray:
    def errors_of(pred: np.ndarray) -> np.ndarray:
        p = pred - pred.mean(axis=-2, keepdims=True)
        g = ground_truth - ground_truth.mean(axis=-2, keepdims=True)
        ratio = np.sqrt(np.sum(g * g, axis=(-2, -1)) / np.sum(p * p, axis=(-2, -1)))
        return np.linalg.norm(ratio[..., None, None] * p - g, axis=-1)

    errors = errors_of(prediction)
    if mirror_fix:
        mirrored = prediction * np.array([1.0, 1.0, -1.0])
        mirrored_errors = errors_of(mirrored)
        better = mirrored_errors.mean(axis=-1) < errors.mean(axis=-1)
        errors = np.where(better[..., None], mirrored_errors, errors)
    return errors


def nmpjpe(prediction: np.ndarray, ground_truth: np.ndarray, mirror_fix: bool = False, per_joint: bool = False) -> np.ndarray:
    """Normalised mean per-joint error (..., J, 3) x2 -> (...) or (..., J)."""
    errors = _nmpjpe_errors(prediction, ground_truth, mirror_fix)
    return errors if per_joint else errors.mean(axis=-1)


def pck(prediction: np.ndarray, ground_truth: np.ndarray, threshold: float = 150.0, mirror_fix: bool = False) -> np.ndarray:
    """Fraction of joints with NMPJPE-aligned error below ``threshold``: (..., J, 3) x2 -> (...)."""
    return (_nmpjpe_errors(prediction, ground_truth, mirror_fix) < threshold).mean(axis=-1)
