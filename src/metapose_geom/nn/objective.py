"""The iterative refiner's objective and its Keras-form Adam loop, in torch.

The solution vector of one frame (``design.md``, section 2) is::

    x = [pose J*3 | rot6d C*6 | scale_raw C | shift C*3],   P = 10 C + 3 J,

with camera ``c``'s scale ``softplus(scale_raw[c])``. The objective of a frame is

    -mean over (c, j) of mixture_log_likelihood(p_cj, mixtures[c, j])
    + bone_weight * || l / mean(l) - l_ref / mean(l_ref) ||_2      (only when bone_weight > 0)

with ``p_cj`` the weak projection of joint ``j`` into camera ``c`` and ``l`` the pose's bone
lengths. Everything takes any number of leading batch dimensions ``...`` (frames), float64 or
float32, and is differentiable by autograd; it equals the compiled refiner
(``metapose_geom._core.refiner_objective`` / ``refine``) in float64.
"""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import Tensor

from .. import layout
from .._checks import check_int
from .geometry import mixture_log_likelihood, project_weak, rot6d_to_matrix, softplus

__all__ = [
    "RefineResult",
    "bone_deviation",
    "bone_lengths",
    "keras_adam_refine",
    "pack_solution",
    "refiner_objective",
    "solution_size",
    "unpack_solution",
]


def solution_size(num_cameras: int, num_joints: int) -> int:
    """Length P of the solution vector: ``3 J + 6 C + C + 3 C`` (:func:`metapose_geom.layout.solution_size`)."""
    return layout.solution_size(num_cameras, num_joints)


def unpack_solution(x: Tensor, num_cameras: int, num_joints: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x (..., P) -> pose (..., J, 3), rot6d (..., C, 6), scale_raw (..., C), shift (..., C, 3).

    Views into ``x`` (no copy); raises ValueError when ``P != 10 C + 3 J``
    (:func:`metapose_geom.layout.unpack`).
    """
    return layout.unpack(x, num_cameras, num_joints)


def pack_solution(pose: Tensor, rot6d: Tensor, scale_raw: Tensor, shift: Tensor) -> Tensor:
    """pose (..., J, 3), rot6d (..., C, 6), scale_raw (..., C), shift (..., C, 3) -> x (..., P).

    The inverse of :func:`unpack_solution`, differentiable (:func:`metapose_geom.layout.pack`);
    raises ValueError when the parts' shapes do not fit together.
    """
    return layout.pack(pose, rot6d, scale_raw, shift)


def bone_lengths(pose: Tensor, bones: Tensor) -> Tensor:
    """pose (..., J, 3), bones (nB, 2) joint-index pairs (parent, child) -> lengths (..., nB)."""
    parents, children = bones[:, 0], bones[:, 1]
    return torch.linalg.vector_norm(pose[..., children, :] - pose[..., parents, :], dim=-1)


def refiner_objective(
    mixtures: Tensor,
    x: Tensor,
    bones: Tensor | None = None,
    bone_reference: Tensor | None = None,
    bone_weight: float = 0.0,
) -> Tensor:
    """mixtures (..., C, J, K, 4), x (..., P) -> objective (...), one value per frame.

    ``-mean over (c, j)`` of the mixture log-likelihood of the projected joints, plus, when
    ``bone_weight > 0``, ``bone_weight * || l / mean(l) - l_ref / mean(l_ref) ||_2`` with ``l``
    the bone lengths (..., nB) of the pose for ``bones`` (nB, 2) (integer joint pairs) and
    ``l_ref`` = ``bone_reference`` (..., nB). Raises ValueError when ``bone_weight > 0`` and
    ``bones`` or ``bone_reference`` is missing.
    """
    num_cameras, num_joints = mixtures.shape[-4], mixtures.shape[-3]
    pose, rot6d, scale_raw, shift = unpack_solution(x, num_cameras, num_joints)
    points = project_weak(pose, rot6d_to_matrix(rot6d), softplus(scale_raw), shift)
    value = -mixture_log_likelihood(points, mixtures).mean(dim=(-2, -1))
    if bone_weight > 0:
        if bones is None or bone_reference is None:
            raise ValueError("bones and bone_reference: required when bone_weight > 0")
        bones = torch.as_tensor(bones, dtype=torch.long, device=x.device)
        value = value + bone_weight * bone_deviation(pose, bones, bone_reference)
    return value


def bone_deviation(pose: Tensor, bones: Tensor, bone_reference: Tensor) -> Tensor:
    """pose (..., J, 3), bones (nB, 2), bone_reference (..., nB) -> (...): the refiner's bone term
    without its weight, ``|| l / mean(l) - l_ref / mean(l_ref) ||_2`` of the pose's bone lengths."""
    lengths = bone_lengths(pose, bones)
    relative = lengths / lengths.mean(dim=-1, keepdim=True)
    reference = bone_reference / bone_reference.mean(dim=-1, keepdim=True)
    return torch.linalg.vector_norm(relative - reference, dim=-1)


class RefineResult(TypedDict):
    """What :func:`keras_adam_refine` returns (shapes for x0 (..., P))."""

    x: Tensor  #: (..., P) the solution after ``steps`` updates
    objective: Tensor  #: (...) the objective at that solution
    history_x: Tensor  #: (..., H, P) the solution at steps 0, n, 2n, ... <= steps
    history_objective: Tensor  #: (..., H) the objective there


def keras_adam_refine(
    mixtures: Tensor,
    x0: Tensor,
    steps: int = 100,
    learning_rate: float = 1e-2,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-7,
    bones: Tensor | None = None,
    bone_reference: Tensor | None = None,
    bone_weight: float = 0.0,
    history_every: int = 0,
) -> RefineResult:
    """mixtures (..., C, J, K, 4), x0 (..., P) -> dict(x (..., P), objective (...),
    history_x (..., H, P), history_objective (..., H)).

    Minimises :func:`refiner_objective` of every frame independently, by ``steps`` iterations
    of Adam in the Keras form the original TensorFlow code used (t = 1 .. steps)::

        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        x -= learning_rate * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)

    with ``g`` the autograd gradient of that frame's objective. With ``history_every = n > 0``
    the solution and objective at steps 0, n, 2n, ... <= steps are recorded
    (H = steps // n + 1); with 0 nothing is (H = 0). ``objective`` is the value at the
    returned ``x``. Nothing is differentiated through the loop: the results are detached.
    """
    steps = check_int(steps, "steps", 0)
    history_every = check_int(history_every, "history_every", 0)

    def objective_of(x: Tensor) -> Tensor:
        return refiner_objective(mixtures, x, bones, bone_reference, bone_weight)

    mixtures = mixtures.detach()
    x = x0.detach().clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    history_x: list[Tensor] = []
    history_objective: list[Tensor] = []

    def record(step: int, value: Tensor) -> None:
        if history_every > 0 and step % history_every == 0:
            history_x.append(x.clone())
            history_objective.append(value.detach().clone())

    with torch.enable_grad():
        for t in range(1, steps + 1):
            x.requires_grad_(True)
            value = objective_of(x)
            # Frames are independent, so the gradient of the sum is each frame's own gradient.
            (gradient,) = torch.autograd.grad(value.sum(), x)
            x = x.detach()
            record(t - 1, value)
            m = beta1 * m + (1.0 - beta1) * gradient
            v = beta2 * v + (1.0 - beta2) * gradient * gradient
            step_size = learning_rate * (1.0 - beta2**t) ** 0.5 / (1.0 - beta1**t)
            x = x - step_size * m / (torch.sqrt(v) + epsilon)
    with torch.no_grad():
        final = objective_of(x)
    record(steps, final)

    lead = x.shape[:-1]
    if history_x:
        stacked_x = torch.stack(history_x, dim=-2)
        stacked_objective = torch.stack(history_objective, dim=-1)
    else:
        stacked_x = x.new_zeros(*lead, 0, x.shape[-1])
        stacked_objective = x.new_zeros(*lead, 0)
    return RefineResult(x=x, objective=final, history_x=stacked_x, history_objective=stacked_objective)
