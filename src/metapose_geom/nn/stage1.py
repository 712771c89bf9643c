"""Stage 1 (S1) in torch: the torch twin of the compiled ``_core.stage1`` (``cpp/include/metapose/stage1.hpp``).

From the monocular guesses ``G`` (..., C, J, 3) of every view, batched over any leading
dimensions, float64 or float32, on any device (``design.md``, section 1):

- camera 0 is the reference: R = I, s = 1, shift = m_0 (the mean joint of G_0);
- for k >= 1, with centred guesses A = G_0 - m_0 and B = G_k - m_k: R_k is the best *proper*
  rotation with A R ~ B (maximising trace(R^T A^T B), :func:`procrustes_rotation`, never a
  reflection), s_k = |B| / |A| (Frobenius norms), shift_k = m_k;
- the pose is the mean over k >= 1 of B R_k^T / s_k (view 0's own guess is not in it), centred
  (view 0's mean is in its shift);

returned as the solution vector ``[pose J*3 | rot6d C*6 | scale_raw C | shift C*3]`` with
``scale_raw`` the inverse softplus of s (the core's formula, exact also for s > 30).

The rotation is the core's: Horn's quaternion method, the unit eigenvector of the largest
eigenvalue of Horn's symmetric 4x4 matrix built from M = A^T B (divided by its largest entry, as
the core does). In float64 this equals the core to rounding (the tests hold it to 1e-12) wherever
the optimal rotation is unique. Where it is not, the two may pick different optima: M = 0 (both
give the identity here, as the core's Jacobi solver does), and guesses whose view 0 lies on one
line (any rotation about it is optimal; the core's Jacobi sweeps and ``torch.linalg.eigh`` each
pick one, so the rotations, and the pose when the other view is not on a line, may differ).

A frame with a view whose guess has all joints at one point has no scale: ``defined`` is False
there and its ``x`` holds non-finite values (the core raises for it). Nothing is validated
otherwise (this runs inside batched loops); eigh's gradient is unstable at repeated eigenvalues,
so differentiate through this only with care.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .. import layout
from .geometry import inverse_softplus

__all__ = ["Stage1Result", "procrustes_rotation", "stage1"]


class Stage1Result(NamedTuple):
    """What :func:`stage1` returns (shapes for mono3d (..., C, J, 3))."""

    x: Tensor  #: (..., P) the stage-1 solution vector, P = 3 J + 10 C
    defined: Tensor  #: (...) bool: False where a view's guess has all joints at one point


def _quaternion_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) unit quaternions ``[w, x, y, z]`` -> (..., 3, 3) rotation matrices (column-vector form)."""
    w, x, y, z = q.unbind(dim=-1)
    rows = [
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def procrustes_rotation(M: Tensor) -> Tensor:
    """M (..., 3, 3) -> R (..., 3, 3): the proper rotation (row-vector form, A R ~ B for
    M = A^T B) maximising trace(R^T M), by Horn's quaternion method; the identity where M = 0.

    Ties (a family of optimal rotations, e.g. collinear points) are broken by
    ``torch.linalg.eigh``, not necessarily as the core's Jacobi solver breaks them.
    """
    largest = M.abs().amax(dim=(-2, -1))
    zero = ~(largest > 0)
    M = M / torch.where(zero, torch.ones_like(largest), largest)[..., None, None]
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = (row.unbind(dim=-1) for row in M.unbind(dim=-2))
    horn = [
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ]
    N = torch.stack([torch.stack(row, dim=-1) for row in horn], dim=-2)
    _, vectors = torch.linalg.eigh(N)  # eigenvalues ascending: the last column is the largest's
    q = vectors[..., :, -1]
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    rotation = _quaternion_to_matrix(q).transpose(-1, -2)  # q rotates column vectors: it is R^T
    identity = torch.eye(3, dtype=M.dtype, device=M.device).expand_as(rotation)
    return torch.where(zero[..., None, None], identity, rotation)


def stage1(mono3d: Tensor) -> Stage1Result:
    """mono3d (..., C, J, 3) monocular guesses (box units) -> :class:`Stage1Result` (x (..., P),
    defined (...)), C >= 2: stage 1 of every frame (see the module's docstring)."""
    if mono3d.dim() < 3 or mono3d.shape[-1] != 3 or mono3d.shape[-3] < 2:
        raise ValueError(f"mono3d: expected shape (..., C >= 2, J, 3), got {tuple(mono3d.shape)}")
    means = mono3d.mean(dim=-2, keepdim=True)  # (..., C, 1, 3)
    centred = mono3d - means
    squared = (centred * centred).sum(dim=(-2, -1))  # (..., C) squared Frobenius norms
    defined = (squared > 0).all(dim=-1)
    reference, others = centred[..., :1, :, :], centred[..., 1:, :, :]  # A (..., 1, J, 3), B (..., C-1, J, 3)
    rotation = procrustes_rotation(reference.transpose(-1, -2) @ others)  # (..., C-1, 3, 3)
    scale = torch.sqrt(squared[..., 1:] / squared[..., :1])  # (..., C-1)
    pose = ((others @ rotation.transpose(-1, -2)) / scale[..., None, None]).mean(dim=-3)  # (..., J, 3)
    lead = mono3d.shape[:-3]
    identity = torch.eye(3, dtype=mono3d.dtype, device=mono3d.device).expand(*lead, 1, 3, 3)
    rotations = torch.cat([identity, rotation], dim=-3)  # (..., C, 3, 3)
    scales = torch.cat([torch.ones_like(scale[..., :1]), scale], dim=-1)  # (..., C)
    rot6d = rotations[..., :2, :].reshape(*rotations.shape[:-2], 6)  # first two rows
    x = layout.pack(pose, rot6d, inverse_softplus(scales), means[..., 0, :])
    return Stage1Result(x, defined)
