"""One frame's evidence from several uncalibrated views, validated.

A :class:`Views` holds, for C cameras and J joints, the per-joint 2D evidence as spherical
Gaussian mixtures in *box units* (``(pixel - box origin) / max(box width, box height)``,
variances divided by the size squared), optional monocular 3D guesses in the same box units, the
boxes that lead back to pixels, camera names and the skeleton.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64, check_choice, check_int
from .mixtures import KEYPOINT_SIGMA, UNINFORMATIVE_VARIANCE, check_mixtures, keypoints_to_mixtures
from .skeletons import H36M_17, Skeleton

F64 = NDArray[np.float64]

__all__ = ["KEYPOINT_SIGMA", "UNINFORMATIVE_VARIANCE", "Views", "box_to_pixels", "check_box_values", "check_evidence",
           "pixels_to_box"]


def check_box_values(boxes: F64, name: str = "boxes") -> F64:
    """The rule for boxes (..., 4) ``[x, y, width, height]`` in pixels, shape already checked: finite,
    width and height > 0. Returns ``boxes``; raises ValueError naming ``name``."""
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name}: contains NaN or inf")
    if (boxes[..., 2:] <= 0).any():
        raise ValueError(f"{name}: width and height must be > 0")
    return boxes


def _check_boxes(boxes: ArrayLike, cameras: int, frames: int | None = None) -> F64:
    """boxes (C, 4), or (B, C, 4) with ``frames`` = B."""
    array = as_float64(boxes, "boxes")
    lead = () if frames is None else (frames,)
    if array.shape != lead + (cameras, 4):
        raise ValueError(f"boxes: expected shape ({_dims(lead)}C={cameras}, 4) [x, y, width, height] in pixels, "
                         f"got {array.shape}")
    return check_box_values(array)


def _dims(lead: tuple[int, ...]) -> str:
    """The leading frame axis of a message's shape: ``"B=5, "`` or nothing."""
    return f"B={lead[0]}, " if lead else ""


def check_evidence(mixtures: ArrayLike, mono3d: ArrayLike | None, boxes: ArrayLike | None, skeleton: Skeleton,
                   stacked: bool = False) -> tuple[F64, F64 | None, F64 | None]:
    """The rules of :class:`Views`, for one frame or (``stacked``) B frames on a leading axis.

    mixtures (C, J, K, 4) or (B, C, J, K, 4) box units (C >= 2, J the skeleton's joint count,
    :func:`~metapose_geom.mixtures.check_mixtures`), mono3d (C, J, 3) / (B, C, J, 3) finite or
    None, boxes (C, 4) / (B, C, 4) px (:func:`check_box_values`) or None -> the three as float64
    arrays (no copy where none was needed); ValueError naming the argument otherwise."""
    array = as_float64(mixtures, "mixtures")
    lead_text = "B, " if stacked else ""
    if array.ndim != 4 + stacked or array.shape[-1] != 4 or 0 in array.shape:
        raise ValueError(f"mixtures: expected shape ({lead_text}C, J, K, 4) with {lead_text}C, J, K >= 1, "
                         f"got {array.shape}")
    lead = array.shape[:1] if stacked else ()
    cameras, joints = array.shape[-4:-2]
    if cameras < 2:
        raise ValueError(f"mixtures: at least two cameras are needed, got C = {cameras}")
    if joints != skeleton.num_joints:
        raise ValueError(f"mixtures: J = {joints} joints, but skeleton {skeleton.name!r} has {skeleton.num_joints}")
    array = check_mixtures(array, joint_names=tuple(skeleton.joints))
    guesses = None
    if mono3d is not None:
        guesses = as_float64(mono3d, "mono3d")
        if guesses.shape != lead + (cameras, joints, 3):
            raise ValueError(f"mono3d: expected shape ({_dims(lead)}C={cameras}, J={joints}, 3), got {guesses.shape}")
        if not np.isfinite(guesses).all():
            raise ValueError("mono3d: contains NaN or inf")
    box = None if boxes is None else _check_boxes(boxes, cameras, lead[0] if lead else None)
    return array, guesses, box


def pixels_to_box(pixels: ArrayLike, boxes: ArrayLike) -> F64:
    """pixels (C, ..., 2), boxes (C, 4) ``[x, y, width, height]`` -> box units (C, ..., 2)."""
    points = as_float64(pixels, "pixels")
    box = _check_boxes(boxes, points.shape[0] if points.ndim else -1)
    shape = (box.shape[0],) + (1,) * (points.ndim - 2) + (2,)
    return (points - box[:, :2].reshape(shape)) / box[:, 2:].max(axis=1).reshape(shape[:-1] + (1,))


def box_to_pixels(points: ArrayLike, boxes: ArrayLike) -> F64:
    """box units (C, ..., 2), boxes (C, 4) -> pixels (C, ..., 2); the inverse of :func:`pixels_to_box`."""
    array = as_float64(points, "points")
    box = _check_boxes(boxes, array.shape[0] if array.ndim else -1)
    shape = (box.shape[0],) + (1,) * (array.ndim - 2) + (2,)
    return array * box[:, 2:].max(axis=1).reshape(shape[:-1] + (1,)) + box[:, :2].reshape(shape)


def _frozen(array: F64) -> F64:
    """A read-only copy: a Views never shares memory with its caller, and nobody writes into it."""
    copy = np.array(array, dtype=np.float64, order="C", copy=True)
    copy.setflags(write=False)
    return copy


@dataclass(frozen=True)
class Views:
    """Validated evidence for one frame, held as read-only copies of what was given.

    Attributes:
        mixtures: (C, J, K, 4) ``[weight, mu_x, mu_y, variance]`` in box units.
        mono3d: (C, J, 3) monocular 3D guess per view in box units (xy on the 2D evidence), or None.
        boxes: (C, 4) ``[x, y, width, height]`` in pixels, or None (then pixels are box units).
        camera_names: C names.
        skeleton: the joint layout; J equals ``skeleton.num_joints``.
    """

    mixtures: F64
    mono3d: F64 | None = None
    boxes: F64 | None = None
    camera_names: tuple[str, ...] = ()
    skeleton: Skeleton = field(default=H36M_17)

    def __post_init__(self) -> None:
        mixtures, mono3d, boxes = check_evidence(self.mixtures, self.mono3d, self.boxes, self.skeleton)
        object.__setattr__(self, "mixtures", _frozen(mixtures))
        if mono3d is not None:
            object.__setattr__(self, "mono3d", _frozen(mono3d))
        if boxes is not None:
            object.__setattr__(self, "boxes", _frozen(boxes))
        cameras = mixtures.shape[0]
        names = tuple(self.camera_names) or tuple(f"cam{c}" for c in range(cameras))
        if len(names) != cameras or len(set(names)) != cameras:
            raise ValueError(f"camera_names: expected {cameras} distinct names, got {names}")
        object.__setattr__(self, "camera_names", names)

    # ------------------------------------------------------------------ sizes

    @property
    def num_cameras(self) -> int:
        return int(self.mixtures.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.mixtures.shape[1])

    @property
    def num_components(self) -> int:
        return int(self.mixtures.shape[2])

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_mixtures(
        cls,
        mixtures: ArrayLike,
        mono3d: ArrayLike | None = None,
        boxes: ArrayLike | None = None,
        camera_names: Sequence[str] = (),
        skeleton: Skeleton = H36M_17,
        units: str = "box",
    ) -> Views:
        """mixtures (C, J, K, 4) in box units, or in pixels with ``units="pixels"`` (boxes needed)."""
        array = as_float64(mixtures, "mixtures")
        if check_choice(units, "units", ("box", "pixels")) == "pixels":
            if boxes is None:
                raise ValueError("boxes: needed to convert mixtures given in pixels to box units")
            if array.ndim != 4 or array.shape[-1] != 4:
                raise ValueError(f"mixtures: expected shape (C, J, K, 4), got {array.shape}")
            box = _check_boxes(boxes, array.shape[0])
            size = box[:, 2:].max(axis=1)[:, None, None]
            array = array.copy()
            array[..., 1:3] = pixels_to_box(array[..., 1:3], box)
            array[..., 3] /= size**2
        return cls(array, mono3d, boxes, tuple(camera_names), skeleton)

    @classmethod
    def from_keypoints(
        cls,
        keypoints: ArrayLike,
        confidences: ArrayLike,
        boxes: ArrayLike | None = None,
        mono3d: ArrayLike | None = None,
        camera_names: Sequence[str] = (),
        skeleton: Skeleton = H36M_17,
    ) -> Views:
        """keypoints (C, J, 2) in pixels (box units when ``boxes`` is None), confidences (C, J) in [0, 1].

        Each keypoint becomes one component at the keypoint with standard deviation
        ``KEYPOINT_SIGMA / confidence`` box units (capped at one box). A joint with confidence 0
        or a NaN keypoint is missing: its component sits at the box centre with variance
        ``UNINFORMATIVE_VARIANCE``, so it barely pulls the solution.
        """
        points = as_float64(keypoints, "keypoints")
        if points.ndim != 3 or points.shape[-1] != 2 or 0 in points.shape:
            raise ValueError(f"keypoints: expected shape (C, J, 2), got {points.shape}")
        conf = as_float64(confidences, "confidences")
        if conf.shape != points.shape[:2]:
            raise ValueError(f"confidences: expected shape {points.shape[:2]} (C, J), got {conf.shape}")
        if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
            raise ValueError("confidences: expected finite values in [0, 1]")
        if np.isinf(points).any():
            raise ValueError("keypoints: contains inf (use NaN for a missing joint)")
        if boxes is not None:
            points = pixels_to_box(points, boxes)  # NaN (missing) stays NaN
        mixtures = keypoints_to_mixtures(points, conf)
        return cls(mixtures, mono3d, boxes, tuple(camera_names), skeleton)

    @classmethod
    def from_heatmaps(
        cls,
        heatmaps: ArrayLike,
        boxes: ArrayLike | None,
        mono3d: ArrayLike | None = None,
        camera_names: Sequence[str] = (),
        skeleton: Skeleton = H36M_17,
        num_components: int = 4,
        steps: int = 5,
        limits: ArrayLike = (0.0, 0.0, 1.0, 1.0),
        on_invalid: str = "raise",
        negative: str = "clip",
    ) -> Views:
        """heatmaps (C, J, H, W), boxes (C, 4) ``[x, y, width, height]`` px or None, mono3d (C, J, 3) or None.

        Each heatmap covers its view's box (``limits`` ``(x_min, y_min, x_max, y_max)``, box units:
        (4,) for all, default the whole square box, (C, 1, 4) per view or (C, J, 4) per heatmap)
        and becomes a K-component mixture in box
        units by :func:`metapose_geom.heatmaps.fit_mixtures` (weighted EM, ``steps`` steps;
        ``on_invalid`` and ``negative`` as there: ``on_invalid="uninformative"`` turns a blank or
        broken heatmap into a missing joint). ``boxes`` only lead back to pixels; without them
        pixels are box units.
        """
        from .heatmaps import fit_mixtures  # numba is imported on first use only

        array = as_float64(heatmaps, "heatmaps")
        if array.ndim != 4 or 0 in array.shape:
            raise ValueError(f"heatmaps: expected shape (C, J, H, W) with all sizes >= 1, got {array.shape}")
        mixtures = fit_mixtures(array, num_components, steps, limits, on_invalid, negative)
        return cls(mixtures, mono3d, boxes, tuple(camera_names), skeleton)

    # ------------------------------------------------------------------ selections and units

    def subset(self, cameras: Sequence[int | str]) -> Views:
        """The views of the given cameras (indices or names), in that order; the first is the reference."""
        index = []
        for camera in cameras:
            if isinstance(camera, str):
                if camera not in self.camera_names:
                    raise ValueError(f"cameras: no camera named {camera!r}; have {self.camera_names}")
                index.append(self.camera_names.index(camera))
            else:
                count = self.num_cameras
                try:
                    index.append(check_int(camera, "cameras", -count, count - 1) % count)
                except ValueError:
                    raise ValueError(f"cameras: {camera!r} is not a camera index in [0, {count}) or a name") from None
        if len(set(index)) != len(index):
            raise ValueError(f"cameras: repeated camera in {list(cameras)}")
        return Views(
            self.mixtures[index],
            None if self.mono3d is None else self.mono3d[index],
            None if self.boxes is None else self.boxes[index],
            tuple(self.camera_names[i] for i in index),
            self.skeleton,
        )

    def to_pixels(self, points: ArrayLike) -> F64:
        """(C, ..., 2) box units -> pixels through this frame's boxes (unchanged without boxes)."""
        array = as_float64(points, "points")
        return array.copy() if self.boxes is None else box_to_pixels(array, self.boxes)
