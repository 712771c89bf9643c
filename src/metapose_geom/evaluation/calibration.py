"""Calibrations scored against a reference (a lab calibration, or a synthetic rig's truth).

Gauge-free scores, per camera:

- rotation error: the angle between our world-to-camera rotation and the reference's, after the
  one rotation of the world that best aligns the two rigs (chordal mean of ``R_ref^T R``);
- centre error: the distance between our camera centre and the reference's after the similarity
  (Umeyama: rotation, scale, translation) that best aligns all centres, in the reference's units;
- focal error: ``f / f_ref - 1`` (percent), with ``f`` the mean of fx and fy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..geometry import PerspectiveCameras, procrustes
from ..rig.averaging import chordal_mean, rotation_angles

F64 = NDArray[np.float64]

__all__ = ["CalibrationRow", "CameraErrors", "anipose_points", "compare_cameras", "compare_with_aniposelib"]


@dataclass(frozen=True)
class CameraErrors:
    """Per-camera errors of a calibration against a reference (C cameras)."""

    rotation_deg: F64  #: (C,)
    centre: F64  #: (C,) in the reference's units
    focal_percent: F64  #: (C,) signed

    def record(self, names: tuple[str, ...] | list[str]) -> dict[str, float]:
        """Flat numbers for a table row: per camera and the worst."""
        out: dict[str, float] = {}
        for name, rotation, centre, focal in zip(names, self.rotation_deg, self.centre, self.focal_percent):
            out[f"{name}_rotation_deg"] = float(rotation)
            out[f"{name}_centre"] = float(centre)
            out[f"{name}_focal_percent"] = float(focal)
        out["max_rotation_deg"] = float(np.max(self.rotation_deg))
        out["max_centre"] = float(np.max(self.centre))
        out["max_abs_focal_percent"] = float(np.max(np.abs(self.focal_percent)))
        return out


def compare_cameras(cameras: PerspectiveCameras, reference: PerspectiveCameras) -> CameraErrors:
    """Our C cameras against the reference's (same order), world-to-camera ``x = R X + t``, any
    world frames and units (see the module's scores)."""
    rotation, truth = np.asarray(cameras.rotation), np.asarray(reference.rotation)
    world = chordal_mean(np.swapaxes(truth, -1, -2) @ rotation)  # R ~ R_ref G
    rotation_error = np.degrees(rotation_angles(np.swapaxes(truth @ world, -1, -2) @ rotation))
    ours, theirs = cameras.centres, reference.centres
    fit = procrustes(ours, theirs)
    aligned = fit.scale * ours @ fit.rotation + fit.translation
    centre_error = np.linalg.norm(aligned - theirs, axis=1)
    focal = np.asarray(cameras.intrinsics)[:, :2].mean(axis=1)
    focal_truth = np.asarray(reference.intrinsics)[:, :2].mean(axis=1)
    return CameraErrors(rotation_error, centre_error, 100.0 * (focal / focal_truth - 1.0))


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class CalibrationRow:
    """One calibration of one rig by one method, scored."""

    rig: str  #: what was calibrated (e.g. "synthetic seed 0, 4 cameras, drawn intrinsics")
    method: str  #: "metapose-geom", "aniposelib from ours", "aniposelib from a poor start", ...
    errors: CameraErrors | None  #: None when the method failed
    seconds: float
    note: str = ""

    def record(self) -> dict[str, object]:
        out: dict[str, object] = {"rig": self.rig, "method": self.method, "seconds": round(self.seconds, 3),
                                  "note": self.note}
        if self.errors is not None:
            out.update(rotation_deg_max=float(self.errors.rotation_deg.max()),
                       rotation_deg_mean=float(self.errors.rotation_deg.mean()),
                       focal_percent_max_abs=float(np.abs(self.errors.focal_percent).max()),
                       centre_max=float(self.errors.centre.max()), centre_mean=float(self.errors.centre.mean()),
                       rotation_deg=[round(float(v), 3) for v in self.errors.rotation_deg],
                       focal_percent=[round(float(v), 2) for v in self.errors.focal_percent],
                       centre=[round(float(v), 1) for v in self.errors.centre])
        return out


def anipose_points(capture) -> F64:
    """A capture's H36M-17 keypoints as aniposelib takes them: (F, C, 17, 2) pixels, NaN where the
    confidence is 0 (the same keypoints :func:`metapose_geom.calibrate` reads)."""
    keypoints, confidences = capture.joints
    points = np.where((confidences > 0)[..., None], keypoints, np.nan)
    return np.ascontiguousarray(np.swapaxes(points, 0, 1))


def compare_with_aniposelib(capture, truth: PerspectiveCameras, rig: str, seed: int = 0,
                            progress: bool = False, distortion: str = "auto") -> list[CalibrationRow]:
    """The rig calibrated from ``capture`` by :func:`metapose_geom.rig.fit_rig` (our whole
    pipeline, timed end to end) and by aniposelib's ``bundle_adjust_iter`` on the same keypoints
    (focal length and k1 adjusted, its defaults; ``distortion`` is ours), started from our perspective start (the weak rig
    made perspective, before our bundle adjustment) and from a poor start (the true cameras turned
    by 15 degrees and moved by 25% of their distance, :func:`metapose_geom.anipose.perturb_cameras`,
    with our start's intrinsics: the focal prior and the principal point at the image centre),
    each scored against ``truth``."""
    import time

    from ..anipose import AniPoseError, anipose_solve, perturb_cameras
    from ..rig import fit_rig

    begin = time.perf_counter()
    fit = fit_rig(capture, progress=progress, distortion=distortion)
    ours = time.perf_counter() - begin
    rows = [CalibrationRow(rig, "metapose-geom", compare_cameras(fit.cameras, truth), ours,
                           f"distortion {fit.distortion}")]
    points = anipose_points(capture)
    subject = _axes_meeting_point(truth)
    turned = perturb_cameras(truth, subject, np.random.default_rng(seed))
    # the poor start knows nothing true of the intrinsics: ours before adjustment (focal prior, centre)
    poor = PerspectiveCameras(turned.rotation, turned.translation, fit.start.intrinsics, fit.start.distortion,
                              fit.start.image_size)
    starts = (("aniposelib from our start", fit.start), ("aniposelib from a poor start", poor))
    for label, start in starts:
        try:
            result = anipose_solve(points, start, seed=seed)
            rows.append(CalibrationRow(rig, label, compare_cameras(result.cameras, truth), result.seconds))
        except AniPoseError as error:
            rows.append(CalibrationRow(rig, label, None, error.seconds, f"failed: {error}"))
    return rows


def _axes_meeting_point(truth: PerspectiveCameras) -> F64:
    """Where the cameras' optical axes pass closest to each other (least squares): a point near
    the subject, in the cameras' world, for the poor start's scale."""
    centres, axes = truth.centres, np.asarray(truth.rotation)[:, 2]
    lhs = np.zeros((3, 3))
    rhs = np.zeros(3)
    for centre, axis in zip(centres, axes):
        projector = np.eye(3) - np.outer(axis, axis)
        lhs += projector
        rhs += projector @ centre
    return np.linalg.solve(lhs, rhs)
