"""Differentiable torch versions of the geometry kernels of :mod:`metapose_geom.geometry`.

Each function takes tensors with any number of leading batch dimensions ``...`` (all
arguments of one call share them, broadcasting as torch does), in float64 or float32, on
any device, and is differentiable by autograd. In float64 they equal the compiled kernels
of :mod:`metapose_geom.geometry` to rounding; the tests hold them to 1e-12.

Conventions (``design.md``, section 2): the 6D rotation representation is the first two
*rows* of the matrix; a weak camera sees a pose ``X`` (J, 3) as ``scale * X @ R + shift``
(row vectors) and the image point is its first two coordinates; mixtures have last axis
``[weight, mu_x, mu_y, variance]``.

Unlike the numpy-facing API these functions do not validate their inputs (they run inside
training loops); degenerate inputs (a zero first 6D row, parallel rows, variances <= 0) give
non-finite values rather than errors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["MIXTURE_WEIGHT_FLOOR", "inverse_softplus", "mixture_log_likelihood", "project_weak", "rot6d_to_matrix",
           "softplus"]

#: added to every mixture weight before its log, as the original (zero weights stay harmless)
MIXTURE_WEIGHT_FLOOR = 1e-8

_LOG_2PI = math.log(2.0 * math.pi)


def rot6d_to_matrix(rot6d: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3): rows ``b1, b2, b3`` by Gram-Schmidt on the two 3-vectors ``a1, a2``.

    ``b1 = a1 / |a1|``, ``b2 = normalise(a2 - (b1 . a2) b1)``, ``b3 = b1 x b2``; the inverse of
    taking the first two rows ``[R00, R01, R02, R10, R11, R12]`` of a rotation.

    Example::

        >>> rot6d_to_matrix(torch.tensor([2.0, 0, 0, 1, 1, 0], dtype=torch.float64))
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]], dtype=torch.float64)
    """
    a1, a2 = rot6d[..., 0:3], rot6d[..., 3:6]
    b1 = a1 / torch.linalg.vector_norm(a1, dim=-1, keepdim=True)
    u2 = a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1
    b2 = u2 / torch.linalg.vector_norm(u2, dim=-1, keepdim=True)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def project_weak(pose: Tensor, rotation: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """pose (..., J, 3), rotation (..., C, 3, 3), scale (..., C), shift (..., C, 3) -> (..., C, J, 2).

    The first two coordinates of ``scale[c] * pose @ rotation[c] + shift[c]`` (row vectors), in
    the units of the inputs (box units inside the solver).

    Example::

        >>> pose = torch.tensor([[1.0, 2.0, 3.0]])                       # J = 1
        >>> project_weak(pose, torch.eye(3)[None], torch.tensor([2.0]), torch.zeros(1, 3))
        tensor([[[2., 4.]]])
    """
    # Only the first two columns of each rotation reach the image: (..., C, J, 2).
    rotated = torch.einsum("...ji,...cik->...cjk", pose, rotation[..., :, :, 0:2])
    return scale[..., :, None, None] * rotated + shift[..., :, None, 0:2]


def mixture_log_likelihood(points: Tensor, mixtures: Tensor) -> Tensor:
    """points (..., 2), mixtures (..., K, 4) ``[weight, mu_x, mu_y, variance]`` -> (...).

    ``log sum_k exp(log(w_k + 1e-8) - log(2 pi var_k) - |p - mu_k|^2 / (2 var_k))``, by
    log-sum-exp, so far-away points stay finite (and so does the gradient).

    Example::

        >>> mixture = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
        >>> mixture_log_likelihood(torch.zeros(2, dtype=torch.float64), mixture)  # -log(2 pi)
        tensor(-1.8379, dtype=torch.float64)
    """
    weight, mean, variance = mixtures[..., 0], mixtures[..., 1:3], mixtures[..., 3]
    squared = ((points[..., None, :] - mean) ** 2).sum(dim=-1)
    exponents = (
        torch.log(weight + MIXTURE_WEIGHT_FLOOR) - _LOG_2PI - torch.log(variance) - squared / (2.0 * variance)
    )
    return torch.logsumexp(exponents, dim=-1)


def softplus(value: Tensor) -> Tensor:
    """(...) -> (...): ``log(1 + exp(value))`` computed stably for every finite value.

    Unlike ``torch.nn.functional.softplus`` there is no linear cut-over threshold, so the
    result equals the exact function to rounding everywhere (the refiner's scale map).
    """
    # logaddexp(x, 0) = max(x, 0) + log1p(exp(-|x|)), with the exact derivative sigmoid(x).
    return torch.logaddexp(value, torch.zeros_like(value))


def inverse_softplus(scale: Tensor) -> Tensor:
    """(...) scales > 0 -> (...) raw values r with softplus(r) = scale, as the core computes it:
    ``log(expm1(s))``, and ``s + log1p(-exp(-s))`` above 30 (where expm1 would lose the digits)."""
    large = scale > 30.0
    # Each branch only sees the scales it serves, so neither overflows or warns in the other's range.
    small_part = torch.log(torch.expm1(torch.where(large, torch.ones_like(scale), scale)))
    safe = torch.where(large, scale, torch.full_like(scale, 31.0))
    large_part = safe + torch.log1p(-torch.exp(-safe))
    return torch.where(large, large_part, small_part)
