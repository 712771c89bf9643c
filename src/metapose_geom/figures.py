"""Figures of solved captures (matplotlib, imported inside the functions).

:func:`plot_solve` is the figure ``metapose-geom solve`` writes: the 3D pose at a few frames beside
each view's 2D evidence with the reprojection drawn on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .io import CaptureSolution

__all__ = ["pick_frames", "plot_calibration", "plot_solve"]


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bone_colours(skeleton) -> list[str]:
    """Per bone: green on the subject's left, red on the right, black on the midline (H36M-17 names)."""
    colours = []
    for parent, child in skeleton.bones:
        name = skeleton.joints[child]
        colours.append("tab:green" if name.startswith("l_") else "tab:red" if name.startswith("r_") else "black")
    return colours


def pick_frames(result: CaptureSolution, count: int = 3) -> list[int]:
    """Up to ``count`` solved frame indices spread evenly over the solved frames (first, middle,
    last quarter ...); fewer when fewer frames were solved."""
    solved = np.flatnonzero(result.solved)
    if len(solved) == 0:
        return []
    positions = np.linspace(0, len(solved) - 1, count + 2)[1:-1] if len(solved) > count else np.arange(len(solved))
    return sorted({int(solved[int(round(p))]) for p in positions})


def plot_solve(result: CaptureSolution, path: str | os.PathLike, frames: Sequence[int] | None = None,
               subject_height: float | None = None) -> Path:
    """Write a PNG: per chosen frame (a row), the metric 3D pose (:func:`metapose_geom.io.metric_poses`,
    metres, y up) and, per camera, that view's H36M-17 keypoints (dots, faint where the confidence
    is low; the detector's own landmarks as small grey dots) in the view's pixels with the pose's
    reprojection drawn over them as a skeleton.

    Args:
        result: a solved capture.
        path: the PNG to write (its folder is created).
        frames: frame indices to show; None: up to three spread over the solved frames (:func:`pick_frames`).
        subject_height: the metres the 3D pose is scaled to, as :func:`~metapose_geom.io.metric_poses`.
    """
    from .io import metric_poses

    plt = _pyplot()
    capture = result.capture
    chosen = list(frames) if frames is not None else pick_frames(result)
    poses = metric_poses(result, subject_height)
    joints, confidences = capture.joints
    reprojection = result.reprojection_pixels
    bones = result.skeleton.bones
    colours = _bone_colours(result.skeleton)
    cameras = capture.num_cameras
    rows = max(len(chosen), 1)
    figure = plt.figure(figsize=(3.2 * (cameras + 1), 3.6 * rows))
    for row, frame in enumerate(chosen):
        number = int(capture.frame_numbers[frame])
        ax = figure.add_subplot(rows, cameras + 1, row * (cameras + 1) + 1, projection="3d")
        pose = poses[frame]
        if np.isfinite(pose).all():
            for (parent, child), colour in zip(bones, colours):  # matplotlib's z axis is the pose's y (up)
                segment = pose[[parent, child]]
                ax.plot(segment[:, 0], segment[:, 2], segment[:, 1], color=colour, lw=2)
            span = 1.1 * max(float(np.abs(pose).max()), 0.1)
            ax.set(xlim=(-span, span), ylim=(-span, span), zlim=(-span, span))
            reference = capture.camera_names[int(result.reference[frame])]
            ax.set_title(f"frame {number}: 3D, m, y up ({reference} axes)", fontsize=8)
        else:
            ax.set_title(f"frame {number}: skipped", fontsize=8)
        ax.set_xlabel("x", fontsize=7)
        ax.set_ylabel("z", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.locator_params(nbins=4)
        ax.view_init(elev=15, azim=-70)
        for camera in range(cameras):
            ax = figure.add_subplot(rows, cameras + 1, row * (cameras + 1) + camera + 2)
            raw = capture.keypoints[camera, frame]
            ax.scatter(raw[:, 0], raw[:, 1], s=3, color="0.6", label="landmarks")
            points, confidence = joints[camera, frame], confidences[camera, frame]
            seen = confidence > 0
            shades = np.zeros((int(seen.sum()), 4))
            shades[:, 2] = 0.8
            shades[:, 3] = 0.25 + 0.75 * confidence[seen]
            ax.scatter(points[seen, 0], points[seen, 1], s=14, color=shades, label="keypoints (H36M)")
            projected = reprojection[frame, camera]
            used = bool(result.used[frame, camera])
            if used:
                for index, ((parent, child), colour) in enumerate(zip(bones, colours)):
                    segment = projected[[parent, child]]
                    ax.plot(segment[:, 0], segment[:, 1], color=colour, lw=1.2,
                            label="reprojection" if index == 0 else None)
            _view_limits(ax, np.concatenate([raw, points, projected]))
            state = "" if used else " (not used)"
            ax.set_title(f"{capture.camera_names[camera]}{state}", fontsize=8)
            ax.tick_params(labelsize=6)
            if row == 0 and camera == 0:
                ax.legend(fontsize=6, loc="lower left")
    figure.suptitle(f"metapose-geom solve ({result.summary()}): 3D pose (metres, pelvis at 0) and each view's "
                    "keypoints (blue) with the pose's reprojection (pixels); the subject's left green, right red",
                    fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _view_limits(ax, points: np.ndarray) -> None:
    """Pixel limits around the points, y down; a note where there are none."""
    finite = points[np.isfinite(points).all(axis=1)]
    if len(finite):
        low, high = finite.min(axis=0), finite.max(axis=0)
        centre, half = (low + high) / 2, 0.6 * max(float((high - low).max()), 1.0)
        ax.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] + half, centre[1] - half))
    else:
        ax.text(0.5, 0.5, "nobody seen", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.4")
        ax.set(xticks=[], yticks=[])
        return
    ax.set_aspect("equal")


def plot_calibration(calibration, path: str | os.PathLike, points: np.ndarray | None = None) -> Path:
    """Write a PNG of a calibrated rig: a 3D view and a top view of the cameras (centres, viewing
    frusta to 1/4 of the rig's size, names) around the subject's path (the pelvis per frame, from
    ``points`` (F, 17, 3) in the calibration's units when given), and per camera a histogram of
    its reprojection errors (pixels) with the median marked.

    Args:
        calibration: a :class:`metapose_geom.io.Calibration`.
        path: the PNG to write (its folder is created).
        points: (F, 17, 3) the subject's joints in the calibration's world, or None.
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(calibration.names)
    C = len(names)
    centres = calibration.centre
    rotation = calibration.rotation
    span = float(np.ptp(centres, axis=0).max()) or 1.0
    depth = span / 4
    colours = plt.get_cmap("tab10")(np.arange(C) % 10)
    figure = plt.figure(figsize=(4.2 * max(2, C) / 1.3, 8.2))
    grid = figure.add_gridspec(2, max(2, C))
    half = max(2, C) // 2
    view3d = figure.add_subplot(grid[0, :half], projection="3d")
    top = figure.add_subplot(grid[0, half:])
    path_xyz = None
    if points is not None and np.isfinite(points[:, 0]).any():
        path_xyz = points[np.isfinite(points[:, 0]).all(axis=1), 0]
    for c in range(C):
        fx, fy, cx, cy = calibration.intrinsics[c]
        width, height = calibration.image_size[c]
        corners = np.array([[-cx / fx, -cy / fy], [(width - cx) / fx, -cy / fy], [(width - cx) / fx, (height - cy) / fy],
                            [-cx / fx, (height - cy) / fy]])
        rays = np.column_stack([corners, np.ones(4)]) * depth  # camera frame
        world = rays @ rotation[c] + centres[c]  # X = R^T x + centre
        for corner in world:
            view3d.plot(*np.stack([centres[c], corner]).T, color=colours[c], linewidth=0.8)
        loop = np.vstack([world, world[:1]])
        view3d.plot(*loop.T, color=colours[c], linewidth=0.8)
        view3d.text(*centres[c], names[c], color=colours[c], fontsize=8)
        top.plot(*np.stack([centres[c, :2], world[:, :2].mean(axis=0)]).T, color=colours[c], linewidth=1.5)
        top.plot(*centres[c, :2], "o", color=colours[c])
        top.annotate(names[c], centres[c, :2], color=colours[c], fontsize=8, xytext=(4, 4), textcoords="offset points")
    if path_xyz is not None:
        view3d.plot(*path_xyz.T, color="black", linewidth=0.8, label="subject (pelvis)")
        top.plot(*path_xyz[:, :2].T, color="black", linewidth=0.8)
    everything = np.vstack([centres] + ([path_xyz] if path_xyz is not None else []))
    middle, radius = (everything.max(axis=0) + everything.min(axis=0)) / 2, float(np.ptp(everything, axis=0).max()) / 2
    for setter, m in zip((view3d.set_xlim, view3d.set_ylim, view3d.set_zlim), middle):
        setter(m - radius, m + radius)
    view3d.set_title(f"rig ({calibration.units}), z up")
    top.set_aspect("equal")
    top.set_title("top view (x, y)")
    top.grid(True, linewidth=0.3)
    for c in range(C):
        axis = figure.add_subplot(grid[1, c])
        errors = np.asarray(calibration.residuals.get(names[c], np.empty(0)))
        errors = errors[np.isfinite(errors)]
        if errors.size:
            axis.hist(np.minimum(errors, np.percentile(errors, 99)), bins=40, color=colours[c])
            axis.axvline(np.median(errors), color="black", linewidth=1)
            axis.set_title(f"{names[c]}: median {np.median(errors):.1f} px", fontsize=9)
        else:
            axis.set_title(f"{names[c]}: no residuals", fontsize=9)
        axis.set_xlabel("reprojection error (px)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
