"""Writers of a solved capture: poses as TRC (OpenSim, Pose2Sim) and CSV, cameras as npz.

A weak-perspective solution has no metric scale, and each frame's pose comes in its own box units
(the box changes with every frame). The writers therefore write *metric, comparable* poses
(:func:`metric_poses`): each frame's pose in its reference camera's axes turned to y up (x to
the camera's right, y up, z towards the camera; the solver's camera frame has y down and z away),
centred on the pelvis, and scaled to metres so that its bones have, by the median over bones, the
proportions of H36M-17's rest pose (a 1.7 m adult) scaled to ``subject_height``.
``subject_height`` defaults to :data:`DEFAULT_SUBJECT_HEIGHT` (1.75 m), with a warning.

Skipped frames are written as rows with empty values, as Pose2Sim writes frames it could not
triangulate.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .._checks import check_number
from ..skeletons import H36M_17
from .capture import CaptureSolution

F64 = NDArray[np.float64]

__all__ = ["DEFAULT_FPS", "DEFAULT_SUBJECT_HEIGHT", "REST_HEIGHT", "metric_poses", "write_cameras", "write_csv",
           "write_trc"]

#: The subject's height (metres) the writers assume when none is given.
DEFAULT_SUBJECT_HEIGHT = 1.75
#: The height (metres) of the adult H36M-17's rest pose stands for.
REST_HEIGHT = 1.7
#: Frames per second written when the capture does not know its rate (as Pose2Sim does).
DEFAULT_FPS = 30.0
#: Axes of the written poses from the solver's camera axes: y and z flipped (y up, z towards the camera).
_Y_UP = np.array([1.0, -1.0, -1.0])


def _height(subject_height: float | None) -> float:
    if subject_height is None:
        warnings.warn(f"subject_height not given: poses are scaled to a {DEFAULT_SUBJECT_HEIGHT} m subject",
                      stacklevel=3)
        return DEFAULT_SUBJECT_HEIGHT
    height = check_number(subject_height, "subject_height", 0.0, low_open=True)
    if not 0.5 <= height <= 2.5:
        raise ValueError(f"subject_height: expected the subject's height in metres, 0.5 to 2.5, got {subject_height!r}")
    return height


def metres_per_unit(lengths: F64, height: float) -> F64:
    """H36M-17 bone lengths (..., B) in any unit -> (...) metres per that unit: the median over
    the bones (those > 0 and finite) of the rest pose's length, scaled to a subject of ``height``
    metres, over the given length; NaN where no bone is usable."""
    rest = H36M_17.bone_lengths(H36M_17.rest_pose()) / 1000.0 * (height / REST_HEIGHT)  # metres
    lengths = np.asarray(lengths, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lengths > 0, rest / lengths, np.nan)
    usable = np.isfinite(ratio).any(axis=-1)
    factor = np.full(lengths.shape[:-1], np.nan)
    factor[usable] = np.nanmedian(ratio[usable], axis=-1)
    return factor


def _metres_per_unit(result: CaptureSolution, height: float) -> F64:
    """(F,) metres per box unit of each frame's pose (NaN where skipped)."""
    return metres_per_unit(H36M_17.bone_lengths(result.poses), height)


def metric_poses(result: CaptureSolution, subject_height: float | None = None) -> F64:
    """A solved capture's poses (F, 17, 3) in metres, comparable from frame to frame; NaN where skipped.

    Each frame's pose is in its reference camera's axes turned to y up (x to the camera's right,
    y up, z towards the camera), centred on the pelvis, scaled so that the median over bones of
    (rest-pose bone length / this frame's bone length) maps it onto H36M-17's rest proportions at
    ``subject_height`` metres (None: :data:`DEFAULT_SUBJECT_HEIGHT` with a UserWarning).
    """
    height = _height(subject_height)
    pose = result.poses
    scale = _metres_per_unit(result, height)
    return (pose - pose[:, :1]) * scale[:, None, None] * _Y_UP


def _rate(result: CaptureSolution, fps: float | None) -> float:
    if fps is not None:
        return check_number(fps, "fps", 0.0, low_open=True)
    if result.capture.fps is not None:
        return float(result.capture.fps)
    warnings.warn(f"fps unknown: times written at {DEFAULT_FPS:g} frames per second (pass fps)", stacklevel=3)
    return DEFAULT_FPS


def _number(value: float) -> str:
    return "" if not np.isfinite(value) else f"{round(float(value), 6) + 0.0:.6f}"  # + 0.0: no "-0.000000"


def write_trc(path: str | os.PathLike, result: CaptureSolution, subject_height: float | None = None,
              fps: float | None = None) -> Path:
    """Write the poses (:func:`metric_poses`, metres) as a TRC marker file, the layout Pose2Sim
    writes and OpenSim reads: a ``PathFileType`` line, the ``DataRate CameraRate NumFrames
    NumMarkers Units OrigDataRate OrigDataStartFrame OrigNumFrames`` header and its values,
    the marker names (the H36M-17 joints) over their ``X1 Y1 Z1 ...`` columns, then one tab-separated
    row per frame: ``Frame#`` (the capture's frame number), ``Time`` (frame number / fps, s), and
    x, y, z per marker; a skipped frame's coordinates are empty. Frames whose reference camera
    is not the capture's first (it saw nobody there) are in another camera's axes: a UserWarning
    says how many.

    ``fps`` None: the capture's, else :data:`DEFAULT_FPS` with a UserWarning.
    """
    path = Path(path)
    poses = metric_poses(result, subject_height)
    rate = _rate(result, fps)
    frames, markers = poses.shape[:2]
    elsewhere = np.flatnonzero(result.reference > 0)
    if len(elsewhere):
        first = int(result.capture.frame_numbers[elsewhere[0]])
        warnings.warn(f"{len(elsewhere)} frame(s) (the first: frame {first}) are in another camera's axes than "
                      f"{result.capture.camera_names[0]}'s, which saw nobody there; a TRC cannot say so "
                      "(write_csv's reference_camera column does)", stacklevel=2)
    numbers = result.capture.frame_numbers
    names = H36M_17.joints
    lines = [
        f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        "\t".join(str(value) for value in (f"{rate:g}", f"{rate:g}", frames, markers, "m", f"{rate:g}",
                                           int(numbers[0]), frames)),
        "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t\t",
        "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, markers + 1)) + "\t",
    ]
    for number, pose in zip(numbers, poses):
        values = "\t".join(_number(value) for value in pose.reshape(-1))
        lines.append(f"{int(number)}\t{number / rate:.6f}\t{values}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path: str | os.PathLike, result: CaptureSolution, subject_height: float | None = None,
              fps: float | None = None) -> Path:
    """Write the poses (:func:`metric_poses`, metres) as CSV, one row per frame.

    Columns: ``frame`` (the capture's frame number), ``time_s`` (frame number / fps),
    ``reference_camera`` (whose axes, turned to y up, the pose is in; empty where skipped), then
    ``<joint>_x_m, <joint>_y_m, <joint>_z_m`` for each H36M-17 joint; a skipped frame's values are empty.
    """
    path = Path(path)
    poses = metric_poses(result, subject_height)
    rate = _rate(result, fps)
    names = result.capture.camera_names
    reference = result.reference
    header = ["frame", "time_s", "reference_camera"] + [f"{joint}_{axis}_m" for joint in H36M_17.joints
                                                         for axis in "xyz"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for number, camera, pose in zip(result.capture.frame_numbers, reference, poses):
            writer.writerow([int(number), f"{number / rate:.6f}", names[camera] if camera >= 0 else ""]
                            + [_number(value) for value in pose.reshape(-1)])
    return path


def write_cameras(path: str | os.PathLike, result: CaptureSolution, subject_height: float | None = None) -> Path:
    """Write each frame's weak cameras and poses as an ``.npz`` (NaN for cameras a frame did not use
    and for skipped frames).

    Fields: ``camera_names`` (C,), ``frame_numbers`` (F,), ``solved`` (F,), ``used`` (F, C),
    ``reference`` (F,) the index of each frame's reference camera (-1: skipped), ``rotation``
    (F, C, 3, 3), ``scale`` (F, C), ``shift`` (F, C, 3): camera c sees the frame's box-unit pose X
    (17, 3) as ``scale * X @ rotation + shift``, whose first two coordinates are in that view's box
    units, pixels through ``boxes`` (F, C, 4) ``[x, y, width, height]`` as
    ``origin + max(width, height) * point``; ``pose3d`` (F, 17, 3) those box-unit poses;
    ``objective`` (F,); ``pose3d_m`` (F, 17, 3) the written metric poses (:func:`metric_poses`)
    and ``metres_per_unit`` (F,) their scale (``pose3d_m = (pose3d - pose3d[:, :1]) *
    metres_per_unit * [1, -1, -1]``); ``subject_height`` in metres; ``method``.
    """
    path = Path(path)
    height = _height(subject_height)
    pose = result.poses
    scale = _metres_per_unit(result, height)
    np.savez(
        path,
        camera_names=np.array(result.capture.camera_names),
        frame_numbers=result.capture.frame_numbers,
        solved=result.solved,
        used=result.used,
        reference=result.reference,
        rotation=result.rotations,
        scale=result.scales,
        shift=result.shifts,
        boxes=result.boxes,
        pose3d=pose,
        objective=result.objectives,
        pose3d_m=(pose - pose[:, :1]) * scale[:, None, None] * _Y_UP,
        metres_per_unit=scale,
        subject_height=np.float64(height),
        method=np.array(result.method),
    )
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
