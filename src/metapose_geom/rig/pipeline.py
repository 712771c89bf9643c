"""Calibration of a fixed camera rig from the people filmed by it: :func:`calibrate`.

The steps, each a module of :mod:`metapose_geom.rig`:

1. every frame solved alone (:meth:`metapose_geom.io.Capture.solve`, the weak cameras of MetaPose);
2. the per-frame rotations, each turned from "looking at the subject" to "along the optical
   axis" with a focal length (given or the prior), averaged robustly into one rotation per
   camera (:mod:`~metapose_geom.rig.averaging`); views far from the consensus are left out;
3. the static weak rig refined over all frames at once in the compiled core (rotations shared,
   pose, scale and shift per frame; :func:`~metapose_geom.rig.static.refine_static_rig`), twice,
   leaving out between the two the views that fit much worse than the rest;
4. perspective cameras from the weak rig (:mod:`~metapose_geom.rig.perspective`), then a robust
   bundle adjustment over all frames' keypoints in stages: extrinsics, then the focal length, then
   the distortion (``k1``, or ``k1, k2``); the principal point stays at the image centre unless
   asked to move;
5. metric scale from the subject's height (or a known distance between two cameras), and the
   world frame from the floor the feet touch: z up, origin on the floor under the subject.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .. import layout
from .._checks import check_choice, check_int, check_number
from ..geometry import PerspectiveCameras, matrix_to_rodrigues, matrix_to_rot6d
from ..io.writers import DEFAULT_SUBJECT_HEIGHT, metres_per_unit
from ..skeletons import H36M_17
from .averaging import average_rig_rotations, chordal_mean
from .perspective import (
    ROBUST_SCALE,
    bundle_adjust,
    initial_translations,
    optical_axis_rotations,
    undistorted_centres,
)
from .static import StaticRig, refine_static_rig

F64 = NDArray[np.float64]

__all__ = ["ANKLE_HEIGHT", "AUTO_DISTORTION_RADIUS", "FOCAL_PRIOR", "FOCAL_RANGE", "MAX_FRAMES", "REJECT_ROTATION_DEG",
           "RigFit", "calibrate", "fit_rig", "floor_frame"]

#: Focal length prior, in units of the image's larger side (COLMAP's default guess, a ~45 degree
#: field of view across the larger side).
FOCAL_PRIOR = 1.2
#: The frames calibrate uses at most, evenly spread over a longer capture.
MAX_FRAMES = 300
#: Focal lengths outside this range (in units of the image's larger side: fields of view of about
#: 11 to 150 degrees) are reported as poorly determined, with a warning.
FOCAL_RANGE = (0.25, 5.0)
#: The foot contacts span the floor when their spread across the walking direction (RMS, metres)
#: is at least this; otherwise up is the body's vertical.
FLOOR_MIN_SPREAD = 0.25
#: ... and the floor's normal must be within this many degrees of the body's vertical.
FLOOR_MAX_TILT_DEG = 20.0
#: A view whose per-frame rotation is further than this (degrees) from the rig's is left out.
REJECT_ROTATION_DEG = 20.0
#: The ankle joint's height above the floor, as a fraction of standing height (anthropometric
#: tables: lateral malleolus at about 0.039 H).
ANKLE_HEIGHT = 0.039
#: The keypoints' spread, as a normalised image radius (|x| / f, 90th percentile over the
#: observations used), from which ``distortion="auto"`` fits ``k1``: nearer the image centre the
#: radial term ``k1 r^2`` stays within the keypoints' noise and trades off against the focal length.
AUTO_DISTORTION_RADIUS = 0.35
#: A view whose static-rig fit is worse than the median by this many (scaled) median absolute
#: deviations is left out, and the static rig refined again without it.
STATIC_OUTLIER_MADS = 5.0
#: Adam steps of each static-rig refinement.
STATIC_STEPS = 200
#: Bundle-adjustment iterations per stage, at most.
_STAGE_ITERATIONS = 100
#: ... and the relative cost decrease at which a stage stops (the first stage, at the prior focal
#: length, only brings the cameras near for the focal stage).
_STAGE_TOLERANCE = 1e-8
_FIRST_STAGE_TOLERANCE = 1e-3

Distortion = Literal["auto", "none", "k1", "k1k2"]


@dataclass(frozen=True)
class RigFit:
    """Everything :func:`fit_rig` found, in its own units (metres after :func:`calibrate`)."""

    cameras: PerspectiveCameras
    points: F64  #: (F, 17, 3) triangulated joints by bundle adjustment, NaN where unseen
    residuals: F64  #: (C, F, 17) pixels
    used: NDArray[np.bool_]  #: (F, C) the views that went into the bundle adjustment
    rejected: dict[int, str]  #: frame index -> why it was not used at all
    rejected_views: int
    start: PerspectiveCameras  #: the perspective cameras the bundle adjustment started from
    distortion: str  #: the distortion terms fitted: "none", "k1" or "k1k2"; "given" with known intrinsics
    seconds: dict[str, float]


def _check_every_camera_used(used: NDArray[np.bool_], names: Sequence[str]) -> None:
    """ValueError naming the cameras left with no frame solved beside another camera."""
    together = used & (used.sum(axis=1, keepdims=True) >= 2)
    missing = [names[c] for c in np.flatnonzero(~together.any(axis=0))]
    if missing:
        raise ValueError(f"capture: camera(s) {missing} saw the person in no frame that agrees with the other "
                         "cameras (seen with another camera, the rotation consistent with the rig): nothing places "
                         "them; give more frames or leave them out")


def _mad(values: F64) -> float:
    """The median absolute deviation from the median."""
    return float(np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def _static_mixtures(solved) -> F64:
    """(F, C, J, K, 4) the mixtures of the views each frame was solved from, padded with zero-weight
    components to one K; views not solved hold valid placeholders (never read)."""
    frames, cameras = solved.used.shape
    views = [v for v in solved.views if v is not None]
    components = max(v.num_components for v in views)
    mixtures = np.zeros((frames, cameras, views[0].num_joints, components, 4))
    mixtures[..., 3] = 1.0
    for f, frame_views in enumerate(solved.views):
        if frame_views is not None:
            mixtures[f, solved.used[f], :, : frame_views.num_components] = frame_views.mixtures
    return mixtures


def _refine_static(solved, mixtures: F64, used: NDArray[np.bool_], rotation: F64, poses: F64, steps: int,
                   previous: StaticRig | None = None) -> StaticRig:
    """The static weak rig refined over every frame (``mixtures`` from :func:`_static_mixtures`) from
    the per-frame solutions' scales and shifts (or ``previous``'s)."""
    if previous is None:
        scale_raw = layout.raw_from_scale(np.where(np.isfinite(solved.scales), solved.scales, 1.0))
        shifts = np.nan_to_num(solved.shifts)
    else:
        scale_raw, shifts = previous.scale_raw, previous.shifts
    return refine_static_rig(mixtures, used, matrix_to_rot6d(rotation), np.nan_to_num(poses), scale_raw, shifts,
                             options={"steps": steps})


def _view_residuals(static: StaticRig, solved, used: NDArray[np.bool_]) -> F64:
    """(F, C) each used view's median over joints of the distance (box units) from the static rig's
    projection to the view's mixture mean (the evidence's centre); NaN for unused views."""
    from ..mixtures import mixture_mean

    frames, cameras = used.shape
    out = np.full((frames, cameras), np.nan)
    projected = np.einsum("fjb,cba->fcja", static.poses, static.rotation)[..., :2]  # X R_c, first two columns
    projected = static.scale[..., None, None] * projected + static.shifts[:, :, None, :2]
    for f, frame_views in enumerate(solved.views):
        if frame_views is None:
            continue
        columns = np.flatnonzero(solved.used[f])
        centre = mixture_mean(frame_views.mixtures)  # (C_f, J, 2)
        distance = np.median(np.linalg.norm(projected[f, columns] - centre, axis=-1), axis=-1)
        out[f, columns] = np.where(used[f, columns], distance, np.nan)
    return out


def _keypoint_radius(keypoints: F64, weights: F64, cameras: PerspectiveCameras) -> float:
    """The 90th percentile over the keypoints used (weight > 0) of their distance from the
    principal point in focal lengths (the normalised image radius); 0 without keypoints."""
    intrinsics = cameras.intrinsics
    normalised = (keypoints - intrinsics[:, None, None, 2:4]) / intrinsics[:, None, None, :2].mean(axis=-1)[..., None]
    radius = np.linalg.norm(normalised, axis=-1)[weights > 0]
    return float(np.percentile(radius, 90)) if radius.size else 0.0


def _boxes_size(boxes: F64) -> F64:
    return np.max(boxes[..., 2:4], axis=-1)


def fit_rig(capture, *, intrinsics: PerspectiveCameras | None = None, distortion: Distortion = "auto",
            focal_prior: float | None = None, principal_point: Literal["centre", "free"] = "centre",
            image_size: F64 | None = None, method: str = "ir", progress: bool = True, threads: int | None = None,
            static_steps: int = STATIC_STEPS) -> RigFit:
    """Steps 1-4 of :func:`calibrate` (see the module): the rig's perspective cameras and the
    subject's joints, in the units of a 1.75 m subject and an arbitrary world frame (``calibrate``
    then sets the metric scale and the floor frame).

    Args:
        capture: a :class:`~metapose_geom.io.Capture` with image sizes (or ``image_size``).
        intrinsics: known cameras (C, in capture order) whose intrinsics and distortion are kept:
            only the extrinsics are adjusted.
        distortion, focal_prior, principal_point, image_size, method, progress, threads: as
            :func:`calibrate`.
        static_steps: Adam steps of each static-rig refinement.

    Returns:
        A :class:`RigFit`: the cameras, the bundle-adjusted joints (F, 17, 3), each observation's
        reprojection error, the views used, the frames rejected and why, the start of the bundle
        adjustment, the distortion fitted and each step's seconds.
    """
    import time

    from tqdm.auto import tqdm

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    C, F = capture.num_cameras, capture.num_frames
    size = capture.image_size if image_size is None else np.asarray(image_size, dtype=np.float64)
    if intrinsics is not None:
        size = intrinsics.image_size
    if size is None:
        raise ValueError("image_size: the capture does not say its cameras' image sizes (width, height px); give "
                         "them (image_size=, or --image-size W H) or known intrinsics (the principal point starts "
                         "at the image centre)")
    solved = capture.solve(method, progress=progress, threads=threads)
    seconds["per-frame solve"] = time.perf_counter() - clock
    stages = tqdm(total=3, desc="calibrate", disable=not progress, leave=False)
    clock = time.perf_counter()
    used = solved.used.copy()
    rejected = {f: f"not solved: {reason}" for f, reason in solved.skip_reasons.items()}
    if used.sum() == 0:
        raise ValueError(f"capture: no frame could be solved ({solved.summary()})")
    if intrinsics is None:
        focal = (FOCAL_PRIOR if focal_prior is None else focal_prior) * size.max(axis=1)
        start_intrinsics = np.column_stack([focal, focal, size / 2])
        start_distortion = np.zeros((C, 5))
    else:
        start_intrinsics = intrinsics.intrinsics.copy()
        start_distortion = intrinsics.distortion.copy()
    reprojection = solved.reprojection_pixels  # (F, C, 17, 2), NaN for views not used
    centres = np.where(used[..., None], reprojection.mean(axis=2), np.nan)  # the weak image of the pose centroid
    centres = undistorted_centres(centres, start_intrinsics, start_distortion)
    focal = start_intrinsics[:, :2].mean(axis=1)
    towards_subject = optical_axis_rotations(centres, focal, start_intrinsics[:, 2:4])  # (F, C, 3, 3)
    # the rig's chirality: per-frame solutions whose bodies are mostly mirror images have their depth
    # axes flipped (a weak camera cannot tell): flip them all, X -> X F, R -> F R F (F = diag(1, 1, -1))
    from ..skeletons import mirror_image_poses

    frame_poses, frame_rotations = np.array(solved.poses), np.array(solved.rotations)
    solved_frames = np.isfinite(frame_poses).all(axis=(1, 2))
    if solved_frames.any() and mirror_image_poses(frame_poses[solved_frames]).mean() > 0.5:
        flip = np.diag([1.0, 1.0, -1.0])
        frame_poses, frame_rotations = frame_poses @ flip, flip @ frame_rotations @ flip
    rotations = np.where(used[..., None, None], frame_rotations, np.nan) @ np.swapaxes(towards_subject, -1, -2)
    _check_every_camera_used(used, capture.camera_names)
    averaged = average_rig_rotations(rotations, used)
    outlier = used & (averaged.residual > np.radians(REJECT_ROTATION_DEG))
    used &= ~outlier
    rejected_views = int(outlier.sum())
    _check_every_camera_used(used, capture.camera_names)
    stages.update()
    seconds["rotation averaging"] = time.perf_counter() - clock

    # the static weak rig over all frames (compiled core): rotations shared, pose, scale and shift per
    # frame; a weak camera looks at the subject, so the shared rotation is the optical axis's turned
    # by the mean rotation towards the subject, and the optical axis's comes back from it the same way
    clock = time.perf_counter()
    frame_ok = np.isfinite(averaged.frame_rotation).all(axis=(1, 2))
    world_poses = np.zeros_like(frame_poses)
    world_poses[frame_ok] = np.einsum("fjb,fab->fja", frame_poses[frame_ok], averaged.frame_rotation[frame_ok])
    mean_towards = np.stack([chordal_mean(towards_subject[used[:, c], c]) if used[:, c].any() else np.eye(3)
                             for c in range(C)])
    mixtures = _static_mixtures(solved)
    static = _refine_static(solved, mixtures, used, averaged.rotation @ mean_towards, world_poses, static_steps)
    residual = _view_residuals(static, solved, used)
    spread = np.median(residual[used]) + STATIC_OUTLIER_MADS * 1.4826 * _mad(residual[used])
    outlier = used & (residual > spread)
    if outlier.any():
        used &= ~outlier
        rejected_views += int(outlier.sum())
        static = _refine_static(solved, mixtures, used, static.rotation, static.poses, static_steps, static)
    _check_every_camera_used(used, capture.camera_names)
    poses = static.poses
    rig_rotation = static.rotation @ np.swapaxes(mean_towards, -1, -2)  # (C, 3, 3) row vectors, optical axes
    stages.update()
    seconds["static rig"] = time.perf_counter() - clock

    # perspective start: metres through the subject's bone proportions (1.75 m for now)
    clock = time.perf_counter()
    metres = metres_per_unit(H36M_17.bone_lengths(poses), DEFAULT_SUBJECT_HEIGHT)  # (F,), the true height later
    box = _boxes_size(solved.boxes)  # (F, C)
    pixels_per_metre = box * static.scale / metres[:, None]
    depth = focal[None, :] / pixels_per_metre  # (F, C)
    normalised = (centres - start_intrinsics[None, :, 2:4]) / focal[None, :, None]
    depth_points = depth[..., None] * np.concatenate([normalised, np.ones((F, C, 1))], axis=-1)
    rotation = np.swapaxes(rig_rotation, -1, -2)  # world to camera, column vectors
    good = used & np.isfinite(depth_points).all(axis=-1) & (depth > 0)
    translation, positions = initial_translations(rotation, depth_points, good)
    centred = (poses - poses.mean(axis=1, keepdims=True)) * metres[:, None, None]
    points = centred + positions[:, None, :]
    start = PerspectiveCameras(rotation, translation, start_intrinsics, start_distortion, size.copy())
    seconds["perspective start"] = time.perf_counter() - clock

    # bundle adjustment
    clock = time.perf_counter()
    keypoints, confidences = (np.array(a) for a in capture.joints)  # (C, F, 17, 2), (C, F, 17)
    mirror = H36M_17.mirror_index()
    for f, views in enumerate(solved.views):
        if views is None or views.swapped is None:
            continue
        for c, swapped in zip(np.flatnonzero(solved.used[f]), views.swapped):
            if swapped:
                keypoints[c, f] = keypoints[c, f, mirror]
                confidences[c, f] = confidences[c, f, mirror]
    weights = np.where(used.T[..., None] & np.isfinite(keypoints).all(axis=-1), confidences, 0.0)
    keypoints = np.nan_to_num(keypoints)
    scale = ROBUST_SCALE * float(np.nanmedian(np.where(used, box, np.nan)))
    extrinsics = ("rotation", "translation")
    plan: list[tuple[str, ...]] = [extrinsics] + ([extrinsics + ("focal",)] if intrinsics is None else [])
    cameras, result = start, None
    while plan:
        free = plan.pop(0)
        stages.set_postfix_str("bundle adjustment: " + ", ".join(free))
        first = free == extrinsics and intrinsics is None  # with the prior focal: only to get near
        result = bundle_adjust(cameras, points, keypoints, weights, free=free, robust_scale=scale,
                               max_iterations=_STAGE_ITERATIONS, tolerance=_FIRST_STAGE_TOLERANCE if first else
                               _STAGE_TOLERANCE)
        cameras, points = result.cameras, np.where(np.isnan(result.points), points, result.points)
        if free == extrinsics + ("focal",):  # the distortion and principal point stages, with the focal found
            if distortion == "auto":
                distortion = "k1" if _keypoint_radius(keypoints, weights, cameras) > AUTO_DISTORTION_RADIUS else "none"
            if distortion != "none":
                plan.append(free + ("k1",) + (("k2",) if distortion == "k1k2" else ()))
            if principal_point == "free":
                plan.append((plan[-1] if plan else free) + ("principal_point",))
    if intrinsics is not None:
        distortion = "given"
    else:
        focal = cameras.intrinsics[:, 0] / size.max(axis=1)
        outside = (focal < FOCAL_RANGE[0]) | (focal > FOCAL_RANGE[1])
        if outside.any():
            implausible = [capture.camera_names[c] for c in np.flatnonzero(outside)]
            warnings.warn(f"calibrate: the focal lengths of {implausible} came out at "
                          f"{', '.join(f'{v:.2f}' for v in focal[outside])} "
                          f"times the image's larger side, outside {FOCAL_RANGE[0]}-{FOCAL_RANGE[1]}: the focal length "
                          "is poorly determined by this capture (too few frames, too little movement in depth, or "
                          "two cameras alone); give known intrinsics (intrinsics=) if you have them", stacklevel=2)
    stages.update()
    seconds["bundle adjustment"] = time.perf_counter() - clock
    stages.close()
    assert result is not None
    for f in np.flatnonzero(solved.solved & (used.sum(axis=1) < 2)):
        rejected[int(f)] = "fewer than two views agree with the rig"
    return RigFit(cameras, result.points, result.residuals, used, rejected, rejected_views, start, distortion,
                  seconds)


def _subject_scale(points: F64, height: float) -> float:
    """Metres per unit of ``points`` (F, 17, 3): :func:`~metapose_geom.io.writers.metres_per_unit` of
    each bone's median length over the frames, as the solve writers scale poses."""
    lengths = H36M_17.bone_lengths(points)
    seen = np.isfinite(lengths).any(axis=0)
    median = np.full(lengths.shape[1], np.nan)
    median[seen] = np.nanmedian(lengths[:, seen], axis=0)
    scale = float(metres_per_unit(median, height))
    if not np.isfinite(scale):
        raise ValueError("capture: no bone of the subject was triangulated; the metric scale is unknown")
    return scale


def _floor_normal(points: F64, body_up: F64) -> F64 | None:
    """The unit normal (towards ``body_up``) of the plane through the subject's foot contacts (per
    frame the ankle lower along ``body_up``), fitted twice (the second time without the contacts
    beyond 3 scaled MADs of the first plane); None when the contacts do not spread over an area
    (:data:`FLOOR_MIN_SPREAD`, e.g. a treadmill) or the plane leans more than
    :data:`FLOOR_MAX_TILT_DEG` from the body's vertical."""
    ankles = points[:, [3, 6]]
    finite = np.isfinite(ankles).all(axis=(1, 2))
    if finite.sum() < 10:
        return None
    ankles = ankles[finite]
    lower = np.argmin(ankles @ body_up, axis=1)
    contacts = ankles[np.arange(len(ankles)), lower]
    keep = np.ones(len(contacts), dtype=bool)
    normal = None
    for _ in range(2):
        centred = contacts[keep] - contacts[keep].mean(axis=0)
        _, singular, axes = np.linalg.svd(centred, full_matrices=False)
        if singular[1] / np.sqrt(keep.sum()) < FLOOR_MIN_SPREAD:
            return None
        normal = axes[2] * np.sign(axes[2] @ body_up)
        distance = np.abs((contacts - contacts[keep].mean(axis=0)) @ normal)
        keep = distance <= np.median(distance) + 3 * 1.4826 * _mad(distance)
    if np.degrees(np.arccos(np.clip(normal @ body_up, -1.0, 1.0))) > FLOOR_MAX_TILT_DEG:
        return None
    return normal


def floor_frame(cameras: PerspectiveCameras, points: F64, height: float) -> tuple[PerspectiveCameras, F64]:
    """The world moved onto the floor the subject stands on. z up: the normal of the plane through
    the foot contacts (:func:`_floor_normal`), or, when they do not span an area (a treadmill), the
    body's mean vertical (ankles to thorax); the floor :data:`ANKLE_HEIGHT` ``* height`` below the
    ankles' low (5th percentile) height; the origin on the floor under the subject's median pelvis;
    x the horizontal part of camera 0's viewing direction. points (F, 17, 3) metres -> the same
    moved, with the cameras."""
    ankles = points[:, [3, 6]]  # r-ankle, l-ankle
    body = points[:, 8] - ankles.mean(axis=1)  # thorax above the feet
    body = body[np.isfinite(body).all(axis=1)]
    if len(body) == 0:
        raise ValueError("capture: the subject's ankles and thorax were never triangulated; the floor is unknown")
    up = (body / np.linalg.norm(body, axis=1, keepdims=True)).mean(axis=0)
    up /= np.linalg.norm(up)
    floor_normal = _floor_normal(points, up)
    if floor_normal is not None:
        up = floor_normal
    view = cameras.rotation[0, 2]  # camera 0's optical axis in the world
    x_axis = view - (view @ up) * up
    if np.linalg.norm(x_axis) < 1e-6:  # camera 0 looks straight down or up
        x_axis = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
    x_axis /= np.linalg.norm(x_axis)
    axes = np.stack([x_axis, np.cross(up, x_axis), up])  # rows: the new axes in the old world
    turned = points @ axes.T
    heights = turned[:, [3, 6], 2]
    floor = np.percentile(heights[np.isfinite(heights)], 5) - ANKLE_HEIGHT * height
    origin_new = np.append(np.nanmedian(turned[:, 0, :2], axis=0), floor)  # under the pelvis, in the new axes
    origin = axes.T @ origin_new
    moved = turned - origin_new
    rotation = cameras.rotation @ axes.T  # x_cam = R X + t = R A^T X' + (R o + t)
    translation = cameras.translation + np.einsum("cab,b->ca", cameras.rotation, origin)
    return PerspectiveCameras(rotation, translation, cameras.intrinsics, cameras.distortion, cameras.image_size), moved



def _read_intrinsics(intrinsics: Any, names: Sequence[str]) -> PerspectiveCameras | None:
    """``intrinsics`` (None, a path to a calibration TOML, a Calibration or PerspectiveCameras) ->
    the capture's cameras' intrinsics, matched by name (PerspectiveCameras: by order)."""
    from ..io.calibration import Calibration, read_calibration

    if intrinsics is None:
        return None
    if isinstance(intrinsics, (str, os.PathLike)):
        intrinsics = read_calibration(intrinsics)
    if isinstance(intrinsics, PerspectiveCameras):
        if intrinsics.num_cameras != len(names):
            raise ValueError(f"intrinsics: {intrinsics.num_cameras} cameras for a capture of {len(names)}")
        return intrinsics.validated("intrinsics")
    if not isinstance(intrinsics, Calibration):
        raise ValueError(f"intrinsics: expected a calibration file's path, a Calibration or PerspectiveCameras, got "
                         f"{type(intrinsics).__name__}")
    missing = [name for name in names if name not in intrinsics.names]
    if missing:
        raise ValueError(f"intrinsics: no camera named {missing} (it has {list(intrinsics.names)})")
    order = [intrinsics.names.index(name) for name in names]
    cameras = intrinsics.cameras
    return PerspectiveCameras(*(np.asarray(part)[order] for part in cameras))


def calibrate(capture, *, subject_height: float | None = None,
              camera_distance: tuple[str, str, float] | None = None, intrinsics: Any = None,
              distortion: Distortion = "auto", focal_prior: float | None = None,
              principal_point: Literal["centre", "free"] = "centre", image_size: Any = None, method: str = "ir",
              max_frames: int | None = MAX_FRAMES, progress: bool = True, threads: int | None = None):
    """Calibrate a fixed rig from the person it filmed: perspective cameras in metres, z up.

    Args:
        capture: a :class:`metapose_geom.io.Capture` of C >= 2 fixed cameras over many frames (a
            few hundred frames of a person moving through the volume is a good capture; the
            further the person moves in depth, the better the focal lengths are determined).
        subject_height: the person's height in metres, which sets the scale (None: 1.75 m with a
            UserWarning, unless ``camera_distance`` is given).
        camera_distance: ``(name_a, name_b, metres)``: a measured distance between two camera
            centres, which sets the scale instead.
        intrinsics: known intrinsics (a calibration TOML path, a
            :class:`~metapose_geom.io.Calibration` matched by camera name, or
            :class:`~metapose_geom.PerspectiveCameras` in capture order): only the extrinsics are
            solved.
        distortion: ``"none"``, ``"k1"``, ``"k1k2"``, or ``"auto"`` (the default): ``k1`` when the
            keypoints reach far enough from the image centre for it to be observable
            (:data:`AUTO_DISTORTION_RADIUS`), else none.
        focal_prior: the start focal length in units of the image's larger side (default
            :data:`FOCAL_PRIOR`).
        principal_point: ``"centre"`` (the image centre, fixed) or ``"free"`` (adjusted last).
        image_size: (C, 2) ``[width, height]`` pixels when the capture does not know them.
        method, threads: the per-frame solver (:meth:`~metapose_geom.io.Capture.solve`).
        max_frames: at most this many frames, evenly spread over the capture, are used (default
            :data:`MAX_FRAMES`; None: all). A rig is over-determined long before: more frames cost
            time (the bundle adjustment's grows with them) for little accuracy.
        progress: progress bars.

    Returns:
        A :class:`~metapose_geom.io.Calibration` in metres (world: z up, origin on the floor
        under the subject), with each camera's reprojection errors of the keypoints used, the
        frames used and those rejected (and why); ``save`` writes it as anipose or Pose2Sim TOML.
    """
    from ..io.calibration import Calibration
    from ..io.capture import Capture
    from ..io.writers import _height

    if not isinstance(capture, Capture):
        raise ValueError(f"capture: expected a metapose_geom.io.Capture, got {type(capture).__name__}")
    check_choice(distortion, "distortion", ("auto", "none", "k1", "k1k2"))
    check_choice(principal_point, "principal_point", ("centre", "free"))
    if focal_prior is not None:
        check_number(focal_prior, "focal_prior", 0.0, low_open=True)
    names = capture.camera_names
    height_assumed = False
    if camera_distance is not None:
        if not (isinstance(camera_distance, (tuple, list)) and len(camera_distance) == 3):
            raise ValueError("camera_distance: expected (name_a, name_b, metres)")
        first, second, metres = camera_distance
        for name in (first, second):
            if name not in names:
                raise ValueError(f"camera_distance: no camera named {name!r} (cameras: {list(names)})")
        if first == second:
            raise ValueError("camera_distance: two different cameras are needed")
        metres = check_number(metres, "camera_distance (metres)", 0.0, low_open=True)
        height = DEFAULT_SUBJECT_HEIGHT if subject_height is None else _height(subject_height)
    else:
        height_assumed = subject_height is None
        height = _height(subject_height)
    if image_size is not None:
        size = np.asarray(image_size, dtype=np.float64)
        if size.shape != (capture.num_cameras, 2) or not np.isfinite(size).all() or (size <= 0).any():
            raise ValueError(f"image_size: expected ({capture.num_cameras}, 2) [width, height] pixels > 0")
        image_size = size
    known = _read_intrinsics(intrinsics, names)
    if known is not None:
        given = [name for name, value, default in (("distortion", distortion, "auto"),
                                                   ("principal_point", principal_point, "centre"),
                                                   ("focal_prior", focal_prior, None)) if value != default]
        if given:
            raise ValueError(f"{', '.join(given)}: not used with known intrinsics (only the extrinsics are solved)")
        size = capture.image_size if image_size is None else image_size
        if size is not None and not np.array_equal(np.asarray(size, dtype=np.float64), known.image_size):
            raise ValueError(f"intrinsics: image sizes {known.image_size.tolist()} differ from the capture's "
                             f"{np.asarray(size).tolist()}: intrinsics for other images")
    if known is None and capture.num_cameras == 2:
        warnings.warn("calibrate: with two cameras the focal lengths are weakly determined (tens of percent on "
                      "synthetic rigs, and the rotations with them); give known intrinsics (intrinsics=) if you have "
                      "them", stacklevel=2)
    if max_frames is not None:
        max_frames = check_int(max_frames, "max_frames", 10)
        if capture.num_frames > max_frames:  # evenly spread over the capture
            chosen = np.unique(np.linspace(0, capture.num_frames - 1, max_frames).round().astype(np.int64))
            capture = dataclasses.replace(
                capture, keypoints=capture.keypoints[:, chosen], confidences=capture.confidences[:, chosen],
                mono3d=None if capture.mono3d is None else capture.mono3d[:, chosen],
                frame_numbers=capture.frame_numbers[chosen])
    fit = fit_rig(capture, intrinsics=known, distortion=distortion, focal_prior=focal_prior,
                  principal_point=principal_point, image_size=image_size, method=method, progress=progress,
                  threads=threads)
    points = fit.points
    if camera_distance is not None:
        centre = fit.cameras.centres
        apart = np.linalg.norm(centre[names.index(camera_distance[0])] - centre[names.index(camera_distance[1])])
        scale = metres / apart
    else:
        scale = _subject_scale(points, height)
    cameras = PerspectiveCameras(fit.cameras.rotation, fit.cameras.translation * scale, fit.cameras.intrinsics,
                                 fit.cameras.distortion, fit.cameras.image_size)
    cameras, points = floor_frame(cameras, points * scale, height)
    residuals = {name: fit.residuals[c][np.isfinite(fit.residuals[c])] for c, name in enumerate(names)}
    numbers = capture.frame_numbers
    used_frames = numbers[fit.used.sum(axis=1) >= 2]
    rejected = {int(numbers[f]): reason for f, reason in sorted(fit.rejected.items())}
    metadata = {
        "calibrated_by": "metapose-geom calibrate (calibration from people)",
        "scale_from": "camera_distance" if camera_distance is not None else
                      ("subject_height (assumed)" if height_assumed else "subject_height"),
        "subject_height_m": float(height),
        "distortion": fit.distortion,
        "rejected_views": int(fit.rejected_views),
    }
    return Calibration(names=tuple(names), image_size=cameras.image_size, rotation_vector=matrix_to_rodrigues(cameras.rotation),
                       translation=cameras.translation, intrinsics=cameras.intrinsics, distortion=cameras.distortion,
                       units="m", residuals=residuals, frames_used=used_frames, frames_rejected=rejected,
                       metadata=metadata)
