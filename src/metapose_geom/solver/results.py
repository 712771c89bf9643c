"""What the solver returns: one frame's :class:`Solution`, or B frames stacked in a :class:`BatchSolution`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import geometry
from ..geometry import PerspectiveCameras

F64 = NDArray[np.float64]
T = TypeVar("T")

__all__ = ["BatchSolution", "DivergenceWarning", "History", "Solution", "WeakCameras"]


def _built(cls: type[T], **fields: Any) -> T:
    """An instance of the frozen dataclass ``cls`` holding ``fields`` (every field, by name), without
    running its ``__init__``: a frozen dataclass sets each field through ``object.__setattr__``,
    which costs microseconds per object; for values the solver made and checked itself (one frame's
    ``solve`` builds three of these objects)."""
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


class DivergenceWarning(UserWarning):
    """Some frames' refinement ended above its own start's objective (``Solution.diverged``)."""


@dataclass(frozen=True)
class WeakCameras:
    """C weak-perspective cameras: a pose X (J, 3) is seen as ``scale[c] * X @ rotation[c] + shift[c]``.

    In a :class:`BatchSolution` every array has a leading frame axis (B, ...).
    """

    rotation: F64  #: (C, 3, 3)
    scale: F64  #: (C,)
    shift: F64  #: (C, 3), box units

    def project(self, pose: ArrayLike) -> F64:
        """pose (..., J, 3) with cameras of the same leading dims -> (..., C, J, 2) box units."""
        return geometry.project_weak(pose, self.rotation, self.scale, self.shift)


@dataclass(frozen=True)
class History:
    """The refiner's path, recorded every ``history_every`` steps (H records, step 0 first).

    In a :class:`BatchSolution` every array but ``steps`` has a leading frame axis (B, H, ...).
    """

    steps: NDArray[np.int64]  #: (H,) step index of each record
    objective: F64  #: (H,)
    pose3d: F64  #: (H, J, 3)
    rotation: F64  #: (H, C, 3, 3)
    scale: F64  #: (H, C)
    shift: F64  #: (H, C, 3)


@dataclass(frozen=True)
class Solution:
    """One frame's result.

    Attributes:
        method: the method's name: ``"s1"``, ``"ir"``, ``"anipose"``, ...
        pose3d: (J, 3) in camera 0's weak frame (camera 0 has rotation I and scale 1), box units;
            for ``"anipose"`` in the adjusted camera 0's frame (``R_0 X + t_0``), in the start
            cameras' world units (a bundle adjustment leaves the overall scale free: it stays
            near the start's, not exactly; compare with PMPJPE).
        cameras: the C weak cameras; for ``"anipose"`` the adjusted :class:`PerspectiveCameras`.
        reprojection: (C, J, 2) the pose seen by the cameras, box units.
        reprojection_pixels: (C, J, 2) the same in pixels through the views' boxes (box units
            when the views have no boxes).
        objective: the refiner objective at the solution (also for ``"s1"``); for ``"anipose"``
            its data term at ``reprojection``, ``-mean_cj log p(reprojection_cj | mixture_cj)``,
            which is the whole objective when ``bone_weight`` is 0.
        x: (P,) the solution vector ``[pose | rot6d | scale_raw | shift]`` (:mod:`metapose_geom.layout`)
            as the refiner left it, before the result is expressed in camera 0's frame; empty (0,)
            for ``"anipose"``.
        history: the refiner's path, or None.
        diverged: the refiner (``"ir"``, or ``"metapose"`` with ``ir_steps``) left the objective
            above where it began (by more than
            :data:`~metapose_geom.solver.methods.DIVERGENCE_TOLERANCE`): the answer is worse than
            where it began; lower ``learning_rate``, or take the start (method ``"s1"``). A
            :class:`DivergenceWarning` says how many frames of a call did so. Always False for
            other methods.
    """

    method: str
    pose3d: F64
    cameras: WeakCameras | PerspectiveCameras
    reprojection: F64
    reprojection_pixels: F64
    objective: float
    x: F64
    history: History | None = None
    diverged: bool = False


@dataclass(frozen=True, eq=False)
class BatchSolution:
    """B frames' results of a method with weak cameras (``"s1"``, ``"ir"``), stacked on a leading frame axis.

    The arrays are those of :class:`Solution` with B in front; ``len(batch)`` is B, ``batch[i]``
    is frame i's :class:`Solution` (its arrays are views into the batch's, as ``solve`` gives
    them), ``batch[a:b]`` a BatchSolution of those frames, and ``batch.solutions()`` (or
    ``list(batch)``) every frame's Solution. :meth:`from_solutions` stacks Solutions back.

    Attributes:
        method: the method's name.
        pose3d: (B, J, 3) in each frame's camera 0 weak frame, box units.
        rotation: (B, C, 3, 3), ``rotation[:, 0]`` the identity.
        scale: (B, C), ``scale[:, 0]`` one.
        shift: (B, C, 3) box units.
        reprojection: (B, C, J, 2) box units.
        reprojection_pixels: (B, C, J, 2) pixels through each frame's boxes (box units for a
            frame without boxes).
        objective: (B,) the refiner objective at each solution.
        x: (B, P) the solution vectors as the refiner left them.
        history: the refiner's path with a leading frame axis (``steps`` (H,) is shared), or None.
        diverged: (B,) bool, the frames whose refinement ended above its start's objective
            (:attr:`Solution.diverged`); None when built without it: all False.
    """

    method: str
    pose3d: F64
    rotation: F64
    scale: F64
    shift: F64
    reprojection: F64
    reprojection_pixels: F64
    objective: F64
    x: F64
    history: History | None = None
    diverged: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        count = np.shape(self.objective)[0]
        flags = np.zeros(count, dtype=bool) if self.diverged is None else np.array(self.diverged, dtype=bool)
        if flags.shape != (count,):
            raise ValueError(f"diverged: expected ({count},) bool, one per frame, got shape {flags.shape}")
        object.__setattr__(self, "diverged", flags)

    @property
    def cameras(self) -> WeakCameras:
        """The cameras with a leading frame axis: rotation (B, C, 3, 3), scale (B, C), shift (B, C, 3)."""
        return WeakCameras(self.rotation, self.scale, self.shift)

    def __len__(self) -> int:
        return int(self.objective.shape[0])

    @overload
    def __getitem__(self, index: int) -> Solution: ...

    @overload
    def __getitem__(self, index: slice) -> BatchSolution: ...

    def __getitem__(self, index: int | slice) -> Solution | BatchSolution:
        """Frame ``index``'s Solution (negative indices count from the end), or a BatchSolution of a slice."""
        count = self.objective.shape[0]
        if type(index) is int and 0 <= index < count:  # the common case first
            return self._frame(index)
        if isinstance(index, slice):
            history = self.history
            if history is not None:
                history = History(history.steps, *(getattr(history, name)[index] for name in _HISTORY_STACKED))
            return BatchSolution(self.method, *(getattr(self, name)[index] for name in _STACKED), history=history,
                                 diverged=self.diverged[index])
        if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)):
            raise TypeError(f"BatchSolution indices are integers or slices, not {type(index).__name__}")
        if not -count <= index < count:
            raise IndexError(f"frame {index} out of range for a BatchSolution of {count} frames")
        return self._frame(int(index) % count)

    def __iter__(self) -> Iterator[Solution]:
        return iter(self.solutions())

    def solutions(self) -> list[Solution]:
        """Every frame's :class:`Solution`, in order."""
        history = self.history
        histories = [None] * len(self) if history is None else [self._history(i) for i in range(len(self))]
        return [
            _solution(self.method, pose, rotation, scale, shift, reprojection, pixels, objective, x, frame_history,
                      diverged)
            for pose, rotation, scale, shift, reprojection, pixels, objective, x, frame_history, diverged in zip(
                self.pose3d, self.rotation, self.scale, self.shift, self.reprojection, self.reprojection_pixels,
                self.objective, self.x, histories, self.diverged)
        ]

    def _frame(self, i: int) -> Solution:
        return _solution(self.method, self.pose3d[i], self.rotation[i], self.scale[i], self.shift[i],
                         self.reprojection[i], self.reprojection_pixels[i], self.objective[i], self.x[i],
                         None if self.history is None else self._history(i), self.diverged[i])

    def _history(self, i: int) -> History:
        history = self.history
        return History(history.steps.copy(), history.objective[i].copy(), history.pose3d[i], history.rotation[i],
                       history.scale[i], history.shift[i])

    @classmethod
    def from_solutions(cls, solutions: Sequence[Solution]) -> BatchSolution:
        """Stack Solutions of one method with weak cameras and equal shapes (new arrays).

        Raises ValueError for an empty sequence, mixed methods, perspective cameras, or some
        Solutions with a history and some without (or with different steps)."""
        solutions = list(solutions)
        if not solutions:
            raise ValueError("solutions: expected at least one Solution")
        first = solutions[0]
        for i, solution in enumerate(solutions):
            if not isinstance(solution, Solution):
                raise ValueError(f"solutions[{i}]: expected a Solution, got {type(solution).__name__}")
            if solution.method != first.method:
                raise ValueError(f"solutions[{i}]: method {solution.method!r} differs from solutions[0]'s "
                                 f"{first.method!r}")
            if not isinstance(solution.cameras, WeakCameras):
                raise ValueError(f"solutions[{i}]: a BatchSolution stacks weak cameras, got "
                                 f"{type(solution.cameras).__name__}")
            if (solution.history is None) != (first.history is None) or (
                    first.history is not None and not np.array_equal(solution.history.steps, first.history.steps)):
                raise ValueError(f"solutions[{i}]: its history differs in presence or steps from solutions[0]'s")

        def stack(values: list) -> F64:
            try:
                return np.stack(values)
            except ValueError as error:
                raise ValueError(f"solutions: shapes differ ({error})") from None

        history = None
        if first.history is not None:
            histories = [s.history for s in solutions]
            history = History(first.history.steps.copy(),
                              *(stack([getattr(h, name) for h in histories]) for name in _HISTORY_STACKED))
        return cls(
            method=first.method,
            pose3d=stack([s.pose3d for s in solutions]),
            rotation=stack([s.cameras.rotation for s in solutions]),
            scale=stack([s.cameras.scale for s in solutions]),
            shift=stack([s.cameras.shift for s in solutions]),
            reprojection=stack([s.reprojection for s in solutions]),
            reprojection_pixels=stack([s.reprojection_pixels for s in solutions]),
            objective=np.array([s.objective for s in solutions], dtype=np.float64),
            x=stack([s.x for s in solutions]),
            history=history,
            diverged=np.array([bool(s.diverged) for s in solutions]),
        )


def _solution(method: str, pose: F64, rotation: F64, scale: F64, shift: F64, reprojection: F64, pixels: F64,
              objective: np.float64, x: F64, history: History | None, diverged: np.bool_) -> Solution:
    """One frame's Solution from its rows of a BatchSolution (the arrays are views, x a copy)."""
    return _built(Solution, method=method, pose3d=pose,
                  cameras=_built(WeakCameras, rotation=rotation, scale=scale, shift=shift), reprojection=reprojection,
                  reprojection_pixels=pixels, objective=float(objective), x=x.copy(), history=history,
                  diverged=bool(diverged))


_STACKED = ("pose3d", "rotation", "scale", "shift", "reprojection", "reprojection_pixels", "objective", "x")
_HISTORY_STACKED = ("objective", "pose3d", "rotation", "scale", "shift")
