"""The iterative refiner (IR) in batched numpy, with analytic gradients: the benchmarks' numpy baseline.

Same problem and same optimiser as the compiled ``metapose_geom._core.refine`` (``design.md``,
sections 1-2), written as a competent numpy user would: every operation runs on the whole batch
of B frames at once, the only Python loop is over the Adam steps. Bone term: none (the
benchmark's setting).

Solution vector of a frame (P = 3 J + 10 C), read and written through :mod:`metapose_geom.layout`::

    x = [pose J*3 | rot6d C*6 | scale_raw C | shift C*3],   scale = softplus(scale_raw)

Objective of a frame, with R_c = rot6d_to_matrix(rot6d_c) (rows e0 = a/|a|, e1 = Gram-Schmidt of
b against e0, e2 = e0 x e1) and p_cj the first two coordinates of ``s_c X_j R_c + shift_c``::

    f(x) = -1/(C J) sum_{c,j} log sum_k (w_k + 1e-8) N(p_cj; mu_k, var_k I)

Gradient (g_cj = df/dp_cj = 1/(C J) sum_k r_k (p_cj - mu_k) / var_k, r the responsibilities):

    df/dX_j = sum_c s_c R_c[:, :2] g_cj       df/dR_c[a, k] = s_c sum_j X_ja g_cj,k  (k < 2; 0 for k = 2)
    df/ds_c = sum_j (X_j R_c)[:2] . g_cj      df/dshift_c = (sum_j g_cj, 0)
    df/dscale_raw_c = df/ds_c * sigmoid(scale_raw_c)

and df/drot6d by the chain rule back through e2 = e0 x e1, e1 = u/|u| with u = b - (e0.b) e0, and
e0 = a/|a|. Adam in the Keras form of the original (t = 1 .. steps)::

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  x -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from metapose_geom import layout
from numpy.typing import NDArray

F64 = NDArray[np.float64]

WEIGHT_FLOOR = 1e-8
_LOG_2PI = float(np.log(2.0 * np.pi))

__all__ = ["PreparedMixtures", "objective_and_gradient", "prepare_mixtures", "refine"]


class PreparedMixtures(NamedTuple):
    """The point-independent constants of the mixtures (B, C, J, K) each."""

    log_norm: F64  #: log(w + 1e-8) - log(2 pi var)
    mean_x: F64
    mean_y: F64
    half_precision: F64  #: 1 / (2 var)


def prepare_mixtures(mixtures: F64) -> PreparedMixtures:
    """mixtures (B, C, J, K, 4) ``[weight, mu_x, mu_y, variance]`` -> the constants the steps reuse."""
    weight, variance = mixtures[..., 0], mixtures[..., 3]
    return PreparedMixtures(
        np.log(weight + WEIGHT_FLOOR) - _LOG_2PI - np.log(variance),
        np.ascontiguousarray(mixtures[..., 1]),
        np.ascontiguousarray(mixtures[..., 2]),
        0.5 / variance,
    )


def _dot(a: F64, b: F64) -> F64:
    """(..., 3), (..., 3) -> (..., 1)."""
    return (a * b).sum(axis=-1, keepdims=True)


def _cross(a: F64, b: F64) -> F64:
    """(..., 3) x (..., 3), written out (np.cross is several times slower on small last axes)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _softplus(x: F64) -> F64:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x: F64) -> F64:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def objective_and_gradient(prepared: PreparedMixtures, x: F64, gradient: bool = True) -> tuple[F64, F64 | None]:
    """x (B, P) -> objective (B,), gradient (B, P) (None with ``gradient=False``)."""
    B = x.shape[0]
    C, J = prepared.log_norm.shape[1:3]
    pose, rot6d, scale_raw, shift = layout.unpack(x, C, J)  # (B, J, 3), (B, C, 6), (B, C), (B, C, 3)

    # rot6d -> rows e0, e1, e2 of R (B, C, 3) each
    a, b = rot6d[..., :3], rot6d[..., 3:]
    norm_a = np.sqrt(_dot(a, a))
    e0 = a / norm_a
    along = _dot(e0, b)
    u = b - along * e0
    norm_u = np.sqrt(_dot(u, u))
    e1 = u / norm_u
    e2 = _cross(e0, e1)
    top = np.stack([e0[..., :2], e1[..., :2], e2[..., :2]], axis=-2)  # R[:, :2] (B, C, 3, 2)

    scale = _softplus(scale_raw)  # (B, C)
    rotated = pose[:, None] @ top  # X R_c, first two columns (B, C, J, 2)
    points = scale[..., None, None] * rotated + shift[:, :, None, :2]

    # mixture log-likelihood, log-sum-exp over the K components
    dx = points[..., 0, None] - prepared.mean_x  # (B, C, J, K)
    dy = points[..., 1, None] - prepared.mean_y
    exponent = prepared.log_norm - prepared.half_precision * (dx * dx + dy * dy)
    peak = exponent.max(axis=-1, keepdims=True)
    terms = np.exp(exponent - peak)
    total = terms.sum(axis=-1, keepdims=True)
    log_likelihood = peak[..., 0] + np.log(total[..., 0])  # (B, C, J)
    objective = -log_likelihood.mean(axis=(1, 2))
    if not gradient:
        return objective, None

    # g = df/dp (B, C, J, 2)
    weight = terms * (2.0 / (C * J)) * prepared.half_precision / total  # r_k / var_k / (C J)
    g = np.stack([(weight * dx).sum(axis=-1), (weight * dy).sum(axis=-1)], axis=-1)

    d_shift = np.zeros((B, C, 3))
    d_shift[..., :2] = g.sum(axis=2)
    d_scale = (rotated * g).sum(axis=(2, 3))  # (B, C)
    d_scale_raw = d_scale * _sigmoid(scale_raw)
    scaled_g = scale[..., None, None] * g  # (B, C, J, 2)
    d_pose = (scaled_g @ top.swapaxes(-1, -2)).sum(axis=1)  # (B, J, 3)
    d_top = pose.swapaxes(-1, -2)[:, None] @ scaled_g  # df/dR[:, :2] (B, C, 3, 2)

    # back through the Gram-Schmidt: rows' gradients (third column of R has none)
    zero = np.zeros((B, C, 1))
    d_e0 = np.concatenate([d_top[..., 0, :], zero], axis=-1)
    d_e1 = np.concatenate([d_top[..., 1, :], zero], axis=-1)
    d_e2 = np.concatenate([d_top[..., 2, :], zero], axis=-1)
    d_e0 = d_e0 + _cross(e1, d_e2)  # e2 = e0 x e1
    d_e1 = d_e1 + _cross(d_e2, e0)
    d_u = (d_e1 - e1 * _dot(e1, d_e1)) / norm_u  # e1 = u / |u|
    e0_d_u = _dot(e0, d_u)
    d_b = d_u - e0_d_u * e0  # u = b - (e0 . b) e0
    d_e0 = d_e0 - e0_d_u * b - along * d_u
    d_a = (d_e0 - e0 * _dot(e0, d_e0)) / norm_a  # e0 = a / |a|

    grad = layout.pack(d_pose, np.concatenate([d_a, d_b], axis=-1), d_scale_raw, d_shift)
    return objective, grad


def refine(
    mixtures: F64,
    x0: F64,
    steps: int = 100,
    learning_rate: float = 1e-2,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-7,
) -> tuple[F64, F64]:
    """mixtures (B, C, J, K, 4), x0 (B, P) -> x (B, P) after ``steps`` Keras-form Adam steps, objective (B,) there."""
    prepared = prepare_mixtures(np.asarray(mixtures, dtype=np.float64))
    x = np.array(x0, dtype=np.float64)  # a copy
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for t in range(1, steps + 1):
        _, g = objective_and_gradient(prepared, x)
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        step = learning_rate * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        x -= step * m / (np.sqrt(v) + epsilon)
    objective, _ = objective_and_gradient(prepared, x, gradient=False)
    return x, objective
