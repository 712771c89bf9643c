"""A real capture, evaluated: every method on the raw detections of a multi-camera recording,
scored against its pseudo ground truth.

The capture file holds what a user has (per camera and frame, a detector's 2D landmarks in pixels
with their scores and its monocular 3D guesses) beside what only the evaluation reads: a pseudo
ground truth in the H36M-17 layout (``truth_joints3d_h36m`` (F, 17, 3) mm, ``truth_valid_h36m``
(F, 17)) and, when known, the lab calibration's rotations (``calib_R`` (C, 3, 3), world to camera).
The detections go through the public API exactly as a user's would
(:func:`metapose_geom.io.read_npz`, the capture's skeleton map, :meth:`Capture.solve`), nothing
cleaned or prepared by hand. ``../shared/data/pose2sim_single_person.npz`` is such a file; the
field names default to its own.

Scores: PMPJPE on the valid joints of each frame (mm; median, mean and 90th percentile over
frames), and, with a calibration, each camera's rotation error relative to camera 0 (the angle of
``(R_0^T R_c) (R_0^lab R_c^lab^T)^T``, degrees: gauge-free), median over frames and cameras.

``metapose-geom evaluate-capture FILE --out DIR`` runs :func:`evaluate_capture` and writes the
table (Markdown and CSV) and the figure (:func:`write_capture_report`).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

__all__ = ["CAPTURE_METHODS", "CaptureEvaluation", "CaptureMethod", "CaptureRow", "evaluate_capture",
           "format_capture_markdown", "write_capture_report"]


@dataclass(frozen=True)
class CaptureMethod:
    """One row of the capture table: a solver method, its options, how the views are built, and
    whether the monocular guesses are given to it."""

    label: str
    summary: str
    method: str = "ir"
    options: Mapping[str, Any] = field(default_factory=dict)
    view_options: Mapping[str, Any] = field(default_factory=dict)
    mono3d: bool = True


#: The rows, in table order. "monocular" is not a solver: the detector's own 3D guess per view.
CAPTURE_METHODS: tuple[CaptureMethod, ...] = (
    CaptureMethod("monocular", "the detector's own monocular 3D, each view alone", method="monocular"),
    CaptureMethod("s1", "stage 1: Procrustes of the monocular guesses", method="s1"),
    CaptureMethod("s1+ir", "stage 1, then the iterative refiner (the default solve)"),
    CaptureMethod("fact", "affine factorisation of the 2D alone (no monocular guesses)", method="s1", mono3d=False),
    CaptureMethod("fact+ir", "factorisation, then the iterative refiner", mono3d=False),
    CaptureMethod("random+ir", "a random start, then the iterative refiner", options={"init": "random"},
                  mono3d=False),
    CaptureMethod("s1+ir no-repair", "S1+IR without relabelling whole-body left/right swaps",
                  view_options={"repair_swaps": False}),
    CaptureMethod("s1+ir no-mirror", "S1+IR without the 0.1-weight component on each keypoint's mirror joint",
                  view_options={"mirror_weight": 0.0}),
    CaptureMethod("s1+s2", "stage 1, then the shipped stage-2 network (trained on synthetic heatmap mixtures)",
                  method="metapose"),
    CaptureMethod("s1+s2+ir", "stage 1, the stage-2 network, then 20 steps of the refiner", method="metapose",
                  options={"ir_steps": 20}),
)


@dataclass(frozen=True)
class CaptureRow:
    """One method's scores on the capture."""

    label: str
    summary: str
    errors: F64  #: (F,) PMPJPE per frame on its valid joints, mm; NaN where not solved
    rotation_errors: F64 | None  #: (F, C - 1) degrees (cameras 1.. against camera 0), or None
    seconds: float  #: wall time of the whole row

    def record(self) -> dict[str, Any]:
        """The row's CSV record."""
        solved = self.errors[np.isfinite(self.errors)]
        rotation = float("nan")
        if self.rotation_errors is not None and np.isfinite(self.rotation_errors).any():
            rotation = float(np.nanmedian(self.rotation_errors))
        return {
            "method": self.label,
            "frames": int(solved.size),
            "pmpjpe_median_mm": float(np.median(solved)) if solved.size else float("nan"),
            "pmpjpe_mean_mm": float(solved.mean()) if solved.size else float("nan"),
            "pmpjpe_p90_mm": float(np.percentile(solved, 90)) if solved.size else float("nan"),
            "rotation_error_median_deg": rotation,
            "ms_per_frame": 1e3 * self.seconds / max(int(solved.size), 1),
            "what": self.summary,
        }


@dataclass(frozen=True)
class CaptureEvaluation:
    """All rows of one run and what they ran on."""

    rows: list[CaptureRow]
    path: str
    camera_names: tuple[str, ...]
    frames: int
    skipped: int  #: frames seen by fewer than two cameras


def relative_rotation_errors(rotation: F64, lab: F64) -> F64:
    """rotation (F, C, 3, 3) weak cameras (row vectors: ``x_c = X @ R_c``), lab (C, 3, 3) world to
    camera (column vectors: ``x_c = R_c X``) -> (F, C - 1) degrees: camera c's rotation relative
    to camera 0 against the lab's, for c = 1..C-1 (the world frame drops out)."""
    ours = np.swapaxes(rotation[:, :1], -1, -2) @ rotation[:, 1:]  # x_c = x_0 @ R_0^T R_c
    theirs = lab[:1] @ np.swapaxes(lab[1:], -1, -2)  # the same map from the lab's cameras
    from ..rig.averaging import rotation_angles

    return np.degrees(rotation_angles(ours @ np.swapaxes(theirs, -1, -2)[None]))


def _pmpjpe_per_frame(poses: F64, truth: F64, valid: NDArray[np.bool_]) -> F64:
    """poses (F, J, 3) (NaN rows: not solved), truth (F, J, 3) mm, valid (F, J) -> (F,) mm."""
    from .. import metrics

    errors = np.full(poses.shape[0], np.nan)
    for frame in range(poses.shape[0]):
        keep = valid[frame]
        if keep.sum() >= 3 and np.isfinite(poses[frame][keep]).all():
            errors[frame] = float(metrics.pmpjpe(poses[frame][keep], truth[frame][keep]))
    return errors


def evaluate_capture(
    path: str | os.PathLike,
    methods: Sequence[str] | None = None,
    *,
    keypoints: str = "blazepose_keypoints",
    confidences: str = "blazepose_visibility",
    mono3d: str = "blazepose_world",
    skeleton: str = "blazepose33",
    truth: str = "truth_joints3d_h36m",
    valid: str = "truth_valid_h36m",
    calibration: str | None = "calib_R",
    progress: bool = True,
) -> CaptureEvaluation:
    """Every method of ``methods`` (labels of :data:`CAPTURE_METHODS`; None: all) on the capture at
    ``path``, from its raw detections through the public API.

    Args:
        path: an npz with the fields named by the other arguments (defaults: the shared capture's),
            plus ``camera_names``, ``image_size`` and ``fps`` where present.
        keypoints, confidences, mono3d, skeleton: the detections (C, F, N, 2) px, (C, F, N),
            (C, F, N, 3) any unit, and the detector's landmark set (:func:`metapose_geom.skeletons.skeleton_map`).
        truth, valid: the pseudo ground truth (F, 17, 3) mm and its valid joints (F, 17).
        calibration: the lab's world-to-camera rotations (C, 3, 3), or None.
    """
    from .. import io
    from ..skeletons import skeleton_map

    known = {method.label: method for method in CAPTURE_METHODS}
    chosen = list(known) if methods is None else list(methods)
    unknown = [label for label in chosen if label not in known]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; known: {list(known)}")
    capture = io.read_npz(path, keypoints=keypoints, confidences=confidences, mono3d=mono3d, skeleton=skeleton)
    with np.load(path) as data:
        for name in (truth, valid) + ((calibration,) if calibration else ()):
            if name not in data.files:
                raise ValueError(f"{path}: no field {name!r} (the pseudo ground truth and calibration the evaluation "
                                 f"needs); have {sorted(data.files)}")
        truth_poses = np.asarray(data[truth], dtype=np.float64)
        valid_joints = np.asarray(data[valid], dtype=bool)
        lab = None if calibration is None else np.asarray(data[calibration], dtype=np.float64)
    frames = capture.num_frames
    if truth_poses.shape != (frames, 17, 3) or valid_joints.shape != (frames, 17):
        raise ValueError(f"{truth}, {valid}: expected ({frames}, 17, 3) and ({frames}, 17), got "
                         f"{truth_poses.shape} and {valid_joints.shape}")
    if lab is not None and lab.shape != (capture.num_cameras, 3, 3):
        raise ValueError(f"{calibration}: expected ({capture.num_cameras}, 3, 3), got {lab.shape}")

    rows, skipped = [], 0
    for label in chosen:
        spec = known[label]
        start = time.perf_counter()
        rotation_errors = None
        if spec.method == "monocular":
            if capture.mono3d is None:
                continue
            joints, _ = skeleton_map(capture.skeleton).apply(capture.mono3d, capture.confidences)
            per_view = np.stack([_pmpjpe_per_frame(joints[c], truth_poses, valid_joints)
                                 for c in range(capture.num_cameras)])
            errors = np.nanmedian(per_view, axis=0) if np.isfinite(per_view).any() else per_view[0]
        else:
            source = capture if spec.mono3d else capture.without_mono3d()
            result = source.solve(spec.method, spec.options or None, progress=progress,
                                  view_options=dict(spec.view_options))
            skipped = result.skipped
            errors = _pmpjpe_per_frame(result.poses, truth_poses, valid_joints)
            if lab is not None:
                rotation_errors = relative_rotation_errors(result.rotations, lab)
        rows.append(CaptureRow(label, spec.summary, errors, rotation_errors, time.perf_counter() - start))
    return CaptureEvaluation(rows, str(path), tuple(capture.camera_names), frames, skipped)


def _rotation_cell(record: dict[str, Any]) -> str:
    value = record["rotation_error_median_deg"]
    return "-" if not np.isfinite(value) else f"{value:.1f}"


def format_capture_markdown(evaluation: CaptureEvaluation) -> str:
    """The capture table in Markdown, one line per method (through the evaluation's one table writer)."""
    from .report import Column, markdown_table

    columns = (
        Column("method", "---", lambda r: r["method"]),
        Column("frames", "---:", lambda r: f"{r['frames']}"),
        Column("PMPJPE median mm", "---:", lambda r: f"{r['pmpjpe_median_mm']:.1f}"),
        Column("mean mm", "---:", lambda r: f"{r['pmpjpe_mean_mm']:.1f}"),
        Column("90th pct mm", "---:", lambda r: f"{r['pmpjpe_p90_mm']:.1f}"),
        Column("camera rotation error, median deg", "---:", _rotation_cell),
        Column("ms / frame, end to end", "---:", lambda r: f"{r['ms_per_frame']:.2f}"),
        Column("what", "---", lambda r: r["what"]),
    )
    return markdown_table([row.record() for row in evaluation.rows], columns)


def plot_capture(evaluation: CaptureEvaluation, path: str | os.PathLike) -> Path:
    """PMPJPE per frame, one line per method, beside the distribution of each method's errors."""
    from .report import pyplot, save_figure

    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(16, 5.8), gridspec_kw={"width_ratios": [2.2, 1]})
    for row in evaluation.rows:
        left.plot(np.arange(len(row.errors)), row.errors, label=row.label, lw=1.2)
    left.set_xlabel("frame")
    left.set_ylabel("PMPJPE on valid joints (mm, log scale)")
    left.set_yscale("log")
    left.set_title(f"{Path(evaluation.path).name}: {len(evaluation.camera_names)} cameras, per frame")
    left.grid(alpha=0.3)
    left.legend(fontsize=8, ncol=2)
    data = [row.errors[np.isfinite(row.errors)] for row in evaluation.rows]
    right.boxplot(data, orientation="horizontal", showfliers=True)
    right.set_yticks(np.arange(1, len(data) + 1), [row.label for row in evaluation.rows], fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("PMPJPE (mm, log scale)")
    right.set_xscale("log")
    right.set_title("distribution over frames (median, quartiles)")
    right.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return save_figure(figure, plt, path)


def write_capture_report(evaluation: CaptureEvaluation, out: str | os.PathLike, command: str | None = None) -> str:
    """Write ``out/capture.md`` (the command and the table), ``out/capture.csv`` and
    ``out/capture.png``; returns the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = format_capture_markdown(evaluation)
    head = [f"# {Path(evaluation.path).name}: {evaluation.frames} frames, cameras {', '.join(evaluation.camera_names)}"]
    if command:
        head.append(f"\n`{command}`")
    if evaluation.skipped:
        head.append(f"\n{evaluation.skipped} frame(s) seen by fewer than two cameras were skipped.")
    (out / "capture.md").write_text("\n".join(head) + "\n\n" + table + "\n")
    records = [row.record() for row in evaluation.rows]
    with open(out / "capture.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    plot_capture(evaluation, out / "capture.png")
    return table
