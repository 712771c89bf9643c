"""Calibrated camera rigs: the :class:`Calibration` container, its TOML files, and triangulation.

A :class:`Calibration` holds C full-perspective cameras (``x_cam = R @ X + t``, intrinsics
``[fx, fy, cx, cy]`` px, distortion ``[k1, k2, p1, p2, k3]`` in OpenCV's order) and, when it was
fitted to people's keypoints, diagnostics of that fit. It projects world points, triangulates
keypoints (:meth:`Calibration.triangulate`) and is saved in one of two TOML layouts:

``"anipose"``
    What ``aniposelib.cameras.CameraGroup.load`` reads and ``CameraGroup.dump`` writes: one table
    per camera, ``[cam_0]``, ``[cam_1]``, ... (in camera order; the index is zero-padded from 11
    cameras on, because aniposelib orders the tables by sorting their keys as strings), each with
    ``name``, ``size`` ``[width, height]``, ``matrix`` (3x3 K), ``distortions`` (5), ``rotation``
    (Rodrigues, world to camera) and ``translation``; then ``[metadata]``. aniposelib does not say
    in what unit the translations are (a board calibration's are in the board's unit), so this
    module writes ``units`` into ``[metadata]`` and reads a file without it as ``units="unknown"``.

``"pose2sim"``
    Pose2Sim's ``Calib.toml``, as its ``calibration.toml_write`` writes it and
    ``common.retrieve_calib_params`` / ``computeP`` read it: one table per camera named after the
    camera (the key is quoted when the name is not a bare TOML key), in camera order, with
    ``name``, ``size``, ``matrix``, ``distortions`` (*four*: k1, k2, p1, p2), ``rotation``,
    ``translation`` in *metres*, and ``fisheye = false``; then ``[metadata]``. Pose2Sim reads the
    tables in file order and skips ``metadata``, ``capture_volume``, ``charuco``,
    ``checkerboard`` and anything that is not a table; a camera's name is its ``name`` or else
    its table's key.

``[metadata]`` holds ``adjusted`` (true when the calibration was fitted to the points of the
people filmed, as anipose marks a calibration refined on the animal) and ``error`` (the median
reprojection error, px, of the observations used; 0.0 when unknown), as anipose and Pose2Sim
write them; then ``units``; ``frames_used`` and ``frames_rejected`` (counts) when known; then the
calibration's own ``metadata``. The per-observation residuals and the frame lists are summarised
there, not stored: a calibration read from a file has empty diagnostics and carries the summary
in its ``metadata``, which is written back unchanged.

Files are written by this module's own TOML emitter (floats as ``repr``, so reading gives back
the same float64 bits) and read with :mod:`tomllib`. ``read_calibration(write_calibration(c))``
gives bit-identical arrays (for ``"pose2sim"``: when the units are metres and k3 = 0), and writing
a calibration read from a file written here gives the same bytes.

>>> calib = read_calibration("calibration.toml")                       # doctest: +SKIP
>>> points3d = calib.triangulate(keypoints, confidences)               # (F, J, 3) in calib.units
>>> calib.save("Calib.toml", format="pose2sim")                        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import os
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._checks import as_float64, check_choice, check_int
from ..geometry import PerspectiveCameras, project_perspective, rodrigues_to_matrix, undistort_points

F64 = NDArray[np.float64]

__all__ = ["CALIBRATION_FORMATS", "UNITS", "Calibration", "read_calibration", "write_calibration"]

#: The file layouts :func:`write_calibration` and :func:`read_calibration` know.
CALIBRATION_FORMATS = ("anipose", "pose2sim")
#: The units a calibration's translations may be in ("unknown": a foreign file that does not say).
UNITS = ("m", "mm", "unknown")
_MM_PER_UNIT = {"m": 1000.0, "mm": 1.0}

#: [metadata] keys that summarise the diagnostics, in the order they are written.
_SUMMARY_KEYS = ("adjusted", "error", "frames_used", "frames_rejected")
#: Top-level tables Pose2Sim's readers do not take for cameras.
_POSE2SIM_NOT_CAMERAS = ("metadata", "capture_volume", "charuco", "checkerboard")
_ANIPOSE_KEY = re.compile(r"cam_(\d+)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INT64 = (-(2**63), 2**63 - 1)


def _frozen(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, order="C", copy=True)
    copy.setflags(write=False)
    return copy


def _camera_array(value: ArrayLike, name: str, count: int, width: int, what: str) -> F64:
    array = as_float64(value, name)
    if array.shape != (count, width):
        raise ValueError(f"{name}: expected shape (C={count}, {width}) {what}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return _frozen(array)


def _writable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _metadata_value(key: str, value: Any) -> bool | int | float | str:
    """A metadata value in its Python type: true/false, an integer (64-bit), a finite number or a string."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        if not _INT64[0] <= int(value) <= _INT64[1]:
            raise ValueError(f"metadata.{key}: integers must fit in 64 bits (TOML), got {value!r}")
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"metadata.{key}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(value, str):
        if not _writable(value):
            raise ValueError(f"metadata.{key}: {value!r} cannot be written as UTF-8 (a lone surrogate?)")
        return value
    raise ValueError(f"metadata.{key}: expected a number, True/False or a string, got {type(value).__name__}")


@dataclass(frozen=True, eq=False)
class Calibration:
    """C calibrated full-perspective cameras, validated; arrays are read-only copies.

    Attributes:
        names: C >= 2 distinct non-empty camera names.
        image_size: (C, 2) ``[width, height]`` px, > 0.
        rotation_vector: (C, 3) Rodrigues vectors (axis * angle, radians), world to camera
            (``x_cam = R @ X + t``); the primary representation, so that files round-trip exactly.
        translation: (C, 3) world to camera, in ``units``.
        intrinsics: (C, 4) ``[fx, fy, cx, cy]`` px, fx and fy > 0.
        distortion: (C, 5) ``[k1, k2, p1, p2, k3]`` (OpenCV's order).
        units: ``"m"``, ``"mm"`` or ``"unknown"`` (a foreign file that does not say).
        residuals: camera name -> (N,) reprojection errors, px, of the observations the fit used
            (cameras without any may be left out).
        frames_used: (K,) distinct frame numbers the fit used.
        frames_rejected: frame number -> why the fit left it out.
        metadata: extra values written to the files' ``[metadata]`` (keys: strings; values:
            True/False, integers, finite numbers or strings). ``units`` is a field, not metadata;
            ``adjusted``, ``error``, ``frames_used`` and ``frames_rejected`` are what a file read
            back says of the diagnostics, and may not be given along with the diagnostics they
            summarise.

    Raises ValueError naming the field and the problem.
    """

    names: tuple[str, ...]
    image_size: F64
    rotation_vector: F64
    translation: F64
    intrinsics: F64
    distortion: F64
    units: str = "m"
    residuals: Mapping[str, F64] = field(default_factory=dict)
    frames_used: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    frames_rejected: Mapping[int, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.names
        if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
            raise ValueError(f"names: expected a sequence of camera names, got {type(names).__name__}")
        names = tuple(names)
        if len(names) < 2 or not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"names: expected at least two non-empty strings, got {names!r}")
        if len(set(names)) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"names: expected distinct names, {', '.join(map(repr, repeated))} repeated")
        unwritable = [name for name in names if not _writable(name)]
        if unwritable:
            raise ValueError(f"names: {unwritable[0]!r} cannot be written as UTF-8 (a lone surrogate?)")
        object.__setattr__(self, "names", names)
        count = len(names)
        image_size = _camera_array(self.image_size, "image_size", count, 2, "[width, height] px")
        if (image_size <= 0).any():
            raise ValueError("image_size: expected width and height > 0")
        intrinsics = _camera_array(self.intrinsics, "intrinsics", count, 4, "[fx, fy, cx, cy] px")
        if (intrinsics[:, :2] <= 0).any():
            raise ValueError("intrinsics: expected focal lengths fx, fy > 0")
        object.__setattr__(self, "image_size", image_size)
        object.__setattr__(self, "intrinsics", intrinsics)
        object.__setattr__(self, "rotation_vector",
                           _camera_array(self.rotation_vector, "rotation_vector", count, 3, "Rodrigues vectors"))
        object.__setattr__(self, "translation",
                           _camera_array(self.translation, "translation", count, 3, "world to camera"))
        object.__setattr__(self, "distortion",
                           _camera_array(self.distortion, "distortion", count, 5, "[k1, k2, p1, p2, k3]"))
        object.__setattr__(self, "units", check_choice(self.units, "units", UNITS))
        self._check_diagnostics()
        self._check_metadata()

    def _check_diagnostics(self) -> None:
        if not isinstance(self.residuals, Mapping):
            raise ValueError(f"residuals: expected a mapping camera name -> errors, "
                             f"got {type(self.residuals).__name__}")
        unknown = [key for key in self.residuals if key not in self.names]
        if unknown:
            raise ValueError(f"residuals: {unknown[0]!r} is not a camera name; the cameras are {', '.join(self.names)}")
        residuals = {}
        for name in self.names:
            if name in self.residuals:
                errors = as_float64(self.residuals[name], f"residuals[{name!r}]")
                if errors.ndim != 1 or not np.isfinite(errors).all() or (errors < 0).any():
                    raise ValueError(f"residuals[{name!r}]: expected a 1-D array of finite errors >= 0 px, "
                                     f"got shape {errors.shape}")
                residuals[name] = _frozen(errors)
        object.__setattr__(self, "residuals", MappingProxyType(residuals))

        used = np.asarray(self.frames_used)
        if used.ndim != 1 or (used.size and used.dtype.kind not in "iu"):
            raise ValueError(f"frames_used: expected a 1-D array of frame numbers (integers), got shape {used.shape}, "
                             f"dtype {used.dtype}")
        used = used.astype(np.int64)
        if len(np.unique(used)) != len(used):
            raise ValueError("frames_used: expected distinct frame numbers")
        object.__setattr__(self, "frames_used", _frozen(used))

        if not isinstance(self.frames_rejected, Mapping):
            raise ValueError(f"frames_rejected: expected a mapping frame number -> reason, "
                             f"got {type(self.frames_rejected).__name__}")
        rejected = {}
        for frame, reason in self.frames_rejected.items():
            if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)):
                raise ValueError(f"frames_rejected: expected integer frame numbers as keys, got {frame!r}")
            if not isinstance(reason, str):
                raise ValueError(f"frames_rejected[{frame}]: expected the reason as a string, got {reason!r}")
            rejected[int(frame)] = reason
        both = sorted(set(rejected) & set(used.tolist()))
        if both:
            raise ValueError(f"frames_rejected: frame {both[0]} is also in frames_used")
        object.__setattr__(self, "frames_rejected", MappingProxyType(dict(sorted(rejected.items()))))

    def _check_metadata(self) -> None:
        if not isinstance(self.metadata, Mapping):
            raise ValueError(f"metadata: expected a mapping, got {type(self.metadata).__name__}")
        metadata = {}
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not key or not _writable(key):
                raise ValueError(f"metadata: expected non-empty string keys that UTF-8 can write, got {key!r}")
            metadata[key] = _metadata_value(key, value)
        if "units" in metadata:
            raise ValueError("metadata.units: the units are the field units, not metadata")
        summarised = {"adjusted": self.frames_used.size > 0, "error": self.median_residual() is not None,
                      "frames_used": self.frames_used.size > 0, "frames_rejected": len(self.frames_rejected) > 0}
        source = {"adjusted": "frames_used", "error": "residuals", "frames_used": "frames_used",
                  "frames_rejected": "frames_rejected"}
        for key in _SUMMARY_KEYS:
            if key not in metadata:
                continue
            if summarised[key]:
                raise ValueError(f"metadata.{key}: is computed from {source[key]}; do not give both")
            value = metadata[key]
            if key == "adjusted" and not isinstance(value, bool):
                raise ValueError(f"metadata.adjusted: expected true or false, got {value!r}")
            if key == "error" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"metadata.error: expected a number >= 0 (px), got {value!r}")
            if key in ("frames_used", "frames_rejected") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"metadata.{key}: expected a count (an integer >= 0), got {value!r}")
        object.__setattr__(self, "metadata", MappingProxyType(metadata))

    # ------------------------------------------------------------------ derived views

    @property
    def num_cameras(self) -> int:
        return len(self.names)

    @functools.cached_property
    def rotation(self) -> F64:
        """(C, 3, 3) world-to-camera rotation matrices, from ``rotation_vector``."""
        return _frozen(rodrigues_to_matrix(self.rotation_vector))

    @functools.cached_property
    def centre(self) -> F64:
        """(C, 3) camera centres in the world, ``-R^T t``, in ``units``."""
        return _frozen(self.cameras.centres)

    @functools.cached_property
    def matrix(self) -> F64:
        """(C, 3, 3) intrinsic matrices ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``."""
        fx, fy, cx, cy = self.intrinsics.T
        matrix = np.zeros((self.num_cameras, 3, 3))
        matrix[:, 0, 0], matrix[:, 1, 1], matrix[:, 0, 2], matrix[:, 1, 2], matrix[:, 2, 2] = fx, fy, cx, cy, 1.0
        return _frozen(matrix)

    @property
    def cameras(self) -> PerspectiveCameras:
        """The cameras as :class:`~metapose_geom.PerspectiveCameras` (translations in ``units``)."""
        return PerspectiveCameras(self.rotation.copy(), self.translation.copy(), self.intrinsics.copy(),
                                  self.distortion.copy(), self.image_size.copy())

    def median_residual(self) -> float | None:
        """Median of every camera's residuals, px; None without residuals."""
        values = [errors for errors in self.residuals.values() if errors.size]
        return float(np.median(np.concatenate(values))) if values else None

    def in_units(self, units: str) -> Calibration:
        """This calibration with its translations in ``units`` (``"m"`` or ``"mm"``); itself when
        already there. ValueError when either side is ``"unknown"``."""
        target = check_choice(units, "units", UNITS)
        if target == self.units:
            return self
        if "unknown" in (target, self.units):
            raise ValueError(f"units: cannot convert translations in {self.units!r} units to {target!r}; "
                             "give the calibration its units first (dataclasses.replace(calibration, units='m'))")
        factor = _MM_PER_UNIT[self.units] / _MM_PER_UNIT[target]
        return replace(self, translation=self.translation * factor, units=target)

    # ------------------------------------------------------------------ geometry

    def project(self, points: ArrayLike) -> F64:
        """World points (..., N, 3) in ``units`` -> pixels (C, ..., N, 2) in every camera, with
        distortion (:func:`metapose_geom.geometry.project_perspective`).

        ValueError for non-finite points and for a point at or behind a camera.
        """
        world = as_float64(points, "points")
        if world.ndim < 1 or world.shape[-1] != 3:
            raise ValueError(f"points: expected shape (..., N, 3) world points, got {world.shape}")
        if not np.isfinite(world).all():
            raise ValueError("points: contains NaN or inf")
        count = self.num_cameras
        flat = world.reshape(-1, 3)
        if not len(flat):
            return np.zeros((count,) + world.shape[:-1] + (2,))
        tiled = np.ascontiguousarray(np.broadcast_to(flat, (count,) + flat.shape))
        pixels = project_perspective(tiled, self.rotation, self.translation, self.intrinsics, self.distortion)
        return pixels.reshape((count,) + world.shape[:-1] + (2,))

    def _observations(self, keypoints: ArrayLike,
                      confidences: ArrayLike) -> tuple[F64, F64, NDArray[np.bool_], tuple[int, ...]]:
        """keypoints (C, ..., 2) and confidences (C, ...) checked -> points (C, M, 2), confidences
        (C, M), which observations count (C, M): confidence > 0 and a keypoint that is not NaN,
        and the shape ``...``."""
        count = self.num_cameras
        points = as_float64(keypoints, "keypoints")
        if points.ndim < 2 or points.shape[0] != count or points.shape[-1] != 2:
            raise ValueError(f"keypoints: expected shape (C={count}, F, J, 2) pixels, got {points.shape}")
        conf = as_float64(confidences, "confidences")
        if conf.shape != points.shape[:-1]:
            raise ValueError(f"confidences: expected shape {points.shape[:-1]} (C, F, J), got {conf.shape}")
        if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
            raise ValueError("confidences: expected finite values in [0, 1]")
        lead = points.shape[1:-1]
        points = points.reshape(count, -1, 2)
        conf = conf.reshape(count, -1)
        if np.isinf(points[conf > 0]).any():
            raise ValueError("keypoints: inf where the confidence is > 0 (NaN marks a missing keypoint)")
        valid = (conf > 0) & ~np.isnan(points).any(axis=-1)
        return points, conf, valid, lead

    def triangulate(self, keypoints: ArrayLike, confidences: ArrayLike, min_views: int = 2) -> F64:
        """Keypoints (C, F, J, 2) px (NaN: missing) and confidences (C, F, J) in [0, 1] -> world
        points (F, J, 3) in ``units`` (any leading shape after C works alike).

        Each keypoint is undistorted (:func:`metapose_geom.geometry.undistort_points`) to the
        normalised image point ``(x, y)``; each point is then the linear (DLT) solution of the
        rows ``w (x P_3 - P_1)`` and ``w (y P_3 - P_2)`` of every view, ``P = [R | t]`` and ``w`` the
        view's confidence, by SVD (in a world frame centred and scaled on the cameras, so that the
        units do not matter). Scaling every confidence by the same factor does not change the result.
        A view with confidence 0 or a NaN keypoint is left out (whatever its keypoint); a point
        with fewer than ``min_views`` such views (2 <= ``min_views`` <= C) is NaN.

        ValueError for bad shapes, confidences outside [0, 1], inf where the confidence is > 0,
        and a keypoint whose distortion cannot be inverted.
        """
        count = self.num_cameras
        min_views = check_int(min_views, "min_views", 2, count)
        points, conf, valid, lead = self._observations(keypoints, confidences)
        total = points.shape[1]
        if not total:
            return np.zeros(lead + (3,))
        normalised = np.empty_like(points)
        for c in range(count):
            pixels = np.where(valid[c][:, None], points[c], self.intrinsics[c, 2:])  # unused: any finite pixel
            try:
                normalised[c] = undistort_points(pixels, self.intrinsics[c], self.distortion[c])
            except ValueError as error:
                raise ValueError(f"keypoints: camera {self.names[c]!r}: {error}") from None
        # world X = origin + scale * X': the solve is in a frame of unit size around the cameras
        origin = self.centre.mean(axis=0)
        scale = float(np.sqrt(((self.centre - origin) ** 2).sum(axis=1).mean())) or 1.0
        frame = np.eye(4)
        frame[:3, :3] *= scale
        frame[:3, 3] = origin
        projection = np.concatenate([self.rotation, self.translation[:, :, None]], axis=2) @ frame  # (C, 3, 4)
        weight = np.where(valid, conf, 0.0)[..., None]  # (C, M, 1)
        rows_x = normalised[..., :1] * projection[:, None, 2] - projection[:, None, 0]  # (C, M, 4)
        rows_y = normalised[..., 1:] * projection[:, None, 2] - projection[:, None, 1]
        system = (np.stack([rows_x, rows_y], axis=1) * weight[:, None]).transpose(2, 0, 1, 3)  # (M, C, 2, 4)
        _, _, vh = np.linalg.svd(system.reshape(total, 2 * count, 4))
        homogeneous = vh[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            world = homogeneous[:, :3] / homogeneous[:, 3:] * scale + origin
        world[(valid.sum(axis=0) < min_views) | ~np.isfinite(world).all(axis=1)] = np.nan
        return world.reshape(lead + (3,))

    def reprojection_errors(self, points3d: ArrayLike, keypoints: ArrayLike, confidences: ArrayLike) -> F64:
        """Pixel distance (C, F, J) between each camera's projection of ``points3d`` (F, J, 3), in
        ``units``, and ``keypoints`` (C, F, J, 2) px; NaN where the keypoint is missing (confidence 0
        or NaN), the point is NaN, or the point is at or behind the camera."""
        count = self.num_cameras
        points, _, valid, lead = self._observations(keypoints, confidences)
        world = as_float64(points3d, "points3d")
        if world.shape != lead + (3,):
            raise ValueError(f"points3d: expected shape {lead + (3,)} for keypoints {(count,) + lead + (2,)}, "
                             f"got {world.shape}")
        if np.isinf(world).any():
            raise ValueError("points3d: contains inf (NaN marks a missing point)")
        flat = world.reshape(-1, 3)
        if not len(flat):
            return np.zeros((count,) + lead)
        known = ~np.isnan(flat).any(axis=1)
        depth = np.einsum("cj,mj->cm", self.rotation[:, 2], np.where(known[:, None], flat, 0.0)) \
            + self.translation[:, None, 2]
        seen = known & (depth > 0)  # (C, M)
        ahead = np.einsum("cji,cj->ci", self.rotation, np.array([0.0, 0.0, 1.0]) - self.translation)  # depth 1
        safe = np.where(seen[..., None], flat[None], ahead[:, None])
        pixels = project_perspective(safe, self.rotation, self.translation, self.intrinsics, self.distortion)
        errors = np.linalg.norm(pixels - np.where(valid[..., None], points, 0.0), axis=-1)
        return np.where(valid & seen, errors, np.nan).reshape((count,) + lead)

    # ------------------------------------------------------------------ files and text

    def save(self, path: str | os.PathLike, format: str = "anipose") -> Path:
        """Write this calibration as a TOML file, ``"anipose"`` or ``"pose2sim"`` (:func:`write_calibration`)."""
        return write_calibration(path, self, format)

    def summary(self) -> str:
        """A few lines: the cameras, their focal lengths, centres and median residuals."""
        used, rejected = len(self.frames_used), len(self.frames_rejected)
        head = f"Calibration of {self.num_cameras} cameras, units {self.units}"
        if used or rejected:
            head += f", {used} frames used, {rejected} rejected"
        median = self.median_residual()
        if median is not None:
            head += f", median residual {median:.3g} px"
        elif "error" in self.metadata:
            head += f", median residual {self.metadata['error']:.3g} px (file)"
        lines = [head]
        for c, name in enumerate(self.names):
            fx, fy = self.intrinsics[c, :2]
            centre = ", ".join(f"{value:.4g}" for value in self.centre[c])
            errors = self.residuals.get(name)
            residual = (f"median residual {np.median(errors):.3g} px over {errors.size}"
                        if errors is not None and errors.size else "no residuals")
            lines.append(f"  {name}: focal {fx:.1f} x {fy:.1f} px, centre ({centre}) {self.units}, {residual}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- TOML out

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    parts = []
    for char in text:
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            parts.append(f"\\u{ord(char):04X}")
        else:
            parts.append(char)
    return '"' + "".join(parts) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that parses back to the same float64
    if isinstance(value, str):
        return _toml_string(value)
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"


def _toml_table(key: str, values: Mapping[str, Any]) -> str:
    lines = [f"[{_toml_key(key)}]"] + [f"{_toml_key(name)} = {_toml_value(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def _floats(array: np.ndarray) -> list:
    return array.tolist()  # Python floats carry the float64 bits exactly


def _camera_table(calibration: Calibration, c: int, distortion_count: int) -> dict[str, Any]:
    fx, fy, cx, cy = _floats(calibration.intrinsics[c])
    return {
        "name": calibration.names[c],
        "size": _floats(calibration.image_size[c]),
        "matrix": [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]],
        "distortions": _floats(calibration.distortion[c, :distortion_count]),
        "rotation": _floats(calibration.rotation_vector[c]),
        "translation": _floats(calibration.translation[c]),
    }


def _metadata_table(calibration: Calibration, units: str) -> dict[str, Any]:
    extra = dict(calibration.metadata)
    median = calibration.median_residual()
    table: dict[str, Any] = {
        "adjusted": extra.pop("adjusted", bool(calibration.frames_used.size)),
        "error": extra.pop("error", 0.0 if median is None else median),
        "units": units,
    }
    if calibration.frames_used.size or "frames_used" in extra:
        table["frames_used"] = extra.pop("frames_used", len(calibration.frames_used))
    if calibration.frames_rejected or "frames_rejected" in extra:
        table["frames_rejected"] = extra.pop("frames_rejected", len(calibration.frames_rejected))
    table.update(extra)
    return table


def _anipose_text(calibration: Calibration) -> str:
    width = len(str(calibration.num_cameras - 1))  # aniposelib sorts the keys as strings: pad cam_01 ... cam_10
    tables = [_toml_table(f"cam_{c:0{width}d}", _camera_table(calibration, c, 5))
              for c in range(calibration.num_cameras)]
    tables.append(_toml_table("metadata", _metadata_table(calibration, calibration.units)))
    return "\n".join(tables)


def _pose2sim_text(calibration: Calibration) -> str:
    if calibration.units == "unknown":
        raise ValueError("units: a Pose2Sim calibration is in metres, and this calibration's units are unknown; "
                         "say what they are first (dataclasses.replace(calibration, units='m'))")
    reserved = [name for name in calibration.names if name in _POSE2SIM_NOT_CAMERAS]
    if reserved:
        raise ValueError(f"names: Pose2Sim does not read a table named {reserved[0]!r} as a camera; rename it")
    metres = calibration.in_units("m")
    tables = []
    for c, name in enumerate(metres.names):
        table = _camera_table(metres, c, 4)
        table["fisheye"] = False
        tables.append(_toml_table(name, table))
    tables.append(_toml_table("metadata", _metadata_table(metres, "m")))
    return "\n".join(tables)


def write_calibration(path: str | os.PathLike, calibration: Calibration, format: str = "anipose") -> Path:
    """Write ``calibration`` to ``path`` as TOML in ``format`` (``"anipose"`` or ``"pose2sim"``; the
    module's docstring gives both layouts) and return the path.

    ``"pose2sim"`` writes metres (converting from mm) and four distortion coefficients; a
    calibration in unknown units is refused (ValueError), and a UserWarning names the cameras
    whose non-zero k3 is dropped.
    """
    if not isinstance(calibration, Calibration):
        raise ValueError(f"calibration: expected a Calibration, got {type(calibration).__name__}")
    kind = check_choice(format, "format", CALIBRATION_FORMATS)
    if kind == "pose2sim":
        text = _pose2sim_text(calibration)
        dropped = [name for name, k3 in zip(calibration.names, calibration.distortion[:, 4]) if k3 != 0]
        if dropped:
            warnings.warn(f"Pose2Sim calibrations hold four distortion coefficients (k1, k2, p1, p2): k3 of "
                          f"{', '.join(dropped)} is dropped", stacklevel=2)
    else:
        text = _anipose_text(calibration)
    target = Path(path)
    target.write_text(text, encoding="utf-8", newline="\n")
    return target


# --------------------------------------------------------------------------- TOML in


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numbers(table: Mapping[str, Any], key: str, where: str, what: str) -> np.ndarray:
    """``table[key]``, a (nested) list of numbers, as a float64 array; ValueError naming ``where.key``."""
    if key not in table:
        raise ValueError(f"{where}.{key}: missing ({what})")
    value = table[key]

    def convert(item: Any) -> Any:
        if isinstance(item, list):
            return [convert(part) for part in item]
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise TypeError
        return float(item)

    try:
        array = np.array(convert(value), dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}.{key}: expected {what}, got {_brief(value)}") from None
    if not np.isfinite(array).all():
        raise ValueError(f"{where}.{key}: expected finite numbers ({what}), got {_brief(value)}")
    return array


def _read_camera(table: Any, key: str, source: Path, name_required: bool) -> dict[str, Any]:
    where = f"{source}: {key}"
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a table of camera parameters, got {_brief(table)}")
    if "name" in table:
        name = table["name"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: expected a non-empty string, got {_brief(name)}")
    elif name_required:
        raise ValueError(f"{where}.name: missing (the camera's name)")
    else:
        name = key
    fisheye = table.get("fisheye", False)
    if not isinstance(fisheye, bool):
        raise ValueError(f"{where}.fisheye: expected true or false, got {_brief(fisheye)}")
    if fisheye:
        raise ValueError(f"{where}.fisheye: fisheye cameras are not supported (OpenCV's pinhole model only)")
    size = _numbers(table, "size", where, "[width, height] px")
    if size.shape != (2,):
        raise ValueError(f"{where}.size: expected [width, height] px, got {_brief(table['size'])}")
    matrix = _numbers(table, "matrix", where, "the 3x3 intrinsic matrix")
    if matrix.shape != (3, 3):
        raise ValueError(f"{where}.matrix: expected the 3x3 intrinsic matrix, got {_brief(table['matrix'])}")
    if matrix[0, 1] != 0 or matrix[1, 0] != 0 or (matrix[2] != [0.0, 0.0, 1.0]).any():
        raise ValueError(f"{where}.matrix: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew), "
                         f"got {matrix.tolist()}")
    distortion = _numbers(table, "distortions", where, "[k1, k2, p1, p2] or [k1, k2, p1, p2, k3]")
    if distortion.shape not in ((4,), (5,)):
        raise ValueError(f"{where}.distortions: expected 4 or 5 numbers [k1, k2, p1, p2(, k3)], "
                         f"got {_brief(table['distortions'])}")
    rotation = _numbers(table, "rotation", where, "a Rodrigues vector of 3 numbers")
    if rotation.shape != (3,):
        raise ValueError(f"{where}.rotation: expected a Rodrigues vector of 3 numbers (axis * angle), "
                         f"got {_brief(table['rotation'])}")
    translation = _numbers(table, "translation", where, "3 numbers")
    if translation.shape != (3,):
        raise ValueError(f"{where}.translation: expected 3 numbers, got {_brief(table['translation'])}")
    return {
        "name": name,
        "size": size,
        "intrinsics": matrix[[0, 1, 0, 1], [0, 1, 2, 2]],
        "distortion": np.concatenate([distortion, np.zeros(5 - len(distortion))]),
        "rotation": rotation,
        "translation": translation,
    }


def _read_metadata(document: Mapping[str, Any], source: Path) -> dict[str, Any]:
    table = document.get("metadata", {})
    if not isinstance(table, dict):
        raise ValueError(f"{source}: metadata: expected a table, got {_brief(table)}")
    for key, value in table.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{source}: metadata.{key}: expected a finite number, got {value!r}")
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"{source}: metadata.{key}: expected a number, true/false or a string "
                             f"(not read: {type(value).__name__})")
    return dict(table)


def _detect(document: Mapping[str, Any], source: Path) -> str:
    tables = {key: value for key, value in document.items() if key != "metadata"}
    if not tables:
        raise ValueError(f"{source}: no camera tables (only [metadata])" if document else f"{source}: empty file")
    cameras = [value for value in tables.values() if isinstance(value, dict)]
    if any(key in _POSE2SIM_NOT_CAMERAS for key in tables) or any(
            value.get("fisheye") is False or (isinstance(value.get("distortions"), list)
                                              and len(value["distortions"]) == 4) for value in cameras):
        return "pose2sim"
    if all(_ANIPOSE_KEY.fullmatch(key) for key in tables):
        return "anipose"
    raise ValueError(f"{source}: cannot tell whether this is an anipose or a Pose2Sim calibration (tables "
                     f"{', '.join(tables)}); pass format='anipose' or format='pose2sim'")


def _read_anipose(document: Mapping[str, Any], source: Path) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    keys = [key for key in document if key != "metadata"]
    if all(_ANIPOSE_KEY.fullmatch(key) for key in keys):
        keys.sort(key=lambda key: int(key[4:]))  # the order CameraGroup.dump wrote them in
    else:
        keys.sort()  # as CameraGroup.load
    cameras = [_read_camera(document[key], key, source, name_required=True) for key in keys]
    metadata = _read_metadata(document, source)
    units = metadata.pop("units", "unknown")
    if units not in UNITS:
        raise ValueError(f"{source}: metadata.units: expected one of {UNITS}, got {_brief(units)}")
    return cameras, metadata, units


def _read_pose2sim(document: Mapping[str, Any], source: Path) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    keys = [key for key, value in document.items() if key not in _POSE2SIM_NOT_CAMERAS and isinstance(value, dict)]
    cameras = [_read_camera(document[key], key, source, name_required=False) for key in keys]
    metadata = _read_metadata(document, source)
    units = metadata.pop("units", "m")
    if units != "m":
        raise ValueError(f"{source}: metadata.units: a Pose2Sim calibration is in metres, "
                         f"the file says {_brief(units)}")
    return cameras, metadata, units


def read_calibration(path: str | os.PathLike, format: str | None = None) -> Calibration:
    """Read a calibration TOML file written by this module, aniposelib (``CameraGroup.dump``) or
    Pose2Sim (``Calib.toml``); the module's docstring gives both layouts.

    Args:
        path: the file.
        format: ``"anipose"``, ``"pose2sim"`` or None to tell from the file: Pose2Sim's when a
            camera table has ``fisheye = false`` or four distortion coefficients, or the file has
            a ``capture_volume``, ``charuco`` or ``checkerboard`` table; aniposelib's when every
            table but ``metadata`` is ``cam_<number>``.

    Returns:
        A :class:`Calibration` with empty diagnostics; ``units`` from ``[metadata]`` (anipose
        files without it: ``"unknown"``; Pose2Sim: ``"m"``), the rest of ``[metadata]`` as its
        ``metadata``; k3 = 0 where the file has four distortion coefficients. Anipose cameras are
        in the order of their tables' numbers (the order ``CameraGroup.dump`` wrote them;
        ``CameraGroup.load`` sorts the keys as strings instead, so from eleven unpadded cameras
        on its order differs), Pose2Sim cameras in file order.

    Raises:
        ValueError naming the path and the key: no such file, not UTF-8, a TOML syntax error, no
        camera, a missing key, a wrong length, something not a number, a rotation that is not a
        Rodrigues vector, a matrix with skew, a fisheye camera, metadata that is not a number,
        true/false or a string, or values a :class:`Calibration` refuses.
    """
    source = Path(path)
    kind = None if format is None else check_choice(format, "format", CALIBRATION_FORMATS)
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    try:
        document = tomllib.loads(source.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{source}: not a UTF-8 text file ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML ({error})") from None
    kind = kind or _detect(document, source)
    reader = _read_anipose if kind == "anipose" else _read_pose2sim
    cameras, metadata, units = reader(document, source)
    if len(cameras) < 2:
        raise ValueError(f"{source}: expected at least two camera tables, found {len(cameras)} ({kind} layout)")
    try:
        return Calibration(
            names=tuple(camera["name"] for camera in cameras),
            image_size=np.stack([camera["size"] for camera in cameras]),
            rotation_vector=np.stack([camera["rotation"] for camera in cameras]),
            translation=np.stack([camera["translation"] for camera in cameras]),
            intrinsics=np.stack([camera["intrinsics"] for camera in cameras]),
            distortion=np.stack([camera["distortion"] for camera in cameras]),
            units=units,
            metadata=metadata,
        )
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
