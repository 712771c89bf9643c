"""The AniPose adapter: aniposelib's bundle adjustment and triangulation, full-perspective cameras.

MetaPose compares itself with classical calibration: aniposelib's iterative bundle adjustment of
full-perspective cameras on the detected 2D joints, then triangulation. This module is a thin
adapter over aniposelib (an optional dependency: ``pip install 'metapose-geom[anipose]'``):

- the 2D points are the mixture means in pixels, ``sum_k w_k mu_k / sum_k w_k``
  (:func:`metapose_geom.mixtures.mixture_mean`) mapped out of box units through each view's box
  (:func:`mixture_mean_pixels`);
- the cameras are OpenCV ones, ``X_cam = R @ X + t``, intrinsics ``[fx, fy, cx, cy]`` and
  distortion ``[k1, k2, p1, p2, k3]`` (:class:`metapose_geom.PerspectiveCameras`); the start
  is either the ground-truth cameras or a seeded perturbation of their extrinsics
  (:func:`perturb_cameras`);
- :func:`anipose_solve` runs ``CameraGroup.bundle_adjust_iter`` on the points of a batch of frames
  that share the cameras, then ``CameraGroup.triangulate``, and returns the pose in the adjusted
  camera 0's frame.

aniposelib's camera model refines, besides the extrinsics, one focal length (``fx = fy``) and the
first radial coefficient ``k1``; it sets ``k2, p1, p2, k3`` to zero at its first adjustment. With
``adjust_intrinsics=False`` only the extrinsics move (``only_extrinsics=True``) and the start's
intrinsics and distortion are kept. aniposelib resamples points with numpy's global generator;
:func:`anipose_solve` seeds it for the call and puts the caller's state back afterwards.

Example::

    from metapose_geom import synth
    from metapose_geom.anipose import anipose_solve, mixture_mean_pixels, scene_cameras

    scene = synth.make_scene(0, num_cameras=4)
    points = mixture_mean_pixels(scene.mixtures, scene.boxes)          # (C, J, 2) px
    result = anipose_solve(points, scene_cameras(scene))               # ground-truth start
    result.pose3d.shape                                                 # (1, J, 3), camera 0, mm
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64, check_bool, check_int, check_number
from .geometry import PerspectiveCameras, matrix_to_rodrigues, rodrigues_to_matrix
from .mixtures import check_mixtures, mixture_mean
from .views import check_box_values

F64 = NDArray[np.float64]

__all__ = [
    "ANIPOSE_INSTALL_HINT",
    "AniPoseError",
    "AniPoseResult",
    "anipose_solve",
    "mixture_mean_pixels",
    "perturb_cameras",
    "require_aniposelib",
    "scene_cameras",
]

#: Bumped whenever :func:`anipose_solve` changes what it returns, so that results an older adapter
#: left in an evaluation's cache (:class:`metapose_geom.evaluate.AniPoseCache`) are not reused.
ADAPTER_VERSION = 2

#: How to get the optional dependency, quoted by the error raised when it is missing.
ANIPOSE_INSTALL_HINT = "pip install 'metapose-geom[anipose]'  (or: pip install aniposelib)"


def require_aniposelib():
    """Import and return ``aniposelib.cameras``; ImportError saying how to install it when absent."""
    try:
        from aniposelib import cameras
    except ImportError as error:
        raise ImportError(
            f"the AniPose baseline needs aniposelib, which could not be imported ({error}). "
            f"Install it with: {ANIPOSE_INSTALL_HINT}"
        ) from error
    return cameras


def mixture_mean_pixels(mixtures: ArrayLike, boxes: ArrayLike) -> F64:
    """Mixture means in pixels: mixtures (..., C, J, K, 4) box units, boxes (..., C, 4) px -> (..., C, J, 2) px.

    The mean ``sum_k w_k mu_k / sum_k w_k`` of each joint's mixture (the original's "mean heatmap"
    prediction, :func:`metapose_geom.mixtures.mixture_mean`), mapped out of box units:
    ``origin + size * point`` with ``origin`` the box's top-left corner and ``size = max(width,
    height)``. The mixtures must pass :func:`metapose_geom.mixtures.check_mixtures` and the boxes
    be finite with width and height > 0; ValueError otherwise.
    """
    mixtures = as_float64(mixtures, "mixtures")
    if mixtures.ndim < 4 or mixtures.shape[-1] != 4:
        raise ValueError(f"mixtures: expected shape (..., C, J, K, 4), got {mixtures.shape}")
    mixtures = check_mixtures(mixtures)
    boxes = as_float64(boxes, "boxes")
    if boxes.shape != mixtures.shape[:-3] + (4,):
        raise ValueError(f"boxes: expected shape {mixtures.shape[:-3] + (4,)} for mixtures {mixtures.shape}, "
                         f"got {boxes.shape}")
    check_box_values(boxes)
    size = boxes[..., 2:].max(axis=-1)
    return mixture_mean(mixtures) * size[..., None, None] + boxes[..., None, :2]


def scene_cameras(scene) -> PerspectiveCameras:
    """The ground-truth cameras of a :class:`metapose_geom.synth.Scene` (or anything with its fields)."""
    return PerspectiveCameras(scene.rotation, scene.translation, scene.intrinsics, scene.distortion, scene.image_size)


def perturb_cameras(cameras: PerspectiveCameras, subject: ArrayLike, rng: np.random.Generator,
                    rotation_degrees: float = 15.0, translation_fraction: float = 0.25) -> PerspectiveCameras:
    """A random start near ``cameras``: each camera turned by ``rotation_degrees`` about a uniformly
    random axis and its centre moved by ``translation_fraction`` of its distance to ``subject``
    (3,) (world point, e.g. the pose's centroid) in a uniformly random direction. Intrinsics and
    distortion are kept. Draws come from ``rng`` (a numpy Generator)."""
    cameras = PerspectiveCameras.checked(cameras)
    subject = as_float64(subject, "subject")
    if subject.shape != (3,) or not np.isfinite(subject).all():
        raise ValueError(f"subject: expected a finite (3,) world point, got shape {subject.shape}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
    rotation_degrees = check_number(rotation_degrees, "rotation_degrees", 0.0)
    translation_fraction = check_number(translation_fraction, "translation_fraction", 0.0)
    count = cameras.rotation.shape[0]
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    turn = rodrigues_to_matrix(axes * np.radians(rotation_degrees))
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centres = cameras.centres
    distance = np.linalg.norm(centres - subject, axis=1, keepdims=True)
    centres = centres + translation_fraction * distance * directions
    rotation = turn @ cameras.rotation
    translation = -np.einsum("cij,cj->ci", rotation, centres)
    return PerspectiveCameras(rotation, translation, cameras.intrinsics.copy(), cameras.distortion.copy(),
                              cameras.image_size.copy())


class AniPoseError(RuntimeError):
    """aniposelib failed inside its bundle adjustment or triangulation (it has no error handling of
    its own: a start far from the truth can leave an iteration without points, for example).
    ``seconds`` is the time spent until the failure."""

    def __init__(self, message: str, seconds: float = 0.0) -> None:
        super().__init__(message)
        self.seconds = seconds


@dataclass(frozen=True)
class AniPoseResult:
    """The result of :func:`anipose_solve` on N frames that share C cameras (J joints).

    Attributes:
        pose3d: (N, J, 3) triangulated pose in the adjusted camera 0's frame (``R_0 X + t_0``), in
            the start cameras' world units (mm for the synthetic data); defined up to the scale a
            bundle adjustment cannot see.
        pose3d_world: (N, J, 3) the same in the adjusted world frame.
        cameras: the adjusted cameras (aniposelib's intrinsics: ``fx = fy``, distortion ``k1`` only
            unless ``adjust_intrinsics=False``).
        reprojection: (N, C, J, 2) the triangulated pose seen by the adjusted cameras, px.
        reprojection_error: (N,) mean over joints of the per-joint mean over cameras of the pixel
            distance between the points and ``reprojection``.
        seconds: wall time of the bundle adjustment and the triangulation (all N frames).
    """

    pose3d: F64
    pose3d_world: F64
    cameras: PerspectiveCameras
    reprojection: F64
    reprojection_error: F64
    seconds: float


def _camera_group(anipose_cameras, cameras: PerspectiveCameras):
    group = []
    for c in range(cameras.rotation.shape[0]):
        fx, fy, cx, cy = cameras.intrinsics[c]
        group.append(anipose_cameras.Camera(
            matrix=np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
            dist=cameras.distortion[c].copy(),
            size=tuple(float(v) for v in cameras.image_size[c]),
            rvec=matrix_to_rodrigues(cameras.rotation[c]),
            tvec=cameras.translation[c].copy(),
            name=f"cam{c}",
        ))
    return anipose_cameras.CameraGroup(group)


def _group_cameras(group, image_size: F64) -> PerspectiveCameras:
    rotation, translation, intrinsics, distortion = [], [], [], []
    for camera in group.cameras:
        matrix = camera.get_camera_matrix()
        rotation.append(rodrigues_to_matrix(np.asarray(camera.get_rotation(), dtype=np.float64)))
        translation.append(np.asarray(camera.get_translation(), dtype=np.float64))
        intrinsics.append(np.array([matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2]]))
        dist = np.zeros(5)
        values = np.asarray(camera.get_distortions(), dtype=np.float64).ravel()[:5]
        dist[: values.size] = values
        distortion.append(dist)
    return PerspectiveCameras(np.stack(rotation), np.stack(translation), np.stack(intrinsics), np.stack(distortion),
                              image_size.copy())


def anipose_solve(points: ArrayLike, start: PerspectiveCameras, adjust_cameras: bool = True,
                  adjust_intrinsics: bool = True, seed: int = 0) -> AniPoseResult:
    """AniPose on N frames seen by the same C cameras: bundle adjustment, then triangulation.

    Args:
        points: (N, C, J, 2) or (C, J, 2) pixels, e.g. :func:`mixture_mean_pixels`; NaN marks a
            joint a view does not see (aniposelib leaves it out; a joint seen by fewer than two
            views comes back NaN).
        start: the C cameras the adjustment starts from (:class:`~metapose_geom.PerspectiveCameras`).
        adjust_cameras: run ``bundle_adjust_iter`` (aniposelib's defaults) on all N frames' points
            before triangulating; False triangulates with the start cameras.
        adjust_intrinsics: also refine the focal length and ``k1`` (aniposelib's default, as the
            original study); False passes ``only_extrinsics=True``.
        seed: seeds numpy's global generator, which aniposelib's point resampling draws from,
            for this call (the caller's state is restored).

    Returns:
        :class:`AniPoseResult`; ``pose3d`` (N, J, 3) in the adjusted camera 0's frame.

    Raises ImportError (with the install command) when aniposelib is absent, ValueError on bad input,
    :class:`AniPoseError` when aniposelib fails on the points.
    """
    anipose_cameras = require_aniposelib()
    start = PerspectiveCameras.checked(start, "start")
    array = as_float64(points, "points")
    count = start.rotation.shape[0]
    single = array.ndim == 3
    if single:
        array = array[None]
    if array.ndim != 4 or array.shape[1] != count or array.shape[3] != 2 or 0 in array.shape:
        raise ValueError(f"points: expected shape (N, C={count}, J, 2) or (C={count}, J, 2) pixels, "
                         f"got {np.shape(points)}")
    if np.isinf(array).any():
        raise ValueError("points: contains inf (NaN marks a missing joint)")
    if np.isnan(array).any(axis=-1).all():
        raise ValueError("points: every point is NaN (missing)")
    seed = check_int(seed, "seed", 0)
    adjust_cameras = check_bool(adjust_cameras, "adjust_cameras")
    adjust_intrinsics = check_bool(adjust_intrinsics, "adjust_intrinsics")
    frames, _, joints, _ = array.shape
    flat = np.ascontiguousarray(array.transpose(1, 0, 2, 3).reshape(count, frames * joints, 2))

    group = _camera_group(anipose_cameras, start)
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        begin = time.perf_counter()
        try:
            if adjust_cameras:
                group.bundle_adjust_iter(flat.copy(), only_extrinsics=not adjust_intrinsics)
            world = np.asarray(group.triangulate(flat.copy()), dtype=np.float64)
        except Exception as error:  # whatever aniposelib's numerics hit, e.g. ZeroDivisionError when an
            # iteration of bundle_adjust_iter keeps no point under its error threshold (a diverged start)
            raise AniPoseError(f"aniposelib failed on these points: {type(error).__name__}: {error}",
                               time.perf_counter() - begin) from error
        seconds = time.perf_counter() - begin
        errors = np.asarray(group.reprojection_error(world, flat, mean=True), dtype=np.float64)
        reprojection = np.asarray(group.project(world), dtype=np.float64)  # (C, N J, 2)
    finally:
        np.random.set_state(state)
    cameras = _group_cameras(group, start.image_size)
    world = world.reshape(frames, joints, 3)
    in_camera0 = world @ cameras.rotation[0].T + cameras.translation[0]
    return AniPoseResult(
        pose3d=in_camera0,
        pose3d_world=world,
        cameras=cameras,
        reprojection=reprojection.reshape(count, frames, joints, 2).transpose(1, 0, 2, 3).copy(),
        reprojection_error=errors.reshape(frames, joints).mean(axis=1),
        seconds=seconds,
    )
