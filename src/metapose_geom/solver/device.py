"""The torch device path of ``"s1"`` and ``"ir"``: ``solve_batch(..., device=...)`` and
``solve_arrays(..., device=...)``.

With a device, a chunk of frames runs as one batch in torch (float64) on that device: stage 1
(:func:`metapose_geom.nn.stage1.stage1`, the torch twin of ``_core.stage1``), the objective at the
start and the Keras-form Adam refiner (:func:`metapose_geom.nn.objective.keras_adam_refine`, the
twin of ``_core.refine``). The results come back to numpy float64 on the CPU and go through the
same post-processing as the core's (camera 0's frame, projection, pixels, history, divergence
flags and warning), so a :class:`~metapose_geom.BatchSolution` or :class:`~metapose_geom.Solution`
is the same type either way, equal to the core's to 1e-6 (``tests/test_solve_device.py``).

- Starts: ``options.init`` ``"s1"`` (and ``"auto"`` with monocular guesses) runs in torch; the
  ``"factorization"`` and ``"random"`` starts are computed by the package's numpy code on the CPU
  and moved to the device.
- ``threads=`` sets the compiled core's threads and has no effect here; torch on the CPU uses its
  own pool (``torch.set_num_threads``).
- A frame the torch path cannot solve raises the ValueError the core path raises for it (a view
  whose guess is one point, an undefined start, a refinement that diverged to non-finite values),
  naming the frame.
- Methods ``"metapose"`` and ``"anipose"`` have no device path (a ValueError).

torch is the ``train`` extra; this module imports it only when a device is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .. import layout
from .options import RefineOptions

if TYPE_CHECKING:
    import torch

F64 = NDArray[np.float64]

__all__ = ["DEVICE_METHODS", "resolve_device", "solve_chunk"]

#: the registry's methods that take ``device=``
DEVICE_METHODS = ("s1", "ir")

# The core's messages for the frames it cannot solve (after solve's renaming to frames[i]), so that
# the two paths fail alike; tests/test_solve_device.py holds them equal to the core's.
_POINT_GUESS = "mono3d: a view's guess has all joints at one point, so it has no scale"
_OVERFLOW = "mono3d: values too large or too small for float64"
_UNDEFINED_START = "a camera rotation is undefined (zero or parallel rot6d rows) or the objective overflows"
_DIVERGED = "refinement diverged (a rotation became undefined or the objective overflowed); lower learning_rate"


def _torch() -> Any:
    """The torch module, or an ImportError that names the extra to install."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "device: the torch device path needs torch, which is not installed; install the train extra "
            "(pip install 'metapose-geom[train]') or pass device=None to use the compiled core"
        ) from error
    return torch


def resolve_device(device: Any, method: str) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:N" or a ``torch.device``) for ``method`` -> a torch.device.

    ValueError for another value, a method without a device path, or CUDA asked for where torch
    sees none (or not that many); ImportError naming the ``train`` extra without torch."""
    if not isinstance(device, str) and type(device).__module__ != "torch":
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', a torch.device or None, got {device!r}")
    torch = _torch()
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', a torch.device or None, got {device!r}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', a torch.device or None, got {device!r} "
                         f"({error})") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device: the device path runs on 'cpu' or 'cuda' (float64), got {device!r}")
    if method not in DEVICE_METHODS:
        raise ValueError(f"device: method {method!r} has no torch device path (only "
                         f"{' and '.join(repr(name) for name in DEVICE_METHODS)}); pass device=None")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} asked for CUDA, but torch {torch.__version__} sees no CUDA device "
                             "(torch.cuda.is_available() is False); pass device='cpu' or None")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device: {device!r} asked for CUDA device {resolved.index}, but torch sees {count}")
    return resolved


def _first_bad(ok: torch.Tensor) -> int | None:
    """The index of the first False in a (B,) bool tensor, or None."""
    bad = (~ok).nonzero()
    return None if bad.numel() == 0 else int(bad[0, 0])


def _raise_for(ok: torch.Tensor, first_frame: int, problem: str) -> None:
    """ValueError ``frames[i]: problem`` for the chunk's first frame where ``ok`` is False."""
    frame = _first_bad(ok)
    if frame is not None:
        raise ValueError(f"frames[{first_frame + frame}]: {problem}")


def solve_chunk(mixtures: F64, mono3d: F64 | None, start: F64 | None, refine: bool, options: RefineOptions,
                bones: NDArray[np.int64], reference: F64, first_frame: int, device: torch.device
                ) -> tuple[F64, F64, F64, F64, F64]:
    """A stacked chunk on ``device`` -> x (B, P), objective (B,), history x (B, H, P), history
    objective (B, H) and the objective at the start (B,), numpy float64 on the CPU.

    mixtures (B, C, J, K, 4) and mono3d (B, C, J, 3) are in box units; ``start`` (B, P) is the
    start when it is not stage 1 (None: stage 1 of mono3d, here in torch); bones (nB, 2) and the
    reference bone lengths (nB,) feed the bone term when ``options.bone_weight > 0``; with
    ``refine`` False the start is the result. Errors name frames from ``first_frame``."""
    torch = _torch()
    from ..nn.objective import keras_adam_refine, refiner_objective
    from ..nn.stage1 import stage1

    def to_device(array: np.ndarray) -> torch.Tensor:
        # torch takes only writable arrays (the skeleton's bones are read-only): copied where needed
        return torch.from_numpy(np.require(array, requirements=("C", "W"))).to(device)

    B, C, J = mixtures.shape[:3]
    P = layout.solution_size(C, J)
    if start is None:
        if mono3d is None:
            raise ValueError("mono3d: stage 1 needs monocular 3D guesses")
        first = stage1(to_device(mono3d))
        _raise_for(first.defined, first_frame, _POINT_GUESS)
        _raise_for(torch.isfinite(first.x).all(dim=-1), first_frame, _OVERFLOW)
        x0 = first.x
    else:
        x0 = to_device(start)
    mixtures_t = to_device(mixtures)
    bone_args: dict[str, Any] = {}
    if options.bone_weight > 0:
        bone_args = {"bones": to_device(bones), "bone_reference": to_device(reference),
                     "bone_weight": options.bone_weight}
    with torch.no_grad():
        start_objective = refiner_objective(mixtures_t, x0, **bone_args)
    _raise_for(torch.isfinite(start_objective), first_frame, _UNDEFINED_START)

    def numpy(tensor: torch.Tensor) -> F64:
        return tensor.detach().cpu().numpy()

    if not refine:
        return numpy(x0), numpy(start_objective), np.empty((B, 0, P)), np.empty((B, 0)), numpy(start_objective)
    result = keras_adam_refine(mixtures_t, x0, steps=options.steps, learning_rate=options.learning_rate,
                               beta1=options.beta1, beta2=options.beta2, epsilon=options.epsilon,
                               history_every=options.history_every, **bone_args)
    x, objective = result["x"], result["objective"]
    _raise_for(torch.isfinite(x).all(dim=-1) & torch.isfinite(objective), first_frame, _DIVERGED)
    return (numpy(x), numpy(objective), numpy(result["history_x"]), numpy(result["history_objective"]),
            numpy(start_objective))
