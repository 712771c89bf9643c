"""Scoring: a method's predicted poses against the ground truth, as one :class:`Row` of a table.

Metrics (:mod:`metapose_geom.metrics`): PMPJPE against the world pose in mm (similarity alignment
with the norm-ratio scale), NMPJPE and PCK@150 mm against the pose in the first camera's frame (the
frame every method returns its pose in). Frames whose prediction is not finite count as failures
and are left out of the errors. :func:`solve_timed` gives the solver's single-run time with the
warm-up excluded. The evaluation of dataset files and the demo both score through here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import metrics
from ..solver import Solution, solve_batch
from ..views import Views

F64 = NDArray[np.float64]

__all__ = ["PCK_THRESHOLD_MM", "Evaluation", "Row", "score", "solve_timed"]

PCK_THRESHOLD_MM = 150.0


@dataclass(frozen=True)
class Row:
    """One method at one camera count: per-evaluation errors (frames x subsets, M = evaluated).

    Frames whose prediction is not finite count as failures and are left out of the errors.
    """

    method: str
    label: str
    cameras: int
    frames: int
    subsets: int
    pmpjpe: F64  #: (M,) mm
    nmpjpe: F64  #: (M,) mm
    pck: F64  #: (M,) fraction of joints within PCK_THRESHOLD_MM
    per_joint: F64  #: (J,) mean PMPJPE per joint, mm
    ms_per_frame: float
    failures: int = 0

    def summary(self) -> dict[str, Any]:
        """The row's CSV record."""
        return {
            "method": self.method,
            "label": self.label,
            "cameras": self.cameras,
            "frames": self.frames,
            "subsets": self.subsets,
            "failures": self.failures,
            "pmpjpe_mm": _mean(self.pmpjpe),
            "pmpjpe_median_mm": float(np.median(self.pmpjpe)) if self.pmpjpe.size else float("nan"),
            "nmpjpe_mm": _mean(self.nmpjpe),
            "pck150_percent": 100 * _mean(self.pck),
            "ms_per_frame": self.ms_per_frame,
        }


def _mean(values: F64) -> float:
    return float(values.mean()) if values.size else float("nan")


@dataclass(frozen=True)
class Evaluation:
    """All rows of one run, in camera-count then method order, and what produced them.

    ``skipped_frames`` maps each frame of the file left out of every row (``skip_bad_frames``) to
    the reason, in frame order."""

    rows: list[Row]
    dataset: str
    joint_names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped_frames: dict[int, str] = field(default_factory=dict)

    def row(self, method: str, cameras: int) -> Row:
        for row in self.rows:
            if row.method == method and row.cameras == cameras:
                return row
        raise KeyError(f"no row for method {method!r} with {cameras} cameras")

    def methods(self) -> list[str]:
        """The methods of the rows, in their first appearance's order."""
        return list(dict.fromkeys(row.method for row in self.rows))


def score(method: str, label: str, cameras: int, frames: int, subsets: int, prediction: F64, world: F64,
          in_camera: F64, ms_per_frame: float) -> Row:
    """The row of predictions (M, J, 3) against the world poses (M, J, 3) and the poses in the first
    camera's frame (M, J, 3), all mm; M = frames x subsets."""
    finite = np.isfinite(prediction).all(axis=(1, 2))
    prediction, world, in_camera = prediction[finite], world[finite], in_camera[finite]
    joints = world.shape[1]
    if prediction.shape[0]:
        pmpjpe_per_joint = metrics.pmpjpe(prediction, world, per_joint=True)
        nmpjpe = metrics.nmpjpe(prediction, in_camera)
        pck = metrics.pck(prediction, in_camera, threshold=PCK_THRESHOLD_MM)
    else:
        pmpjpe_per_joint, nmpjpe, pck = np.empty((0, joints)), np.empty(0), np.empty(0)
    per_joint = pmpjpe_per_joint.mean(axis=0) if pmpjpe_per_joint.shape[0] else np.full(joints, np.nan)
    return Row(method, label, cameras, frames, subsets, pmpjpe_per_joint.mean(axis=1), nmpjpe, pck, per_joint,
               ms_per_frame, failures=int((~finite).sum()))


def solve_timed(views: Sequence[Views], method: str, progress: bool = False,
                options: Mapping[str, Any] | None = None) -> tuple[list[Solution], float]:
    """``solve_batch(views, method, options)`` and its wall time in seconds; a warm-up solve of the
    first frame (JIT compilation, thread start, loading weights) runs first and is not timed."""
    solve_batch(views[:1], method=method, options=options, progress=False)  # warm-up, excluded
    start = time.perf_counter()
    solutions = solve_batch(views, method=method, options=options, progress=progress)
    return solutions, time.perf_counter() - start
