"""A capture: C cameras x F frames of one person's detections, and its per-frame solution.

:class:`Capture` holds what a detector gives for every camera and frame, in the detector's own
landmark set (BlazePose-33, COCO-17, BODY_25, Halpe-26 or H36M-17): keypoints in pixels,
confidences, and optionally monocular 3D guesses. It maps them to H36M-17 through
:func:`metapose_geom.skeletons.skeleton_map`, yields one :class:`~metapose_geom.Views` per frame,
and solves every frame (:meth:`Capture.solve`) into a :class:`CaptureSolution`.

A camera that saw nobody in a frame (fewer than :data:`MIN_JOINTS_SEEN` H36M joints, or all of them
within :data:`MIN_EXTENT_PX` pixels) is left out of that frame; a frame seen by fewer than two
cameras is skipped and counted, never an error.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._checks import as_float64, check_int, check_number
from ..skeletons import H36M_17, Landmarks, Skeleton, SkeletonMap, skeleton_map
from ..views import MIN_PIXEL_SPREAD, Views, camera_indices, mirror_image_guesses

F64 = NDArray[np.float64]

__all__ = ["MIN_EXTENT_PX", "MIN_JOINTS_SEEN", "Capture", "CaptureSolution"]

#: A view counts as seeing the person when at least this many H36M-17 joints are valid there.
MIN_JOINTS_SEEN = 4
#: ... and those joints span at least this many pixels (a box can be put around them).
MIN_EXTENT_PX = 4.0


def _frozen(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, order="C", copy=True)
    copy.setflags(write=False)
    return copy


def _landmarks(skeleton: str | Landmarks) -> Landmarks:
    """A landmark set by name (or alias) or as itself; ValueError listing the known names otherwise."""
    if not isinstance(skeleton, (str, Landmarks)):
        raise ValueError(f"skeleton: expected a landmark set's name or a Landmarks, got {type(skeleton).__name__}")
    try:
        return skeleton_map(skeleton).source
    except ValueError as error:
        raise ValueError(f"skeleton: {str(error).removeprefix('source: ')}") from None


@dataclass(frozen=True, eq=False)
class Capture:
    """C cameras x F frames of one person's 2D detections (and optional monocular 3D), validated.

    Arrays are read-only copies of what was given.

    Attributes:
        keypoints: (C, F, N, 2) pixels, in the landmark set's order; NaN marks a missing landmark.
        confidences: (C, F, N) in [0, 1]; 0 marks a missing landmark (a camera that saw nobody in
            a frame has confidence 0 throughout).
        skeleton: the detector's landmark set (N landmarks), given as a name such as ``"body25"``,
            ``"coco17"``, ``"halpe26"``, ``"blazepose33"`` or ``"h36m17"`` (aliases as
            :func:`~metapose_geom.skeletons.skeleton_map`), or a :class:`~metapose_geom.skeletons.Landmarks`.
        mono3d: (C, F, N, 3) monocular 3D guesses in each camera's axes (x right, y down, z away
            from the camera), any unit and origin (a lifter's metres, hip-centred); NaN where
            missing; or None.
        camera_names: C distinct names (default ``cam0`` ...).
        image_size: (C, 2) ``[width, height]`` pixels, or None when unknown.
        fps: frames per second, or None when unknown.
        frame_numbers: (F,) increasing integers naming the frames (default 0 .. F-1).
    """

    keypoints: F64
    confidences: F64
    skeleton: Landmarks | str
    mono3d: F64 | None = None
    camera_names: tuple[str, ...] = ()
    image_size: F64 | None = None
    fps: float | None = None
    frame_numbers: NDArray[np.int64] | None = field(default=None)

    def __post_init__(self) -> None:
        landmarks = _landmarks(self.skeleton)
        object.__setattr__(self, "skeleton", landmarks)
        points = as_float64(self.keypoints, "keypoints")
        if points.ndim != 4 or points.shape[-1] != 2 or 0 in points.shape:
            raise ValueError(f"keypoints: expected shape (C, F, N, 2) pixels with C, F, N >= 1, got {points.shape}")
        cameras, frames, count = points.shape[:3]
        if count != landmarks.num_landmarks:
            raise ValueError(f"keypoints: N = {count} landmarks, but skeleton {landmarks.name!r} has "
                             f"{landmarks.num_landmarks}")
        if cameras < 2:
            raise ValueError(f"keypoints: at least two cameras are needed, got C = {cameras}")
        if np.isinf(points).any():
            raise ValueError("keypoints: contains inf (use NaN for a missing landmark)")
        conf = as_float64(self.confidences, "confidences")
        if conf.shape != points.shape[:3]:
            raise ValueError(f"confidences: expected shape {points.shape[:3]} (C, F, N), got {conf.shape}")
        if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
            raise ValueError("confidences: expected finite values in [0, 1]")
        valid = (conf > 0) & ~np.isnan(points).any(axis=-1)  # (C, F, N)
        for camera in range(cameras):
            seen = points[camera][valid[camera]]
            if len(seen) and float((seen.max(axis=0) - seen.min(axis=0)).max()) < MIN_PIXEL_SPREAD:
                raise ValueError(
                    f"keypoints: camera {camera}'s keypoints spread over at most "
                    f"{float((seen.max(axis=0) - seen.min(axis=0)).max()):.3g} units in all {frames} frames, "
                    "which cannot be pixels (box units or normalised coordinates?); give pixels"
                )
        object.__setattr__(self, "keypoints", _frozen(points))
        object.__setattr__(self, "confidences", _frozen(conf))
        if self.mono3d is not None:
            guesses = as_float64(self.mono3d, "mono3d")
            if guesses.shape != points.shape[:3] + (3,):
                raise ValueError(f"mono3d: expected shape {points.shape[:3] + (3,)} (C, F, N, 3), got {guesses.shape}")
            if np.isinf(guesses).any():
                raise ValueError("mono3d: contains inf (use NaN for a missing landmark)")
            object.__setattr__(self, "mono3d", _frozen(guesses))
        names = tuple(self.camera_names) or tuple(f"cam{c}" for c in range(cameras))
        if len(names) != cameras or len(set(names)) != cameras or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"camera_names: expected {cameras} distinct non-empty strings, got {names}")
        object.__setattr__(self, "camera_names", names)
        if self.image_size is not None:
            size = as_float64(self.image_size, "image_size")
            if size.shape != (cameras, 2) or not np.isfinite(size).all() or (size <= 0).any():
                raise ValueError(f"image_size: expected ({cameras}, 2) [width, height] pixels > 0, got "
                                 f"{size.shape if size.shape != (cameras, 2) else size.tolist()}")
            object.__setattr__(self, "image_size", _frozen(size))
        if self.fps is not None:
            object.__setattr__(self, "fps", check_number(self.fps, "fps", 0.0, low_open=True))
        if self.frame_numbers is None:
            numbers = np.arange(frames, dtype=np.int64)
        else:
            numbers = np.asarray(self.frame_numbers)
            if numbers.shape != (frames,) or numbers.dtype.kind not in "iu" or (np.diff(numbers) <= 0).any():
                raise ValueError(f"frame_numbers: expected ({frames},) increasing integers, got shape {numbers.shape}, "
                                 f"dtype {numbers.dtype}")
        object.__setattr__(self, "frame_numbers", _frozen(numbers.astype(np.int64)))

    # ------------------------------------------------------------------ sizes

    @property
    def num_cameras(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[1])

    @property
    def num_landmarks(self) -> int:
        return int(self.keypoints.shape[2])

    def __len__(self) -> int:
        return self.num_frames

    # ------------------------------------------------------------------ H36M-17 joints

    @property
    def skeleton_map(self) -> SkeletonMap:
        """The map from this capture's landmark set to H36M-17."""
        return skeleton_map(self.skeleton)

    @functools.cached_property
    def joints(self) -> tuple[F64, F64]:
        """The detections in H36M-17: keypoints (C, F, 17, 2) pixels (NaN: missing) and confidences (C, F, 17)."""
        points, conf = self.skeleton_map.apply(self.keypoints, self.confidences)
        points.setflags(write=False)
        conf.setflags(write=False)
        return points, conf

    @functools.cached_property
    def mono3d_joints(self) -> F64 | None:
        """The monocular guesses in H36M-17 (C, F, 17, 3), same units as ``mono3d``, NaN where a
        landmark is missing; None without guesses."""
        if self.mono3d is None:
            return None
        valid = np.where(np.isnan(self.mono3d).any(axis=-1), 0.0, 1.0)
        guesses, _ = self.skeleton_map.apply(self.mono3d, valid)
        guesses.setflags(write=False)
        return guesses

    @functools.cached_property
    def detected(self) -> NDArray[np.bool_]:
        """(C, F) bool: which cameras saw the person in each frame (at least :data:`MIN_JOINTS_SEEN`
        valid H36M-17 joints spanning at least :data:`MIN_EXTENT_PX` pixels)."""
        points, conf = self.joints
        valid = (conf > 0) & ~np.isnan(points).any(axis=-1)
        low = np.where(valid[..., None], points, np.inf).min(axis=-2)
        high = np.where(valid[..., None], points, -np.inf).max(axis=-2)
        extent = np.where(valid.any(axis=-1), (high - low).max(axis=-1), 0.0)
        seen = (valid.sum(axis=-1) >= MIN_JOINTS_SEEN) & (extent >= MIN_EXTENT_PX)
        seen.setflags(write=False)
        return seen

    # ------------------------------------------------------------------ one frame

    def views(self, frame: int, cameras: Sequence[int | str] | None = None, **options: Any) -> Views:
        """Frame ``frame`` (an index in [0, F)) as :class:`~metapose_geom.Views` in H36M-17.

        Args:
            frame: the frame's index (not its number; ``frame_numbers[frame]`` is that).
            cameras: indices or names, in the order wanted (the first is the solution's
                reference); None: the cameras that saw the person in this frame (``detected``),
                in capture order.
            options: passed on to :meth:`Views.from_keypoints` (``box_margin``, ``mirror_weight``, ...).

        Keypoints stay in pixels (boxes are inferred per view). Monocular guesses, when the
        capture has them, are aligned per view onto the keypoints; a guess joint that is NaN
        takes the mean of that view's other guess joints; when a view's guess has fewer than
        two joints, the frame is given without guesses.

        ValueError when fewer than two cameras are chosen (or saw the person).
        """
        index = check_int(frame, "frame", -self.num_frames, self.num_frames - 1) % self.num_frames
        chosen = (list(np.flatnonzero(self.detected[:, index])) if cameras is None
                  else camera_indices(cameras, self.camera_names))
        if len(chosen) < 2:
            seen = [self.camera_names[c] for c in chosen]
            raise ValueError(f"frame {index}: {len(chosen)} camera(s) {'saw the person' if cameras is None else 'chosen'}"
                             f" ({', '.join(seen) or 'none'}); at least two are needed")
        points, conf = self.joints
        return Views.from_keypoints(
            points[chosen, index], conf[chosen, index], mono3d=self._frame_mono3d(index, chosen),
            camera_names=[self.camera_names[c] for c in chosen], skeleton=H36M_17, **options,
        )

    def _frame_mono3d(self, frame: int, cameras: list[int]) -> F64 | None:
        guesses = self.mono3d_joints
        if guesses is None:
            return None
        chosen = guesses[cameras, frame].copy()  # (C', 17, 3)
        finite = ~np.isnan(chosen).any(axis=-1)
        if (finite.sum(axis=-1) < 2).any():
            return None
        for view, keep in zip(chosen, finite):
            view[~keep] = view[keep].mean(axis=0)
        return chosen

    # ------------------------------------------------------------------ every frame

    def _check_handedness(self) -> None:
        """ValueError when most of the monocular guesses are mirror images of a body (a
        left-handed frame: z towards the camera, or y up): the sequence says what one frame cannot."""
        guesses = self.mono3d_joints
        if guesses is None:
            return
        usable = self.detected & ~np.isnan(guesses).any(axis=(-1, -2))  # (C, F)
        if not usable.any():
            return
        mirrored = mirror_image_guesses(guesses[usable], H36M_17)
        if mirrored.mean() > 0.5:
            raise ValueError(
                f"mono3d: {100 * mirrored.mean():.0f}% of the views' guesses are mirror images of a body (a "
                "left-handed frame: z towards the camera, or y up); guesses must be in each camera's axes, x right, "
                "y down, z away from the camera"
            )

    def without_mono3d(self) -> Capture:
        """This capture without its monocular guesses (the same arrays otherwise)."""
        return dataclasses.replace(self, mono3d=None)

    def solve(self, method: str = "ir", options: Any = None, progress: bool = True, threads: int | None = None,
              view_options: Mapping[str, Any] | None = None) -> CaptureSolution:
        """Solve every frame; frames are grouped by which cameras saw the person and each group
        goes through :func:`~metapose_geom.solve_batch` on those cameras.

        A camera that saw nobody in a frame is left out of that frame (so the frame's reference
        camera, whose axes its pose is in, is the first camera that saw the person). Frames seen
        by fewer than two cameras, and frames whose evidence :class:`~metapose_geom.Views`
        rejects, are skipped: ``CaptureSolution.skip_reasons`` says which and why.

        Args:
            method, options, threads: as :func:`~metapose_geom.solve_batch` (the weak-camera
                methods ``"s1"``, ``"ir"``, ...).
            progress: a progress bar per group of frames.
            view_options: keyword arguments of :meth:`views` (and so of :meth:`Views.from_keypoints`:
                ``box_margin``, ``mirror_weight``, ...).

        Returns:
            A :class:`CaptureSolution` with one entry per frame.
        """
        import inspect

        from ..solver import solve_batch
        from ..solver.methods import lookup

        if lookup(method).takes_cameras:
            raise ValueError(f"method: {method!r} needs start cameras; Capture.solve takes the methods that find "
                             "the cameras (solve_batch with cameras= runs it)")
        view_options = dict(view_options or {})
        allowed = set(inspect.signature(Views.from_keypoints).parameters) - {
            "cls", "keypoints", "confidences", "mono3d", "camera_names", "skeleton"}
        unknown = sorted(set(view_options) - allowed)
        if unknown:
            raise ValueError(f"view_options: unknown name(s) {unknown}; known: {sorted(allowed)}")
        self._check_handedness()
        frames = self.num_frames
        skipped: dict[int, str] = {}
        groups: dict[tuple[tuple[int, ...], bool], list[tuple[int, Views]]] = {}
        for f in range(frames):
            cameras = tuple(int(c) for c in np.flatnonzero(self.detected[:, f]))
            if len(cameras) < 2:
                skipped[f] = "seen by fewer than two cameras"
                continue
            try:
                views = self.views(f, cameras, **view_options)
            except ValueError as error:
                if str(error).split(":")[0] in view_options:
                    raise  # a bad option, not a bad frame
                skipped[f] = f"evidence rejected: {error}"
                continue
            groups.setdefault((cameras, views.mono3d is not None), []).append((f, views))
        solutions: list[Any] = [None] * frames
        frame_views: list[Views | None] = [None] * frames
        used = np.zeros((frames, self.num_cameras), dtype=bool)
        boxes = np.full((frames, self.num_cameras, 4), np.nan)
        for (cameras, _), members in sorted(groups.items(), key=lambda item: item[1][0][0]):
            found = solve_batch([views for _, views in members], method=method, options=options, progress=progress,
                                threads=threads)
            for (f, views), solution in zip(members, found):
                solutions[f] = solution
                frame_views[f] = views
                used[f, list(cameras)] = True
                boxes[f, list(cameras)] = views.boxes
        return CaptureSolution(self, method, tuple(solutions), used, boxes, skipped, tuple(frame_views))


@dataclass(frozen=True, eq=False)
class CaptureSolution:
    """Every frame's solution of a :class:`Capture`; the stacked arrays have a leading frame axis.

    Each solved frame's pose and cameras are the solver's: the pose (17, 3) in the weak frame of
    that frame's *reference* camera (the first camera that saw the person; rotation I, scale 1),
    in its box units, which change from frame to frame with the box. Writers turn them into
    metres (:func:`metapose_geom.io.metric_poses`).

    Attributes:
        capture: the capture solved.
        method: the solver's method.
        solutions: F entries: the frame's :class:`~metapose_geom.Solution` (over the cameras
            ``used[f]``, in capture order), or None for a skipped frame.
        used: (F, C) bool: the cameras each frame was solved with.
        boxes: (F, C, 4) ``[x, y, width, height]`` pixels of each used view's box (NaN elsewhere):
            what leads each view's box units back to pixels.
        skip_reasons: frame index -> why that frame was skipped.
        views: F entries: the :class:`~metapose_geom.Views` each frame was solved from (over the
            cameras ``used[f]``; mixtures in box units, ``swapped`` the views relabelled left for
            right), or None for a skipped frame; empty when not recorded.
    """

    capture: Capture
    method: str
    solutions: tuple[Any, ...]
    used: NDArray[np.bool_]
    boxes: F64
    skip_reasons: Mapping[int, str]
    views: tuple[Views | None, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip_reasons", dict(self.skip_reasons))  # a copy (a proxy would not pickle)
        object.__setattr__(self, "used", _frozen(self.used))
        object.__setattr__(self, "boxes", _frozen(self.boxes))

    def __len__(self) -> int:
        return len(self.solutions)

    @property
    def skipped(self) -> int:
        """How many frames were skipped (``skip_reasons`` says which and why)."""
        return len(self.skip_reasons)

    @functools.cached_property
    def solved(self) -> NDArray[np.bool_]:
        """(F,) bool: frames with a solution."""
        return _frozen(np.array([solution is not None for solution in self.solutions], dtype=bool))

    @functools.cached_property
    def reference(self) -> NDArray[np.int64]:
        """(F,) the reference camera of each frame (whose axes the pose is in); -1 where skipped."""
        return _frozen(np.array([int(np.argmax(row)) if row.any() else -1 for row in self.used], dtype=np.int64))

    def _stacked(self, get, shape: tuple[int, ...], per_camera: bool) -> F64:
        frames, cameras = self.used.shape
        out = np.full((frames, cameras) + shape if per_camera else (frames,) + shape, np.nan)
        for f, solution in enumerate(self.solutions):
            if solution is None:
                continue
            if per_camera:
                out[f, self.used[f]] = get(solution)
            else:
                out[f] = get(solution)
        return _frozen(out)

    @functools.cached_property
    def poses(self) -> F64:
        """(F, 17, 3) each frame's pose in its reference camera's weak frame, box units; NaN where skipped."""
        return self._stacked(lambda s: s.pose3d, (H36M_17.num_joints, 3), per_camera=False)

    @functools.cached_property
    def rotations(self) -> F64:
        """(F, C, 3, 3) weak camera rotations relative to the frame's reference; NaN for unused cameras."""
        return self._stacked(lambda s: s.cameras.rotation, (3, 3), per_camera=True)

    @functools.cached_property
    def scales(self) -> F64:
        """(F, C) weak camera scales (the reference's is 1); NaN for unused cameras."""
        return self._stacked(lambda s: s.cameras.scale, (), per_camera=True)

    @functools.cached_property
    def shifts(self) -> F64:
        """(F, C, 3) weak camera shifts, each view's box units; NaN for unused cameras."""
        return self._stacked(lambda s: s.cameras.shift, (3,), per_camera=True)

    @functools.cached_property
    def reprojection_pixels(self) -> F64:
        """(F, C, 17, 2) the pose seen by each used camera, that view's pixels; NaN elsewhere."""
        return self._stacked(lambda s: s.reprojection_pixels, (H36M_17.num_joints, 2), per_camera=True)

    @functools.cached_property
    def objectives(self) -> F64:
        """(F,) the refiner objective at each solution; NaN where skipped."""
        return self._stacked(lambda s: s.objective, (), per_camera=False)

    @property
    def skeleton(self) -> Skeleton:
        """The solution's joint layout: H36M-17."""
        return H36M_17

    def summary(self) -> str:
        """One line: frames solved and skipped, and why."""
        frames = len(self.solutions)
        line = f"{frames - self.skipped} of {frames} frames solved ({self.method})"
        if self.skipped:
            reasons: dict[str, int] = {}
            for reason in self.skip_reasons.values():
                key = reason.split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
            line += "; skipped: " + ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        return line
