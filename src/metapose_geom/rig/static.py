"""The static-rig objective and its Adam refiner: C fixed cameras, one person, F frames.

A fixed rig shares each camera's weak-perspective *rotation* across all frames; every frame has
its own pose ``X_f`` (J, 3) and, per camera, its own scale ``s_fc = softplus(scale_raw_fc)`` and
shift ``t_fc`` (3,), because the subject moves and each view's box (its units) changes per frame.
Camera ``c`` sees frame ``f``'s pose as ``s_fc * X_f @ R_c + t_fc`` (row vectors), the image point
being the first two coordinates, in box units (``design.md``, section 2).

Frame ``f`` uses the cameras ``U_f`` where ``used[f]`` is True (``n_f`` of them); a frame with fewer
than two, or with weight 0, does not enter. The objective of a frame that enters, ``f_f``, is the
refiner's (:func:`metapose_geom.nn.objective.refiner_objective`, no bone term) on its used cameras
alone, the mean negative log-likelihood over its ``n_f * J`` points, and::

    total = sum_f w_f n_f f_f / sum_f w_f n_f          (every used view counts equally)

So one frame with every camera used is exactly the iterative refiner's problem, and
:func:`refine_static_rig` on it gives ``method="ir"``'s refinement from the same start.

Both functions call the compiled core (``metapose_geom._core.rig_objective`` / ``rig_refine``), which
evaluates the frames in vector lanes and, for many frames, on several threads
(:func:`metapose_geom.set_num_threads`); results are the same bits on any thread count.

Example::

    rig = refine_static_rig(mixtures, used, rot6d, poses, scale_raw, shifts)   # 100 Adam steps
    relative = rig.rotation[0].T @ rig.rotation[1]   # camera 1 relative to camera 0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import layout
from .._checks import as_float64
from .._core_loader import core as _core
from ..geometry import rot6d_to_matrix
from ..solver.options import RefineOptions, resolve_options

F64 = NDArray[np.float64]

__all__ = ["StaticRig", "StaticRigGradient", "refine_static_rig", "static_rig_objective"]


class StaticRig(NamedTuple):
    """A refined static rig (C cameras, F frames, J joints), float64, box units.

    Frames that do not enter (fewer than two used cameras, or weight 0) keep their start values,
    as do the scale and shift of a view a frame does not use.
    """

    rotation: F64  #: (C, 3, 3) each camera's rotation, shared by every frame (``rot6d_to_matrix(rot6d)``)
    rot6d: F64  #: (C, 6) the rotations' 6D representation (their first two rows), as optimised
    poses: F64  #: (F, J, 3) each frame's pose
    scale: F64  #: (F, C) each view's weak scale, ``softplus(scale_raw)``
    scale_raw: F64  #: (F, C) the scales as optimised (inverse softplus)
    shifts: F64  #: (F, C, 3) each view's shift, box units (the third coordinate is not seen)
    objective: F64  #: (F,) each frame's objective ``f_f`` at the result; NaN for frames that do not enter
    total: float  #: the weighted total at the result


class StaticRigGradient(NamedTuple):
    """The gradient of the static-rig total with respect to each part of the rig (float64)."""

    rot6d: F64  #: (C, 6)
    poses: F64  #: (F, J, 3)
    scale_raw: F64  #: (F, C)
    shifts: F64  #: (F, C, 3)


def _as_used(used: ArrayLike) -> NDArray[np.bool_]:
    """``used`` as a C-contiguous bool array, or ValueError naming it (no 0/1 integers: a bool mask)."""
    try:
        array = np.asarray(used)
    except (TypeError, ValueError) as error:  # ragged nested lists and the like
        raise ValueError(f"used: expected a bool array (F, C), got {type(used).__name__} ({error})") from None
    if array.dtype != np.bool_:
        raise ValueError(f"used: expected a bool array (F, C), got dtype {array.dtype}")
    return np.ascontiguousarray(array)


def _rig_arrays(mixtures: ArrayLike, used: ArrayLike, frame_weights: ArrayLike | None, rot6d: ArrayLike,
                poses: ArrayLike, scale_raw: ArrayLike, shifts: ArrayLike) -> tuple[Any, ...]:
    """The arguments converted to what the core takes (it checks their shapes and values)."""
    mixtures = as_float64(mixtures, "mixtures")
    if frame_weights is None:
        frame_weights = np.ones(mixtures.shape[0] if mixtures.ndim else 1)
    return (mixtures, _as_used(used), as_float64(frame_weights, "frame_weights"), as_float64(rot6d, "rot6d"),
            as_float64(poses, "poses"), as_float64(scale_raw, "scale_raw"), as_float64(shifts, "shifts"))


def static_rig_objective(
    mixtures: ArrayLike,
    used: ArrayLike,
    frame_weights: ArrayLike,
    rot6d: ArrayLike,
    poses: ArrayLike,
    scale_raw: ArrayLike,
    shifts: ArrayLike,
) -> tuple[float, StaticRigGradient, F64]:
    """mixtures (F, C, J, K, 4), used (F, C) bool, frame_weights (F,), rot6d (C, 6), poses (F, J, 3),
    scale_raw (F, C), shifts (F, C, 3) -> (total, gradient, per_frame (F,)).

    Mixtures are ``[weight, mu_x, mu_y, variance]`` in box units; those of a view with
    ``used[f, c]`` False are never read (they may hold anything, NaN included). ``frame_weights``
    are >= 0. Returns the weighted total (module docstring), its gradient with respect to every
    part (:class:`StaticRigGradient`; zero for what does not enter) and each frame's objective
    ``f_f`` (NaN for frames that do not enter).

    Raises ValueError naming the argument for a wrong shape or dtype, NaN or inf (in ``x`` or a
    used view's mixtures), a negative frame weight, an invalid used mixture (negative weight,
    variance <= 0), a camera whose ``rot6d`` rows are zero or parallel, no frame with two used
    cameras and a weight > 0, or an objective that overflows.
    """
    total, d_rot6d, d_poses, d_scale_raw, d_shifts, per_frame = _core.rig_objective(
        *_rig_arrays(mixtures, used, frame_weights, rot6d, poses, scale_raw, shifts)
    )
    return float(total), StaticRigGradient(d_rot6d, d_poses, d_scale_raw, d_shifts), per_frame


def refine_static_rig(
    mixtures: ArrayLike,
    used: ArrayLike,
    rot6d: ArrayLike,
    poses: ArrayLike,
    scale_raw: ArrayLike,
    shifts: ArrayLike,
    frame_weights: ArrayLike | None = None,
    options: RefineOptions | Mapping[str, Any] | None = None,
) -> StaticRig:
    """mixtures (F, C, J, K, 4), used (F, C) bool, start rot6d (C, 6), poses (F, J, 3), scale_raw
    (F, C), shifts (F, C, 3) -> the refined :class:`StaticRig`.

    Minimises the static-rig total (module docstring) over the shared rotations and every frame's
    pose, scales and shifts by Keras-form Adam, as the iterative refiner does for one frame:
    ``options.steps`` steps with ``learning_rate``, ``beta1``, ``beta2`` and ``epsilon`` of
    :class:`~metapose_geom.solver.RefineOptions` (or a mapping of its fields; None: the defaults,
    100 steps at 1e-2). ``frame_weights`` (F,) >= 0, None for all 1. Units are box units, as the
    evidence.

    The start is the caller's, so ``options.init`` and ``options.seed`` play no part, and
    ``bone_reference`` has none without a bone term; ``bone_weight`` (the static rig has no bone
    term) and ``history_every`` (no history is recorded) must be 0, else ValueError. Raises
    ValueError as :func:`static_rig_objective` does, for Adam settings out of range, and when the
    refinement diverges (a rotation becomes undefined or the objective overflows).
    """
    options = resolve_options(RefineOptions, options, "refine_static_rig")
    if options.bone_weight != 0:
        raise ValueError(f"options.bone_weight: the static rig has no bone term; expected 0, got {options.bone_weight}")
    if options.history_every != 0:
        raise ValueError(f"options.history_every: the static rig records no history; expected 0, "
                         f"got {options.history_every}")
    rot6d_out, poses_out, scale_raw_out, shifts_out, per_frame, total = _core.rig_refine(
        *_rig_arrays(mixtures, used, frame_weights, rot6d, poses, scale_raw, shifts),
        options.steps, options.learning_rate, options.beta1, options.beta2, options.epsilon,
    )
    return StaticRig(
        rotation=rot6d_to_matrix(rot6d_out),
        rot6d=rot6d_out,
        poses=poses_out,
        scale=layout.scale_from_raw(scale_raw_out),
        scale_raw=scale_raw_out,
        shifts=shifts_out,
        objective=per_frame,
        total=float(total),
    )
