"""The solution vector: one frame's pose and weak cameras as the refiner and the network see them.

For C cameras and J joints (``design.md``, section 2)::

    x = [pose J*3 | rot6d C*6 | scale_raw C | shift C*3],   P = 3 J + 10 C,

camera ``c``'s scale is ``softplus(scale_raw[c])`` and its rotation is the 6D representation's
Gram-Schmidt matrix. Every other module reads and writes ``x`` through this one: the slices,
:func:`unpack` / :func:`pack` (numpy arrays or torch tensors, any leading batch dimensions), and
:func:`in_camera0`, which re-expresses a solution where camera 0 has rotation I and scale 1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._checks import check_int
from .geometry import rot6d_to_matrix

F64 = NDArray[np.float64]

__all__ = [
    "Layout",
    "Parts",
    "CameraFrame",
    "in_camera0",
    "pack",
    "raw_from_scale",
    "scale_from_raw",
    "solution_size",
    "unpack",
]


def solution_size(num_cameras: int, num_joints: int) -> int:
    """P = 3 J + 10 C: ``[pose J*3 | rot6d C*6 | scale_raw C | shift C*3]``."""
    return 3 * num_joints + 10 * num_cameras


@dataclass(frozen=True)
class Layout:
    """Where each part of the solution vector of C cameras and J joints sits in ``x`` (P,)."""

    num_cameras: int
    num_joints: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_cameras", check_int(self.num_cameras, "num_cameras", 1))
        object.__setattr__(self, "num_joints", check_int(self.num_joints, "num_joints", 1))

    @staticmethod
    def of(num_cameras: int, num_joints: int) -> Layout:
        """``Layout(num_cameras, num_joints)``, built once per pair (the solver's hot path asks often)."""
        try:
            return _cached_layout(num_cameras, num_joints)
        except TypeError:  # unhashable: let the constructor name the argument
            return Layout(num_cameras, num_joints)

    @cached_property
    def size(self) -> int:
        """P, the length of ``x``."""
        return solution_size(self.num_cameras, self.num_joints)

    @cached_property
    def pose(self) -> slice:
        """pose (J*3,), row-major (J, 3)."""
        return slice(0, 3 * self.num_joints)

    @cached_property
    def rot6d(self) -> slice:
        """rotations (C*6,), row-major (C, 6): each camera's first two rotation rows."""
        start = 3 * self.num_joints
        return slice(start, start + 6 * self.num_cameras)

    @cached_property
    def scale_raw(self) -> slice:
        """(C,) inverse-softplus scales."""
        start = 3 * self.num_joints + 6 * self.num_cameras
        return slice(start, start + self.num_cameras)

    @cached_property
    def shift(self) -> slice:
        """shifts (C*3,), row-major (C, 3), box units."""
        start = 3 * self.num_joints + 7 * self.num_cameras
        return slice(start, start + 3 * self.num_cameras)

    def check(self, x: Any, name: str = "x") -> None:
        """Raise ValueError unless ``x`` has shape (..., P)."""
        shape = tuple(x.shape)
        if not shape or shape[-1] != self.size:
            raise ValueError(f"{name}: expected shape (..., {self.size}) for {self.num_cameras} cameras and "
                             f"{self.num_joints} joints, got {shape}")


@functools.lru_cache(maxsize=256, typed=True)  # typed: True is not the integer 1 here
def _cached_layout(num_cameras: int, num_joints: int) -> Layout:
    return Layout(num_cameras, num_joints)


class Parts(NamedTuple):
    """The solution vector's four parts, with the leading dimensions of ``x``."""

    pose: Any  #: (..., J, 3)
    rot6d: Any  #: (..., C, 6)
    scale_raw: Any  #: (..., C)
    shift: Any  #: (..., C, 3)


def unpack(x: Any, num_cameras: int, num_joints: int) -> Parts:
    """x (..., P) -> pose (..., J, 3), rot6d (..., C, 6), scale_raw (..., C), shift (..., C, 3).

    Works on numpy arrays and torch tensors alike; the parts are views into ``x`` where the
    array library allows (always for contiguous ``x``). Raises ValueError when P is not 3 J + 10 C.
    """
    layout = Layout.of(num_cameras, num_joints)
    layout.check(x)
    lead = tuple(x.shape[:-1])
    C, J = num_cameras, num_joints
    return Parts(
        x[..., layout.pose].reshape(lead + (J, 3)),
        x[..., layout.rot6d].reshape(lead + (C, 6)),
        x[..., layout.scale_raw],
        x[..., layout.shift].reshape(lead + (C, 3)),
    )


def pack(pose: Any, rot6d: Any, scale_raw: Any, shift: Any) -> Any:
    """pose (..., J, 3), rot6d (..., C, 6), scale_raw (..., C), shift (..., C, 3) -> x (..., P).

    The inverse of :func:`unpack`, for numpy arrays (a new float64 array) or torch tensors
    (``torch.cat``, differentiable); the four parts must be of one kind and share leading dims.
    """
    parts = (pose, rot6d, scale_raw, shift)
    lead = tuple(pose.shape[:-2])
    C, J = rot6d.shape[-2], pose.shape[-2]
    expected = (lead + (J, 3), lead + (C, 6), lead + (C,), lead + (C, 3))
    for name, part, shape in zip(Parts._fields, parts, expected):
        if tuple(part.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(part.shape)}")
    flat = [part.reshape(lead + (-1,)) for part in parts]
    if type(pose).__module__.startswith("torch"):
        import torch

        return torch.cat(flat, dim=-1)
    return np.concatenate([np.asarray(part, dtype=np.float64) for part in flat], axis=-1)


def scale_from_raw(scale_raw: F64) -> F64:
    """softplus: the cameras' scales (..., C) from the vector's ``scale_raw`` (..., C), numpy."""
    return np.logaddexp(scale_raw, 0.0)


def raw_from_scale(scale: F64 | float) -> F64:
    """The inverse of :func:`scale_from_raw`: ``log(expm1(scale))`` for scales > 0."""
    return np.log(np.expm1(scale))


class CameraFrame(NamedTuple):
    """A solution expressed in camera 0's frame (numpy float64)."""

    pose: F64  #: (..., J, 3)
    rotation: F64  #: (..., C, 3, 3); rotation[..., 0, :, :] is the identity
    scale: F64  #: (..., C); scale[..., 0] is 1
    shift: F64  #: (..., C, 3)


def in_camera0(x: F64, num_cameras: int, num_joints: int) -> CameraFrame:
    """x (..., P) -> the pose and cameras re-expressed where camera 0 has rotation I and scale 1.

    The objective cannot see a common similarity of the pose and the cameras, and the refiner
    moves camera 0 with the others; this picks the representative with ``R_0 = I, s_0 = 1``:
    ``pose' = s_0 pose R_0``, ``R_c' = R_0^T R_c``, ``s_c' = s_c / s_0`` (shifts unchanged), which
    leaves every projection ``s_c X R_c + t_c`` as it was.

    The solver does this in its core call (``solution_in_camera0`` in ``cpp/include/metapose/refiner.hpp``,
    through ``_core.solve_weak``) with this function's arithmetic; ``tests/test_solve_single.py``
    holds the two equal.
    """
    pose, rot6d, scale_raw, shift = unpack(np.asarray(x), num_cameras, num_joints)
    rotation = rot6d_to_matrix(rot6d)
    scale = scale_from_raw(scale_raw)
    reference, reference_scale = rotation[..., :1, :, :], scale[..., :1]
    pose = reference_scale[..., None] * pose @ reference[..., 0, :, :]
    rotation = np.swapaxes(reference, -1, -2) @ rotation
    return CameraFrame(pose, rotation, scale / reference_scale, shift)
