"""The solver: 3D pose and cameras from several views, by a method of the registry.

- :mod:`~metapose_geom.solver.options`: :class:`RefineOptions`, :class:`MetaPoseOptions`,
  :class:`AniPoseOptions`;
- :mod:`~metapose_geom.solver.results`: :class:`Solution`, :class:`WeakCameras`, :class:`History`
  and the stacked :class:`BatchSolution`;
- :mod:`~metapose_geom.solver.methods`: THE registry (name -> options type, batched function):
  ``"s1"``, ``"ir"``, ``"anipose"``, ``"metapose"`` (stage 2, :mod:`metapose_geom.stage2`);
- :mod:`~metapose_geom.solver.api`: :func:`solve` (one frame), :func:`solve_batch` (frames ->
  list of Solutions), :func:`solve_arrays` (stacked arrays -> BatchSolution).
"""

from __future__ import annotations

from ..layout import solution_size
from .api import solve, solve_arrays, solve_batch
from .options import AniPoseOptions, MetaPoseOptions, Options, RefineOptions
from .results import BatchSolution, DivergenceWarning, History, Solution, WeakCameras

__all__ = [
    "AniPoseOptions", "BatchSolution", "DivergenceWarning", "History", "MetaPoseOptions", "Options", "RefineOptions",
    "Solution", "WeakCameras", "solve", "solve_arrays", "solve_batch", "solution_size",
]
