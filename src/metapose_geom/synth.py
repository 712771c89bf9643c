"""Seeded synthetic scenes: Human3.6M-like poses seen by 2 to 8 distorted perspective cameras.

A :class:`Scene` holds everything a real frame has, ground truth included: the 3D pose (world, mm,
y up, ground at y = 0), full-perspective cameras with distortion (OpenCV convention, ``R @ X + t``),
the ground-truth 2D, square person boxes, noisy per-joint Gaussian mixtures with occlusion and
left/right confusion, and monocular 3D guesses with depth errors; optionally (``heatmaps=True``) the
heatmaps a 2D network would give, rendered from those mixtures with blur and noise, and the
mixtures fitted back to them. It also offers MetaPose's ablation
switches: ground-truth initialisation, ground-truth mixtures (optionally noisy) and weak-perspective
re-projection of the labels (:meth:`Scene.ablated_views`).

Every draw comes from one numpy Generator: ``make_scene(seed)`` is reproducible, and scene ``i`` of
``make_scenes(count, seed=s)`` equals ``make_scene(np.random.default_rng([s, i]))``.

:func:`make_rig_sequence` makes a :class:`RigSequence`: a subject walking for many frames through one
fixed, distorted rig, each frame's evidence a scene seen by that rig, as keypoints, confidences and
monocular guesses (a :class:`metapose_geom.io.Capture`), with left/right swaps and dropped views
on request: the data for calibrating a rig from the people in it.

Example::

    scene = make_scene(0, num_cameras=4)
    views = scene.views()                                    # noisy evidence, as a real frame
    oracle = scene.ablated_views(gt_init=True, gt_mixtures=True)
    sequence = make_rig_sequence(0, num_cameras=4, frames=200)
    capture = sequence.capture()                             # keypoints, confidences, mono3d
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64, check_bool, check_choice, check_int, check_number
from .geometry import PerspectiveCameras, project_perspective
from .skeletons import H36M_17, Skeleton
from .views import Views, box_to_pixels

if TYPE_CHECKING:
    from .io.capture import Capture

F64 = NDArray[np.float64]
SeedLike = int | np.random.Generator | list | tuple | None

__all__ = [
    "GT_MIXTURE_VARIANCE", "H36M_MIRROR", "HEATMAP_BACKGROUND_NOISE", "HEATMAP_BLUR_PX", "HEATMAP_CROP_PX",
    "HEATMAP_GAIN_NOISE", "RIG_AIM_HEIGHT_MM", "WALK_SPEED_MM_S", "PerspectiveCameras", "RigSequence", "Scene",
    "gt_mixtures", "make_rig_sequence", "make_scene", "make_scenes", "sample_cameras", "sample_pose",
]

#: H36M-17 left/right mirror: ``H36M_MIRROR[j]`` is joint j's counterpart on the other side.
H36M_MIRROR = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)
#: Variance (box units squared) of the ground-truth mixtures of the original's ablation.
GT_MIXTURE_VARIANCE = 3e-4
#: Side (px) of the crop the heatmap network sees: one crop pixel is 1 / 256 box units.
HEATMAP_CROP_PX = 256.0
#: Blur (Gaussian sigma, heatmap pixels) of the rendered heatmaps, on top of each component's own spread.
HEATMAP_BLUR_PX = 1.5
#: Multiplicative noise of the rendered heatmaps: each pixel times ``1 + N(0, HEATMAP_GAIN_NOISE^2)``.
HEATMAP_GAIN_NOISE = 0.05
#: Additive noise of the rendered heatmaps (peak 1): ``N(0, HEATMAP_BACKGROUND_NOISE^2)`` per pixel,
#: so the background is slightly negative in places, as a network's is.
HEATMAP_BACKGROUND_NOISE = 1e-3

_PAIRS = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))
_LIMBS = ((1, (2, 3)), (4, (5, 6)), (11, (12, 13)), (14, (15, 16)))  # (root, distal joints)
#: per leg (hip flexion, hip abduction, knee flexion) ranges in degrees; a pose's legs are both
#: "stand", one "stand" and one "free" (either side), or both "sit", with these probabilities
_LEG_RANGES = {"stand": ((-10, 25), (-5, 15), (0, 40)), "free": ((-15, 110), (-10, 45), (0, 150)),
               "sit": ((60, 110), (-5, 30), (60, 140))}
_LEG_MODES = (0.45, 0.15, 0.15, 0.25)
_REST_HEIGHT_MM = 1700.0  # the height H36M_17's rest pose stands for
_IMAGE_SIZES = ((1920.0, 1080.0), (1000.0, 1000.0))
_IMAGE_MARGIN_PX = 5.0
_AIM_OFFSET = 0.08  # a camera aims at its target plus up to this fraction of its distance per axis


# --------------------------------------------------------------------------- ground-truth mixtures


def gt_mixtures(points: ArrayLike, noise: float = 0.0, rng: SeedLike = None,
                variance: float = GT_MIXTURE_VARIANCE) -> F64:
    """points (..., 2) box units -> mixtures (..., 4, 4) ``[weight, mu_x, mu_y, variance]``.

    Four equal components (weight 0.25) at the point with the given variance (box units squared),
    the original's ground-truth heatmaps; with ``noise > 0`` each mean is moved by N(0, noise^2) per
    axis, drawn from ``rng`` (a Generator or a seed, required then).
    """
    array = as_float64(points, "points")
    if array.ndim < 1 or array.shape[-1] != 2 or not np.isfinite(array).all():
        raise ValueError(f"points: expected finite values of shape (..., 2), got {array.shape}")
    check_number(noise, "noise", low=0.0)
    check_number(variance, "variance", low=0.0, low_open=True)
    out = np.empty(array.shape[:-1] + (4, 4))
    out[..., 0] = 0.25
    out[..., 1:3] = array[..., None, :]
    out[..., 3] = variance
    if noise > 0:
        if rng is None:
            raise ValueError("rng: a numpy Generator or a seed is needed when noise > 0")
        out[..., 1:3] += noise * _generator(rng, "rng").normal(size=out[..., 1:3].shape)
    return out


# --------------------------------------------------------------------------- poses


def _rotation(axis: int, angle: float) -> F64:
    """(3, 3) rotation by ``angle`` radians about coordinate axis 0, 1 or 2 (x, y, z), column vectors."""
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    matrix = np.eye(3)
    matrix[i, i] = matrix[j, j] = np.cos(angle)
    matrix[i, j], matrix[j, i] = -np.sin(angle), np.sin(angle)
    return matrix


def _joint(flexion: float, abduction: float = 0.0, twist: float = 0.0) -> F64:
    """Local joint rotation (column vectors): about x (left), then z (forward), then the bone's own y.

    A hanging limb (0, -1, 0) swings forward for a negative flexion and to +x for a positive abduction;
    an upright bone (0, 1, 0) bends forward for a positive flexion."""
    return _rotation(0, flexion) @ _rotation(2, abduction) @ _rotation(1, twist)


def sample_pose(rng: np.random.Generator, skeleton: Skeleton = H36M_17) -> F64:
    """A random standing, stepping or sitting human pose (J, 3) in mm, world frame: y up, ground y = 0.

    Body height uniform in 1.5-1.95 m, bone lengths the rest pose's scaled to it with a 3% jitter
    shared by left and right bones; forward kinematics with joint angles within human limits
    (degrees: hip flexion -15..110, abduction -10..45; knee flexion 0..150; spine bend -20..70 in
    two segments; neck -30..40 and head -20..20 flexion; shoulder flexion -40..170, abduction 5..120;
    elbow flexion 0..145); legs standing, stepping (one leg free) or sitting (on an unseen seat);
    any heading (yaw uniform); the lower ankle 4.5% of the height above the ground, the pelvis
    within 0.3 m of the vertical axis. ``rng``: a Generator or a seed. H36M_17 only.
    """
    if skeleton != H36M_17:
        raise ValueError(f"skeleton: only {H36M_17.name!r} is supported, got {skeleton.name!r}")
    rng = _generator(rng, "rng")
    deg = np.radians

    def skewed(low: float, high: float, power: float = 2.0) -> float:  # degrees in, radians out
        return deg(low + (high - low) * rng.uniform() ** power)  # power > 1: denser near ``low``

    def uniform(low: float, high: float) -> float:
        return deg(rng.uniform(low, high))

    rest, bones = skeleton.rest_pose(), skeleton.bones
    height = rng.uniform(1500.0, 1950.0)
    mirrored = np.array([bones.index((H36M_MIRROR[p], H36M_MIRROR[c])) for p, c in bones])
    jitter = np.clip(rng.normal(1.0, 0.03, len(bones)), 0.92, 1.08)[np.minimum(np.arange(len(bones)), mirrored)]
    length = dict(zip(bones, skeleton.bone_lengths(rest) * jitter * height / _REST_HEIGHT_MM))
    down = np.array([0.0, -1.0, 0.0])  # limbs hang straight in the template
    pose = np.zeros((skeleton.num_joints, 3))

    def place(parent: int, child: int, frame: F64, direction: F64 | None = None) -> None:
        if direction is None:
            direction = (rest[child] - rest[parent]) / np.linalg.norm(rest[child] - rest[parent])
        pose[child] = pose[parent] + length[(parent, child)] * (frame @ direction)

    # body frame: x to the subject's left, y up, z forward; side = +1 left, -1 right
    root = _rotation(1, rng.uniform(0.0, 2 * np.pi)) @ _rotation(0, uniform(-5, 10)) @ _rotation(2, uniform(-5, 5))
    legs = [("stand", "stand"), ("stand", "free"), ("free", "stand"), ("sit", "sit")][rng.choice(4, p=_LEG_MODES)]
    for side, (hip, knee, ankle), mode in zip((-1, 1), ((1, 2, 3), (4, 5, 6)), legs):
        (flexion, abduction, knee_flexion), power = _LEG_RANGES[mode], 2.0 if mode == "free" else 1.0
        place(0, hip, root)
        thigh = root @ _joint(-skewed(*flexion, power), side * skewed(*abduction, power), -side * uniform(-30, 40))
        place(hip, knee, thigh, down)
        place(knee, ankle, thigh @ _rotation(0, skewed(*knee_flexion, power)), down)
    lower = root @ _joint(skewed(-10, 40), uniform(-10, 10), uniform(-15, 15))
    place(0, 7, lower)
    upper = lower @ _joint(skewed(-10, 30), uniform(-10, 10), uniform(-20, 20))
    place(7, 8, upper)
    neck = upper @ _joint(uniform(-30, 40), uniform(-15, 15), uniform(-50, 50))
    place(8, 9, neck)
    place(9, 10, neck @ _rotation(0, uniform(-20, 20)))
    for side, (shoulder, elbow, wrist) in ((1, (11, 12, 13)), (-1, (14, 15, 16))):
        place(8, shoulder, upper @ _rotation(2, side * uniform(-5, 15)))
        arm = upper @ _joint(-skewed(-40, 170), side * skewed(5, 120), -side * uniform(-40, 80))
        place(shoulder, elbow, arm, down)
        place(elbow, wrist, arm @ _rotation(0, -deg(rng.uniform(0, 145))), down)
    pose[:, [0, 2]] += rng.uniform(-300.0, 300.0, 2)
    pose[:, 1] += 0.045 * height - pose[[3, 6], 1].min()
    return pose


# --------------------------------------------------------------------------- cameras


def sample_cameras(rng: np.random.Generator, pose3d: ArrayLike, num_cameras: int,
                   distance: tuple[float, float] = (3000.0, 6000.0), height: tuple[float, float] = (500.0, 2500.0),
                   max_tries: int = 1000) -> PerspectiveCameras:
    """C = ``num_cameras`` (2..8) cameras around ``pose3d`` (J, 3) world mm, y up.

    Azimuths evenly spaced from a random start, each jittered by up to a quarter of the spacing;
    horizontal distance from the torso (``distance``, mm) and camera height (``height``, mm) uniform;
    aimed at the torso (mean of pelvis, spine and thorax) plus an offset of up to 8% of the distance
    per axis, so the subject is off-centre; roll within +-5 deg. Intrinsics: image 1920x1080 or
    1000x1000, fx in 1000-1500 px, fy within 1% of fx, principal point within 2% of the centre;
    distortion k1 in [-0.3, 0.1], k2 in [-0.05, 0.1], |p1|, |p2| in [1e-4, 1e-3], |k3| <= 0.02.
    A camera is redrawn (same azimuth) until every joint is in front of it, inside the image by
    5 px and where the lens distortion is monotonic; RuntimeError after ``max_tries`` draws.
    """
    rng = _generator(rng, "rng")
    check_int(num_cameras, "num_cameras", 2, 8)
    check_int(max_tries, "max_tries", 1)
    _check_camera_ranges(distance, height)
    pose = as_float64(pose3d, "pose3d")
    if pose.ndim != 2 or pose.shape[1] != 3 or pose.shape[0] < 11 or not np.isfinite(pose).all():
        raise ValueError(f"pose3d: expected a finite H36M pose (J, 3) in mm, got shape {pose.shape}")
    torso = pose[[0, 7, 8]].mean(axis=0)
    return _place_cameras(rng, torso, pose, num_cameras, distance, height, max_tries, _AIM_OFFSET, "full",
                          "sample_cameras: no camera at azimuth {azimuth:.2f} sees the whole pose")


def _check_camera_ranges(distance, height) -> None:
    for name, bounds in (("distance", distance), ("height", height)):  # mm; 0 < low <= high for distance
        try:
            low, high = bounds
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected (low, high) in mm, got {bounds!r}") from None
        low = check_number(low, f"{name}[0]", low=0.0, low_open=name == "distance")
        check_number(high, f"{name}[1]", low=low)


def _place_cameras(rng, target: F64, points: F64, num_cameras: int, distance, height, max_tries: int,
                   aim_offset: float, distortion: str, failure: str, intrinsics: str = "drawn") -> PerspectiveCameras:
    """Cameras at evenly spaced, jittered azimuths around ``target``, each redrawn (same azimuth)
    until it sees all ``points`` (N, 3) (:func:`_sees_all`); ``distortion`` "full", "radial" or
    "none" zeroes the drawn coefficients accordingly before the check, and ``intrinsics`` "ideal"
    sets fy = fx and the principal point at the image centre ("drawn" keeps them). RuntimeError ``failure``
    (formatted with ``azimuth``) after ``max_tries`` draws."""
    start = rng.uniform(0.0, 2 * np.pi)
    cameras = []
    for c in range(num_cameras):
        azimuth = start + 2 * np.pi * (c + rng.uniform(-0.25, 0.25)) / num_cameras
        for _ in range(max_tries):
            camera = _draw_camera(rng, target, azimuth, distance, height, aim_offset)
            if distortion != "full":
                camera[3][2 if distortion == "radial" else 0:] = 0.0
            if intrinsics == "ideal":
                camera[2][1] = camera[2][0]
                camera[2][2:] = camera[4] / 2
            if _sees_all(points, *camera):
                cameras.append(camera)
                break
        else:
            raise RuntimeError(failure.format(azimuth=azimuth))
    return PerspectiveCameras(*(np.stack(part) for part in zip(*cameras)))


def _draw_camera(rng, torso: F64, azimuth: float, distance, height, aim_offset: float = _AIM_OFFSET
                 ) -> tuple[F64, ...]:
    radius = rng.uniform(*distance)
    centre = np.array([torso[0] + radius * np.sin(azimuth), rng.uniform(*height), torso[2] + radius * np.cos(azimuth)])
    forward = torso + rng.uniform(-aim_offset, aim_offset, 3) * radius - centre
    forward /= np.linalg.norm(forward)
    right = np.cross([0.0, -1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    rotation = _rotation(2, np.radians(rng.uniform(-5.0, 5.0))) @ np.stack([right, np.cross(forward, right), forward])
    width, image_height = _IMAGE_SIZES[rng.integers(len(_IMAGE_SIZES))]
    fx = rng.uniform(1000.0, 1500.0)
    intrinsics = np.array([
        fx, fx * rng.uniform(0.99, 1.01),
        width * (0.5 + rng.uniform(-0.02, 0.02)), image_height * (0.5 + rng.uniform(-0.02, 0.02)),
    ])
    tangential = rng.choice([-1.0, 1.0], 2) * rng.uniform(1e-4, 1e-3, 2)
    distortion = np.array([rng.uniform(-0.3, 0.1), rng.uniform(-0.05, 0.1), *tangential, rng.uniform(-0.02, 0.02)])
    return rotation, -rotation @ centre, intrinsics, distortion, np.array([width, image_height])


def _sees_all(pose: F64, rotation, translation, intrinsics, distortion, image_size) -> bool:
    in_camera = pose @ rotation.T + translation
    if (in_camera[:, 2] < 500.0).any():
        return False
    r2 = (in_camera[:, :2] ** 2).sum(axis=1) / in_camera[:, 2] ** 2
    k1, k2, _, _, k3 = distortion  # d(radius_distorted)/d(radius) of the radial part must stay well above 0
    if (1 + 3 * k1 * r2 + 5 * k2 * r2**2 + 7 * k3 * r2**3 < 0.5).any():
        return False
    pixels = project_perspective(pose, rotation, translation, intrinsics, distortion)
    return bool(((pixels >= _IMAGE_MARGIN_PX) & (pixels <= image_size - _IMAGE_MARGIN_PX)).all())


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True, eq=False)
class Scene:
    """One synthetic frame with its ground truth (C cameras, J joints, K components), float64.

    Attributes:
        pose3d: (J, 3) world, mm, y up, ground at y = 0.
        rotation, translation: (C, 3, 3), (C, 3) mm, world-to-camera ``X_cam = R @ X + t``.
        intrinsics: (C, 4) ``[fx, fy, cx, cy]`` px; distortion: (C, 5) ``[k1, k2, p1, p2, k3]``.
        image_size: (C, 2) ``[width, height]`` px.
        pose3d_cam: (C, J, 3) mm, the pose in each camera frame.
        pose2d: (C, J, 2) px, the exact distorted projections.
        boxes: (C, 4) ``[x, y, width, height]`` px, square, 15-25% larger than the 2D joints' extent.
        mixtures: (C, J, K, 4) box units. Without heatmaps, the detector's mixtures: component 0
            is its main guess near the joint (``pixel_noise`` px off; 2-3x wider and further off
            when occluded); for a confused joint, component 1 (component 0 when K = 1) sits on the
            mirrored joint. With heatmaps, the mixtures fitted to them (components by decreasing
            weight, no fixed roles).
        mono3d: (C, J, 3) box units: xy = the detector's main guess (component 0 of the detector's
            mixtures), depth = camera depth minus the mean joint depth at the weak scale, with
            per-view scale error, per-joint noise and limb flips.
        occluded, confused: (C, J) bool.
        heatmaps: (C, J, S, S) heatmaps covering each view's box (peak about 1), or None; see
            :func:`make_scene`.
    """

    pose3d: F64
    rotation: F64
    translation: F64
    intrinsics: F64
    distortion: F64
    image_size: F64
    pose3d_cam: F64
    pose2d: F64
    boxes: F64
    mixtures: F64
    mono3d: F64
    occluded: NDArray[np.bool_]
    confused: NDArray[np.bool_]
    skeleton: Skeleton = field(default=H36M_17)
    heatmaps: F64 | None = None

    @property
    def num_cameras(self) -> int:
        return int(self.rotation.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.pose3d.shape[0])

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(f"cam{c}" for c in range(self.num_cameras))

    def box_size(self) -> F64:
        """(C,) px: the side that maps to one box unit, ``max(box width, height)``."""
        return self.boxes[:, 2:].max(axis=1)

    def pose2d_box_units(self) -> F64:
        """(C, J, 2) ground-truth 2D in box units: ``(pose2d - box origin) / box size``."""
        return (self.pose2d - self.boxes[:, None, :2]) / self.box_size()[:, None, None]

    def views(self) -> Views:
        """The noisy evidence a real frame gives: mixtures, mono3d, boxes, names ``cam0``.. ``cam{C-1}``."""
        return Views(self.mixtures, self.mono3d, self.boxes, self.camera_names, self.skeleton)

    def weak_cameras(self) -> tuple[F64, F64, F64]:
        """The weak-perspective camera closest to each perspective one at the subject, in box units.

        Returns rotation (C, 3, 3) = ``R_c^T``, scale (C,) = ``f / mean joint depth / box size``
        with ``f = (fx + fy) / 2`` (box units per mm) and shift (C, 3) in box units, for the world
        pose in mm, *not centred*: ``scale * pose3d @ rotation + shift``. The shift makes the mean of
        the weak image equal the mean of the ground-truth 2D in box units (the least-squares shift
        for this rotation and scale) and the mean depth zero.
        """
        rotation = np.transpose(self.rotation, (0, 2, 1))
        scale = self.intrinsics[:, :2].mean(axis=1) / self.pose3d_cam[..., 2].mean(axis=1) / self.box_size()
        shift = -scale[:, None] * np.einsum("i,cij->cj", self.pose3d.mean(axis=0), rotation)
        shift[:, :2] += self.pose2d_box_units().mean(axis=1)
        return rotation, scale, shift

    def gt_mono3d(self) -> F64:
        """(C, J, 3) box units: perfect monocular guesses, ``scale * pose3d @ rotation + shift`` of
        :meth:`weak_cameras`; xy equal :meth:`weak_labels`, depth is the camera depth relative to the mean."""
        rotation, scale, shift = self.weak_cameras()
        return scale[:, None, None] * np.einsum("ji,cik->cjk", self.pose3d, rotation) + shift[:, None, :]

    def weak_labels(self) -> F64:
        """(C, J, 2) box units: the weak-perspective re-projection of the 3D ground truth."""
        return self.gt_mono3d()[..., :2]

    def ablated_views(self, gt_init: bool = False, gt_mixtures: bool = False, mixture_noise: float = 0.0,
                      weak_labels: bool = False, rng: SeedLike = None) -> Views:
        """The views under MetaPose's ablation switches (all off gives :meth:`views`).

        Labels are :meth:`weak_labels` with ``weak_labels`` and the ground-truth 2D otherwise.
        ``gt_mixtures``: the mixtures are :func:`gt_mixtures` of the labels, means jittered by
        ``mixture_noise`` box units (``rng`` needed then); otherwise the scene's noisy mixtures,
        each component moved with its joint from the perspective to the weak label when
        ``weak_labels``. ``gt_init``: mono3d is :meth:`gt_mono3d` instead of the noisy guesses.
        """
        check_number(mixture_noise, "mixture_noise", low=0.0)
        if mixture_noise > 0 and not gt_mixtures:
            raise ValueError("mixture_noise: only applies with gt_mixtures=True")
        labels = self.weak_labels() if weak_labels else self.pose2d_box_units()
        if gt_mixtures:
            mixtures = _gt_mixtures(labels, mixture_noise, rng)
        else:
            mixtures = self.mixtures.copy()
            if weak_labels:
                moved = labels - self.pose2d_box_units()  # (C, J, 2), applied to the joint each component is on
                joint = np.tile(np.arange(self.num_joints)[:, None], (self.num_cameras, 1, mixtures.shape[2]))
                mirror = np.array(H36M_MIRROR)
                if self.heatmaps is None:
                    slot = min(1, mixtures.shape[2] - 1)
                    joint[..., slot] = np.where(self.confused, mirror, joint[..., slot])
                else:  # fitted components have no roles: a confused joint's go with the nearer of it and its mirror
                    truth = self.pose2d_box_units()
                    own = ((mixtures[..., 1:3] - truth[:, :, None]) ** 2).sum(axis=-1)
                    other = ((mixtures[..., 1:3] - truth[:, mirror, None]) ** 2).sum(axis=-1)
                    joint = np.where(self.confused[..., None] & (other < own), mirror[:, None], joint)
                mixtures[..., 1:3] += moved[np.arange(self.num_cameras)[:, None, None], joint]
        mono3d = self.gt_mono3d() if gt_init else self.mono3d
        return Views(mixtures, mono3d, self.boxes, self.camera_names, self.skeleton)


_gt_mixtures = gt_mixtures  # reachable inside Scene.ablated_views, whose argument shadows the name


def make_scene(seed_or_rng: SeedLike = 0, num_cameras: int | None = None, num_components: int = 4,
               occlusion_rate: float = 0.1, confusion_rate: float = 0.05, pixel_noise: float = 3.0,
               depth_noise: float = 40.0, depth_scale_error: float = 0.15, flip_rate: float = 0.1,
               heatmaps: bool = False, heatmap_size: int = 64, cameras: PerspectiveCameras | None = None,
               pose3d: ArrayLike | None = None) -> Scene:
    """One synthetic frame: C = ``num_cameras`` (2..8, default 4) views, K = ``num_components`` (>= 1).

    ``cameras``: a fixed rig to see the pose with (C = its count; ``num_cameras``, when given, must equal it),
    e.g. :func:`sample_cameras` once for a sequence of frames, as AniPose calibrates a rig on many
    frames; every joint must be in front of every camera (ValueError otherwise). None draws a new
    rig around the pose. The pose is drawn first, so it is the same with or without a rig.

    ``pose3d``: a given world pose (17, 3) mm, y up, to see instead of a drawn one (nothing is drawn
    for it, so every later draw comes earlier in the generator's stream); None draws it with
    :func:`sample_pose`.

    ``seed_or_rng``: a seed (int or sequence) or a Generator (used, and advanced, in place).
    Per view and joint, ``occlusion_rate`` is the chance of an occluded joint (wider components,
    larger offset); per view and left/right pair, ``confusion_rate`` the chance that both joints
    get a component of weight 0.25-0.5 on their mirrored joint. ``pixel_noise`` (px, per axis) is
    the main component's error. The monocular guesses get per-joint depth noise ``depth_noise``
    (mm), a per-view depth scale ``1 +- U(0, depth_scale_error)`` and, per view and limb (the
    arms and legs), a depth flip of its two distal joints about its root with chance ``flip_rate``.

    ``heatmaps=True`` also renders what a 2D heatmap network would output and fits the mixtures to
    it, as for real data: per view and joint, a ``heatmap_size`` (>= 4) square heatmap covering the
    box, the density of the detector's mixture above (its components are the blobs: the main one
    near the joint, more spread out when occluded, a second blob on the mirrored joint when
    confused) blurred by ``HEATMAP_BLUR_PX`` heatmap pixels, scaled to peak 1, times
    ``1 + N(0, HEATMAP_GAIN_NOISE^2)`` plus ``N(0, HEATMAP_BACKGROUND_NOISE^2)`` per pixel. Then
    ``Scene.heatmaps`` holds them and ``Scene.mixtures`` are
    :func:`metapose_geom.heatmaps.fit_mixtures` of them (K components, 5 steps). These draws come
    last: every other field equals the scene made with ``heatmaps=False`` from the same seed.
    """
    rng = _generator(seed_or_rng, "seed_or_rng")
    if num_cameras is not None:
        check_int(num_cameras, "num_cameras", 2, 8)
    check_int(num_components, "num_components", 1)
    for name, rate in (("occlusion_rate", occlusion_rate), ("confusion_rate", confusion_rate),
                       ("flip_rate", flip_rate)):
        check_number(rate, name, low=0.0, high=1.0)
    check_number(pixel_noise, "pixel_noise", low=0.0)
    check_number(depth_noise, "depth_noise", low=0.0)
    check_number(depth_scale_error, "depth_scale_error", low=0.0, high=0.9)
    check_bool(heatmaps, "heatmaps")
    check_int(heatmap_size, "heatmap_size", 4)

    if pose3d is None:
        pose3d = sample_pose(rng)
    else:
        pose3d = as_float64(pose3d, "pose3d").copy()
        if pose3d.shape != (H36M_17.num_joints, 3) or not np.isfinite(pose3d).all():
            raise ValueError(f"pose3d: expected a finite H36M-17 pose ({H36M_17.num_joints}, 3) in mm, "
                             f"got shape {pose3d.shape}")
    if cameras is None:
        num_cameras = 4 if num_cameras is None else num_cameras
        cameras = sample_cameras(rng, pose3d, num_cameras)
    else:
        if not isinstance(cameras, PerspectiveCameras):
            raise ValueError(f"cameras: expected a PerspectiveCameras or None, got {type(cameras).__name__}")
        cameras = cameras.validated("cameras")
        if num_cameras is not None and num_cameras != cameras.num_cameras:
            raise ValueError(f"num_cameras: {num_cameras} given with a rig of {cameras.num_cameras} cameras")
        num_cameras = cameras.num_cameras
        check_int(num_cameras, "cameras (count)", 2, 8)
        depth = np.einsum("cab,jb->cja", cameras.rotation, pose3d)[..., 2] + cameras.translation[:, None, 2]
        if not (depth > 0).all():
            raise ValueError("cameras: a joint of the pose is behind a camera of the rig")
    count, joints = num_cameras, len(pose3d)
    pose3d_cam = np.einsum("cab,jb->cja", cameras.rotation, pose3d) + cameras.translation[:, None, :]
    pose2d = project_perspective(np.repeat(pose3d[None], count, axis=0), *cameras[:4])
    low, high = pose2d.min(axis=1), pose2d.max(axis=1)
    size = (high - low).max(axis=1) * rng.uniform(1.15, 1.25, count)
    centre = (low + high) / 2 + rng.uniform(-0.02, 0.02, (count, 2)) * size[:, None]
    boxes = np.column_stack([centre - size[:, None] / 2, size, size])

    occluded = rng.uniform(size=(count, joints)) < occlusion_rate
    confused, pairs = np.zeros((count, joints), dtype=bool), np.array(_PAIRS)
    confused[:, pairs[:, 0]] = confused[:, pairs[:, 1]] = rng.uniform(size=(count, len(pairs))) < confusion_rate
    truth = (pose2d - boxes[:, None, :2]) / size[:, None, None]
    mixtures = _noisy_mixtures(rng, truth, size, occluded, confused, num_components, pixel_noise)

    # monocular guesses: camera depth relative to the mean, with errors, at the weak scale
    depth = pose3d_cam[..., 2] - pose3d_cam[..., 2].mean(axis=1, keepdims=True)
    for c, limb in zip(*np.nonzero(rng.uniform(size=(count, len(_LIMBS))) < flip_rate)):
        root, distal = _LIMBS[limb]
        depth[c, list(distal)] = 2 * depth[c, root] - depth[c, list(distal)]
    depth_scale = 1 + rng.choice([-1.0, 1.0], count) * rng.uniform(0, depth_scale_error, count)
    depth = depth * depth_scale[:, None] + rng.normal(0.0, depth_noise, (count, joints))
    weak_scale = cameras.intrinsics[:, :2].mean(axis=1) / pose3d_cam[..., 2].mean(axis=1) / size
    mono3d = np.concatenate([mixtures[:, :, 0, 1:3], (depth * weak_scale[:, None])[..., None]], axis=-1)
    rendered = None
    if heatmaps:
        rendered, mixtures = _heatmaps_and_fits(rng, mixtures, heatmap_size)
    return Scene(
        pose3d, cameras.rotation, cameras.translation, cameras.intrinsics, cameras.distortion,
        cameras.image_size, pose3d_cam, pose2d, boxes, mixtures, mono3d, occluded, confused,
        heatmaps=rendered,
    )


def make_scenes(count: int, num_cameras: int | None = None, seed: int = 0, **kwargs) -> list[Scene]:
    """``count`` scenes; scene i is ``make_scene(np.random.default_rng([seed, i]), num_cameras, **kwargs)``,
    so any frame can be regenerated alone. ``kwargs`` are :func:`make_scene`'s."""
    check_int(count, "count", 0)
    check_int(seed, "seed", 0)
    return [make_scene(np.random.default_rng([seed, i]), num_cameras, **kwargs) for i in range(count)]


# --------------------------------------------------------------------------- fixed-rig sequences


#: The subject's walking speed range, mm per second.
WALK_SPEED_MM_S = (1000.0, 1500.0)
#: Height (mm) of the walking volume's centre, which every camera of a rig sequence aims at.
RIG_AIM_HEIGHT_MM = 900.0
_RIG_AIM_OFFSET = 0.02  # a rig camera aims at the volume's centre within this fraction of its distance per axis
_HEADING_JITTER_DEG = 15.0  # the subject faces the walking direction within this many degrees
_CONFIDENT_SIGMA_CROP_PX = 2.0  # a main component this narrow (heatmap-crop px) or narrower gives confidence 1
_DISTORTION_MODES = ("full", "radial", "none")


@dataclass(frozen=True, eq=False)
class RigSequence:
    """A subject walking through a fixed, distorted rig: C cameras x F frames of detections and
    their ground truth; float64 (the masks bool), arrays read-only. Made by :func:`make_rig_sequence`.

    Attributes:
        cameras: the rig (world mm, ``X_cam = R @ X + t``), the same for every frame.
        poses: (F, 17, 3) world mm, y up, ground at y = 0.
        path: (F, 3) world mm: the point on the ground under the pelvis at each frame (y = 0).
        keypoints: (C, F, 17, 2) px, the detector's main guess per joint, in the detector's
            labelling (left and right exchanged where ``swapped``); NaN where ``dropped``.
        confidences: (C, F, 17) in (0, 1], 0 where ``dropped`` (the rule: :func:`make_rig_sequence`).
        mono3d: (C, F, 17, 3) each frame's monocular guesses (:attr:`Scene.mono3d`, that view's
            box units, x right, y down, z away from the camera), labelled as ``keypoints``; NaN
            where ``dropped``.
        pose2d: (C, F, 17, 2) px, the exact distorted projections of ``poses`` (every view).
        occluded, confused: (C, F, 17) bool, the scenes' masks, per joint of the body (before any swap).
        swapped: (C, F) bool, views the detector labelled left for right throughout (never where dropped).
        dropped: (C, F) bool, views in which the camera saw nobody.
        camera_names: ``cam0`` .. ``cam{C-1}``.
        fps: frames per second.
    """

    cameras: PerspectiveCameras
    poses: F64
    path: F64
    keypoints: F64
    confidences: F64
    mono3d: F64
    pose2d: F64
    occluded: NDArray[np.bool_]
    confused: NDArray[np.bool_]
    swapped: NDArray[np.bool_]
    dropped: NDArray[np.bool_]
    camera_names: tuple[str, ...]
    fps: float

    @property
    def num_cameras(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[1])

    def capture(self, mono3d: bool = True) -> Capture:
        """The detections as a :class:`metapose_geom.io.Capture`: skeleton ``"h36m17"``, the camera
        names, the rig's image sizes, ``fps``; the monocular guesses unless ``mono3d=False``."""
        from .io.capture import Capture  # io imports the solver stack: only when asked for

        check_bool(mono3d, "mono3d")
        return Capture(self.keypoints, self.confidences, "h36m17", self.mono3d if mono3d else None,
                       self.camera_names, self.cameras.image_size, self.fps)


def make_rig_sequence(seed: SeedLike = 0, num_cameras: int = 4, frames: int = 200, *, distortion: str = "full",
                      walk_radius: float = 1500.0, pixel_noise: float = 3.0, occlusion_rate: float = 0.1,
                      confusion_rate: float = 0.05, swap_rate: float = 0.0, dropout_rate: float = 0.0,
                      num_components: int = 4, fps: float = 30.0, depth_noise: float = 40.0,
                      depth_scale_error: float = 0.15, flip_rate: float = 0.1,
                      distance: tuple[float, float] | None = None, height: tuple[float, float] = (500.0, 2500.0),
                      max_tries: int = 1000, intrinsics: str = "drawn") -> RigSequence:
    """A subject walking for ``frames`` frames through one fixed rig of C = ``num_cameras`` (2..8)
    distorted perspective cameras, and what a detector gives in every view and frame.

    World mm, y up, ground at y = 0; the walking volume is centred on the vertical axis.

    Path: a random closed curve around the centre, in polar form ``rho(phi) = rho0 (1 + sum_k a_k
    cos(k phi + psi_k))`` with k = 1, 2, 3 and a_k up to 0.15, 0.1, 0.05 (so its nearest point is at
    least 0.7 / 1.3 of its farthest), scaled so its farthest point is 80-100% of ``walk_radius``
    (mm) from the centre; walked in either direction from a random point at a constant speed drawn
    in :data:`WALK_SPEED_MM_S`, ``1 / fps`` seconds a frame (a long sequence goes round again).
    Each frame's pose is an independent :func:`sample_pose`, turned about the vertical so it faces
    the walking direction (its hips' normal) within +-15 degrees and moved so its pelvis is over
    the path point; its feet stay on the ground as drawn.

    Rig: drawn once after the walk, as :func:`sample_cameras` draws its cameras (evenly spaced
    jittered azimuths, image sizes, intrinsics, distortion), around the volume's centre at
    :data:`RIG_AIM_HEIGHT_MM`: horizontal distance from it uniform in ``distance`` (mm; default
    ``(walk_radius + 3000, walk_radius + 6000)``), height uniform in ``height`` (mm), aimed at the
    centre within 2% of the distance per axis. A camera is redrawn at the same azimuth until every
    joint of every frame is 0.5 m or more in front of it, inside its image by 5 px and where its
    distortion is monotonic; RuntimeError after ``max_tries`` draws. ``distortion``: ``"full"``
    (k1, k2, p1, p2, k3 as drawn), ``"radial"`` (k1, k2 as drawn, p1 = p2 = k3 = 0) or ``"none"``.
    ``intrinsics``: ``"drawn"`` (fy within 1% of fx, principal point within 2% of the image centre,
    as :func:`sample_cameras`) or ``"ideal"`` (square pixels and the principal point at the image
    centre: the camera model a calibration without a board fits, see :func:`metapose_geom.calibrate`).

    Evidence: frame f is :func:`make_scene` with ``cameras=`` the rig and ``pose3d=`` its pose (its
    ``pixel_noise``, ``occlusion_rate``, ``confusion_rate``, ``num_components``, ``depth_noise``,
    ``depth_scale_error`` and ``flip_rate``); the keypoints are its mixtures' component 0 (the
    detector's main guess) in pixels through the box, so with ``pixel_noise = occlusion_rate =
    confusion_rate = 0`` they are the exact projections to rounding. Confidence of a joint:
    ``min(1, 2 / sigma_0)`` with ``sigma_0`` the main component's standard deviation in heatmap-crop
    pixels (1 / 256 box; 2-4 when visible, so 0.5-1; 2-3 times wider when occluded, so 1/6-0.5),
    times, for a confused joint (K > 1), the weight left off its mirrored joint (0.5-0.75).

    Per view and frame, ``swap_rate`` is the chance that the detector labels the whole body left
    for right (keypoints, confidences and guesses of mirrored joints exchanged, ``H36M_MIRROR``)
    and ``dropout_rate`` the chance that the camera saw nobody (keypoints and guesses NaN,
    confidences 0; such a view is never marked swapped). Their draws are made whatever the rates,
    so changing a rate changes nothing else.

    ``seed``: a seed (int or sequence) or a Generator (used, and advanced, in place); one stream
    draws the walk, the poses, the rig, the swap and dropout masks, then each frame's scene.

    Example::

        sequence = make_rig_sequence(0, num_cameras=4, frames=200)
        capture = sequence.capture()              # metapose_geom.io.Capture
        truth = sequence.cameras, sequence.poses
    """
    rng = _generator(seed, "seed")
    check_int(num_cameras, "num_cameras", 2, 8)
    check_int(frames, "frames", 1)
    check_choice(distortion, "distortion", _DISTORTION_MODES)
    check_choice(intrinsics, "intrinsics", ("drawn", "ideal"))
    walk_radius = check_number(walk_radius, "walk_radius", low=0.0, low_open=True)
    check_number(pixel_noise, "pixel_noise", low=0.0)
    for name, rate in (("occlusion_rate", occlusion_rate), ("confusion_rate", confusion_rate),
                       ("swap_rate", swap_rate), ("dropout_rate", dropout_rate), ("flip_rate", flip_rate)):
        check_number(rate, name, low=0.0, high=1.0)
    check_int(num_components, "num_components", 1)
    fps = check_number(fps, "fps", low=0.0, low_open=True)
    check_number(depth_noise, "depth_noise", low=0.0)
    check_number(depth_scale_error, "depth_scale_error", low=0.0, high=0.9)
    check_int(max_tries, "max_tries", 1)
    if distance is None:
        distance = (walk_radius + 3000.0, walk_radius + 6000.0)
    _check_camera_ranges(distance, height)

    path, heading = _walk(rng, frames, fps, walk_radius)
    poses = np.stack([_walking_pose(rng, point, direction) for point, direction in zip(path, heading)])
    centre = np.array([0.0, RIG_AIM_HEIGHT_MM, 0.0])
    rig = _place_cameras(rng, centre, poses.reshape(-1, 3), num_cameras, distance, height, max_tries,
                         _RIG_AIM_OFFSET, distortion, intrinsics=intrinsics, failure=
                         "make_rig_sequence: no camera at azimuth {azimuth:.2f} sees every frame's pose "
                         "(a larger distance or max_tries may do)")
    swapped = rng.uniform(size=(num_cameras, frames)) < swap_rate
    dropped = rng.uniform(size=(num_cameras, frames)) < dropout_rate
    swapped &= ~dropped

    joints = H36M_17.num_joints
    keypoints = np.empty((num_cameras, frames, joints, 2))
    confidences = np.empty((num_cameras, frames, joints))
    mono3d = np.empty((num_cameras, frames, joints, 3))
    pose2d = np.empty((num_cameras, frames, joints, 2))
    occluded = np.empty((num_cameras, frames, joints), dtype=bool)
    confused = np.empty((num_cameras, frames, joints), dtype=bool)
    slot = min(1, num_components - 1)  # the component a confused joint puts on its mirrored joint
    for f, pose in enumerate(poses):
        scene = make_scene(rng, num_components=num_components, occlusion_rate=occlusion_rate,
                           confusion_rate=confusion_rate, pixel_noise=pixel_noise, depth_noise=depth_noise,
                           depth_scale_error=depth_scale_error, flip_rate=flip_rate, cameras=rig, pose3d=pose)
        main = scene.mixtures[:, :, 0]
        keypoints[:, f] = box_to_pixels(main[..., 1:3], scene.boxes)
        sharpness = np.minimum(1.0, _CONFIDENT_SIGMA_CROP_PX / (np.sqrt(main[..., 3]) * HEATMAP_CROP_PX))
        kept = 1.0 - scene.mixtures[:, :, slot, 0] if num_components > 1 else np.ones_like(sharpness)
        confidences[:, f] = sharpness * np.where(scene.confused, kept, 1.0)
        mono3d[:, f] = scene.mono3d
        pose2d[:, f] = scene.pose2d
        occluded[:, f], confused[:, f] = scene.occluded, scene.confused

    mirror = list(H36M_MIRROR)
    for array in (keypoints, confidences, mono3d):
        array[swapped] = array[swapped][:, mirror]
    keypoints[dropped] = np.nan
    mono3d[dropped] = np.nan
    confidences[dropped] = 0.0
    ground = np.column_stack([path[:, 0], np.zeros(frames), path[:, 1]])
    arrays = [poses, ground, keypoints, confidences, mono3d, pose2d, occluded, confused, swapped, dropped]
    for array in (*arrays, *rig):
        array.setflags(write=False)
    return RigSequence(rig, *arrays, tuple(f"cam{c}" for c in range(num_cameras)), fps)


def _walk(rng, frames: int, fps: float, walk_radius: float) -> tuple[F64, F64]:
    """The path of :func:`make_rig_sequence`: ground points (F, 2) ``[x, z]`` mm and the unit
    walking directions (F, 2) there."""
    amplitude = rng.uniform(0.0, 1.0, 3) * np.array([0.15, 0.1, 0.05])
    phase = rng.uniform(0.0, 2 * np.pi, 3)
    order = np.arange(1, 4)

    def radius(angle: F64) -> tuple[F64, F64]:  # rho / rho0 and its derivative in angle
        waves = order * angle[..., None] + phase
        return 1 + (amplitude * np.cos(waves)).sum(-1), -(order * amplitude * np.sin(waves)).sum(-1)

    grid = np.linspace(0.0, 2 * np.pi, 4097)
    rho0 = walk_radius * rng.uniform(0.8, 1.0) / radius(grid)[0].max()
    outline = rho0 * radius(grid)[0][:, None] * np.column_stack([np.cos(grid), np.sin(grid)])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(outline, axis=0), axis=1))])
    speed = rng.uniform(*WALK_SPEED_MM_S)
    sense = rng.choice([-1.0, 1.0])
    walked = (rng.uniform(0.0, arc[-1]) + sense * speed * np.arange(frames) / fps) % arc[-1]
    angle = np.interp(walked, arc, grid)
    rho, slope = (rho0 * part for part in radius(angle))
    cos, sin = np.cos(angle), np.sin(angle)
    points = rho[:, None] * np.column_stack([cos, sin])
    tangent = sense * np.column_stack([slope * cos - rho * sin, slope * sin + rho * cos])
    return points, tangent / np.linalg.norm(tangent, axis=1, keepdims=True)


def _walking_pose(rng, point: F64, direction: F64) -> F64:
    """A :func:`sample_pose` turned about the vertical to face ``direction`` (2,) ``[x, z]`` within
    +-15 degrees, its pelvis moved over ``point`` (2,) ``[x, z]`` mm; heights unchanged."""
    pose = sample_pose(rng)
    facing = np.cross(pose[4] - pose[1], [0.0, 1.0, 0.0])  # left hip minus right hip, crossed with up
    wanted = np.arctan2(*direction) + np.radians(rng.uniform(-_HEADING_JITTER_DEG, _HEADING_JITTER_DEG))
    turned = (pose - pose[0] * [1.0, 0.0, 1.0]) @ _rotation(1, wanted - np.arctan2(facing[0], facing[2])).T
    turned[:, [0, 2]] += point
    return turned


def _noisy_mixtures(rng, truth: F64, size: F64, occluded, confused, components: int, pixel_noise: float) -> F64:
    """truth (C, J, 2) box units, box size (C,) px -> (C, J, K, 4) heatmap-like mixtures in box units."""
    count, joints = truth.shape[:2]
    crop = 1.0 / HEATMAP_CROP_PX  # one heatmap-crop pixel, in box units
    wide = np.where(occluded, rng.uniform(2.0, 3.0, occluded.shape), 1.0)  # (C, J)
    offset = np.hypot(pixel_noise / size[:, None] * wide, np.where(occluded, 6 * crop, 0.0))
    main = truth + offset[..., None] * rng.normal(size=truth.shape)
    out = np.empty((count, joints, components, 4))
    out[..., 1:3] = main[:, :, None] + 4 * crop * wide[..., None, None] * rng.normal(size=out[..., 1:3].shape)
    out[:, :, 0, 1:3] = main
    sigma = rng.uniform(2.0, 8.0, (count, joints, components))
    sigma[..., 0] = rng.uniform(2.0, 4.0, (count, joints))
    out[..., 3] = (sigma * crop * wide[..., None]) ** 2
    first = np.where(occluded, rng.uniform(0.3, 0.6, occluded.shape), rng.uniform(0.5, 0.85, occluded.shape))
    rest = rng.dirichlet(np.ones(max(components - 1, 1)), (count, joints))[..., : components - 1]
    out[..., 0] = np.concatenate([first[..., None], (1 - first)[..., None] * rest], axis=-1) if components > 1 else 1.0
    slot = min(1, components - 1)  # the component that goes to the mirrored joint
    for c, j in zip(*np.nonzero(confused)):
        if components > 1:
            weight, others = rng.uniform(0.25, 0.5), np.arange(components) != slot
            out[c, j, others, 0] *= (1 - weight) / out[c, j, others, 0].sum()
            out[c, j, slot, 0] = weight
        out[c, j, slot, 1:3] = truth[c, H36M_MIRROR[j]] + pixel_noise / size[c] * rng.normal(size=2)
    return out


def _heatmaps_and_fits(rng, mixtures: F64, size: int) -> tuple[F64, F64]:
    """Detector mixtures (C, J, K, 4) box units -> noisy heatmaps (C, J, size, size) over the box and
    the mixtures (C, J, K, 4) fitted to them."""
    from .heatmaps import fit_mixtures, render_mixtures  # numba: only loaded when heatmaps are asked for

    blurred = mixtures.copy()
    blurred[..., 3] += (HEATMAP_BLUR_PX / size) ** 2  # a Gaussian blur adds its variance to every component
    rendered = render_mixtures(blurred, size)
    rendered /= np.maximum(rendered.max(axis=(-2, -1), keepdims=True), np.finfo(float).tiny)
    rendered *= 1.0 + HEATMAP_GAIN_NOISE * rng.normal(size=rendered.shape)
    rendered += HEATMAP_BACKGROUND_NOISE * rng.normal(size=rendered.shape)
    return rendered, fit_mixtures(rendered, mixtures.shape[2])


# --------------------------------------------------------------------------- validation


def _generator(seed: SeedLike, name: str) -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected a seed (int >= 0 or a sequence of them) or a Generator ({error})") from None

