"""The dataset format: the fields, their shapes, dtypes and units, and the check of a file's layout.

Format (version :data:`FORMAT_VERSION`). One HDF5 file holds N frames of C cameras, J joints (the
skeleton's) and K mixture components. Every field is one dataset at the root with a leading frame
axis, chunked along it and compressed (gzip + shuffle by default); each dataset carries ``units``
and ``description`` attributes. The fields (per-frame shapes; P = 3 J + 10 C, the solution vector's
length, :func:`metapose_geom.layout.solution_size`):

=================  ==============  =======  =====  ====================================================
field              shape           dtype    units  contents (and, for the synthetic build, its source)
=================  ==============  =======  =====  ====================================================
heatmaps           (N, C, J, K, 4) float64  box    mixtures ``[weight, mu_x, mu_y, variance]``
                                                   <- ``Scene.mixtures``
pose2d_pred        (N, C, J, 2)    float64  box    the mixture mean ``sum_k w_k mu_k / sum_k w_k`` (the
                                                   original's "mean heatmap" 2D prediction)
pose3d_epi_pred    (N, C, J, 3)    float64  box    monocular 3D guesses <- ``Scene.mono3d``
bboxes             (N, C, 4)       float64  px     ``[x, y, width, height]`` <- ``Scene.boxes``
keys               (N, C)          str      -      a name per frame and camera
pose3d             (N, J, 3)       float64  mm     world pose, y up <- ``Scene.pose3d``
cam_rot            (N, C, 3, 3)    float64  -      world-to-camera R, ``X_cam = R (X - centre)``
cam_pose3d         (N, C, 3)       float64  mm     camera centres in the world ``-R^T t``, as the
                                                   original (the pose in camera c is
                                                   ``(pose3d - cam_pose3d[c]) @ cam_rot[c].T``)
cam_intr           (N, C, 4)       float64  px     ``[fx, fy, cx, cy]``
cam_kd             (N, C, 5)       float64  -      distortion ``[k1, k2, p1, p2, k3]``
cam_image_size     (N, C, 2)       float64  px     ``[width, height]`` (not in the original release)
pose2d_gt          (N, C, J, 2)    float64  box    exact distorted projections
                                                   <- ``Scene.pose2d_box_units()``
pose2d_repr        (N, C, J, 2)    float64  box    weak-perspective re-projection of the 3D truth
                                                   <- ``Scene.weak_labels()``
occluded, confused (N, C, J)       bool     -      the synthetic noise flags (not in the original)
s1_pose3d          (N, J, 3)       float64  box    stage 1's pose in camera 0's weak frame
s1_x               (N, P)          float64  -      stage 1's solution vector (the refiner's start)
s1_objective       (N,)            float64  -      the refiner objective at stage 1
ir_pose3d          (N, J, 3)       float64  box    ``solve_batch(..., method="ir")``: ``Solution.pose3d``
ir_x               (N, P)          float64  -      ``Solution.x``
ir_objective       (N,)            float64  -      ``Solution.objective``
ir_reprojection    (N, C, J, 2)    float64  box    ``Solution.reprojection``
ir_cam_rot         (N, C, 3, 3)    float64  -      ``Solution.cameras.rotation``
ir_cam_scale       (N, C)          float64  -      ``Solution.cameras.scale``
ir_cam_shift       (N, C, 3)       float64  box    ``Solution.cameras.shift``
=================  ==============  =======  =====  ====================================================

The first five fields are required; the others are optional, but a file's field set is fixed when
it is created. Names follow the original release; the contents follow this project's conventions
(design.md, section 2), which differ from the release in three ways: all image-plane fields are in
box units (``(pixel - box origin) / max(box width, height)``, variances over the size squared;
pixels come back through ``bboxes``), boxes are float ``[x, y, width, height]`` and monocular
guesses are float64.

File attributes: ``format`` (``"metapose-geom-dataset"``), ``format_version``, ``skeleton`` (a
:class:`~metapose_geom.skeletons.Skeleton` name), ``joint_names`` and ``camera_names`` (JSON),
``num_cameras``, ``num_joints``, ``num_components``, ``frames_committed``, optionally
``frames_planned``, and any caller attributes (the synthetic build records its parameters).

The synthetic build's sources (``<-``) are written in :mod:`metapose_geom.datasets.scenes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from .. import skeletons as _skeletons
from .._checks import check_int
from ..layout import solution_size
from ..skeletons import H36M_17, Skeleton

__all__ = [
    "FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_STORAGE_CHUNK",
    "REQUIRED_FIELDS",
    "RESERVED_ATTRS",
    "FieldSpec",
    "FileLayout",
    "check_chunk_field",
    "check_file",
    "field_shape",
    "h5_dtype",
    "known_field",
    "user_attrs",
]

FORMAT_NAME = "metapose-geom-dataset"
FORMAT_VERSION = 1
#: Frames per HDF5 chunk at most (one chunk of heatmaps, 4 cameras: 64 x 8.7 kB).
MAX_STORAGE_CHUNK = 64


@dataclass(frozen=True)
class FieldSpec:
    """One field: its per-frame shape (symbols C, J, K, P or integers), dtype, units and meaning."""

    name: str
    shape: tuple[str | int, ...]
    dtype: str  #: "float64", "bool" or "str"
    units: str
    description: str


def _spec(name: str, shape: str, dtype: str, units: str, description: str) -> FieldSpec:
    dims = tuple(int(d) if d.isdigit() else d for d in shape.split()) if shape else ()
    return FieldSpec(name, dims, dtype, units, description)


_SPECS = (
    _spec("heatmaps", "C J K 4", "float64", "box", "mixtures [weight, mu_x, mu_y, variance]"),
    _spec("pose2d_pred", "C J 2", "float64", "box", "mixture mean: sum_k w_k mu_k / sum_k w_k"),
    _spec("pose3d_epi_pred", "C J 3", "float64", "box", "monocular 3D guess per view"),
    _spec("bboxes", "C 4", "float64", "px", "person box [x, y, width, height]"),
    _spec("keys", "C", "str", "", "a name per frame and camera"),
    _spec("pose3d", "J 3", "float64", "mm", "3D pose, world frame"),
    _spec("cam_rot", "C 3 3", "float64", "", "world-to-camera rotation R: X_cam = R (X - centre)"),
    _spec("cam_pose3d", "C 3", "float64", "mm", "camera centre in the world, -R^T t"),
    _spec("cam_intr", "C 4", "float64", "px", "intrinsics [fx, fy, cx, cy]"),
    _spec("cam_kd", "C 5", "float64", "", "distortion [k1, k2, p1, p2, k3] (OpenCV order)"),
    _spec("cam_image_size", "C 2", "float64", "px", "image [width, height]"),
    _spec("pose2d_gt", "C J 2", "float64", "box", "ground-truth 2D (distorted perspective projection)"),
    _spec("pose2d_repr", "C J 2", "float64", "box", "weak-perspective re-projection of the 3D truth"),
    _spec("occluded", "C J", "bool", "", "joint occluded in the view (synthetic noise flag)"),
    _spec("confused", "C J", "bool", "", "joint confused with its mirror (synthetic noise flag)"),
    _spec("s1_pose3d", "J 3", "float64", "box", "stage-1 pose, camera 0's weak frame"),
    _spec("s1_x", "P", "float64", "", "stage-1 solution vector [pose | rot6d | scale_raw | shift]"),
    _spec("s1_objective", "", "float64", "", "refiner objective at stage 1"),
    _spec("ir_pose3d", "J 3", "float64", "box", "IR pose, camera 0's weak frame"),
    _spec("ir_x", "P", "float64", "", "IR solution vector [pose | rot6d | scale_raw | shift]"),
    _spec("ir_objective", "", "float64", "", "refiner objective at the IR solution"),
    _spec("ir_reprojection", "C J 2", "float64", "box", "IR pose seen by the IR cameras"),
    _spec("ir_cam_rot", "C 3 3", "float64", "", "IR weak camera rotations (camera 0 is I)"),
    _spec("ir_cam_scale", "C", "float64", "", "IR weak camera scales (camera 0 is 1)"),
    _spec("ir_cam_shift", "C 3", "float64", "box", "IR weak camera shifts"),
)
#: Every known field, in schema order.
FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in _SPECS}
#: Fields every file has.
REQUIRED_FIELDS: tuple[str, ...] = ("heatmaps", "pose2d_pred", "pose3d_epi_pred", "bboxes", "keys")
#: File attributes the format sets; a caller's attributes take other names.
RESERVED_ATTRS = frozenset({
    "format", "format_version", "skeleton", "joint_names", "camera_names", "num_cameras", "num_joints",
    "num_components", "frames_committed", "frames_planned",
})




def field_shape(name: str, num_cameras: int, num_joints: int, num_components: int) -> tuple[int, ...]:
    """The per-frame shape of field ``name`` (without the frame axis) for C, J and K."""
    spec = known_field(name)
    dims = {"C": num_cameras, "J": num_joints, "K": num_components, "P": solution_size(num_cameras, num_joints)}
    return tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)


def known_field(name: str) -> FieldSpec:
    """The spec of field ``name``; ValueError listing the known fields when there is none."""
    if name not in FIELDS:
        raise ValueError(f"field: unknown field {name!r}; known: {list(FIELDS)}")
    return FIELDS[name]


def _describe(name: str, shape: tuple[int, ...]) -> str:
    spec = FIELDS[name]
    symbols = ", ".join(["N", *map(str, spec.shape)])
    numbers = ", ".join(["N", *map(str, shape)])
    return f"shape ({symbols}) = ({numbers}) and dtype {spec.dtype}"


def h5_dtype(spec: FieldSpec):
    """The HDF5 dtype a field is stored with (variable-length UTF-8 for strings)."""
    return h5py.string_dtype("utf-8") if spec.dtype == "str" else np.dtype(spec.dtype)


def check_chunk_field(name: str, value: Any, shape: tuple[int, ...]) -> NDArray:
    """Check one field of a chunk: (n,) + shape with the field's dtype; lossless conversion only."""
    spec = FIELDS[name]
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected {_describe(name, shape)}, got {type(value).__name__} ({error})") from None
    kind, size = array.dtype.kind, array.dtype.itemsize
    if spec.dtype == "float64":
        ok = (kind == "f" and size <= 8) or (kind in "iu" and size <= 4)  # exact in float64
    elif spec.dtype == "bool":
        ok = kind == "b"
    else:
        ok = kind in "US" or (kind == "O" and all(isinstance(v, str) for v in array.flat))
    if not ok or array.ndim != len(shape) + 1 or array.shape[1:] != shape:
        raise ValueError(f"{name}: expected {_describe(name, shape)}, got shape {array.shape} dtype {array.dtype}")
    if spec.dtype == "float64":
        return np.ascontiguousarray(array, dtype=np.float64)
    if spec.dtype == "str":
        if kind == "S":
            try:
                array = np.char.decode(array, "utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{name}: byte strings must be UTF-8") from None
        return array.astype(object)
    return np.ascontiguousarray(array)


def _known_skeletons() -> dict[str, Skeleton]:
    """Every Skeleton defined in metapose_geom.skeletons, by name."""
    found = {value.name: value for value in vars(_skeletons).values() if isinstance(value, Skeleton)}
    found.setdefault(H36M_17.name, H36M_17)
    return found


@dataclass(frozen=True)
class FileLayout:
    """What a file's attributes and datasets say, validated."""

    skeleton: Skeleton
    num_cameras: int
    num_components: int
    fields: tuple[str, ...]
    committed: int
    camera_names: tuple[str, ...]


def check_file(handle: h5py.File, skeleton: Skeleton | None, path: Path) -> FileLayout:
    """Validate format, version, skeleton, dimensions and every field's shape and dtype."""
    attrs = handle.attrs
    if attrs.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a metapose-geom dataset (attribute format = {attrs.get('format')!r})")
    version = check_int(attrs.get("format_version"), "format_version", 1)
    if version != FORMAT_VERSION:
        newer = " (written by a newer metapose-geom)" if version > FORMAT_VERSION else ""
        raise ValueError(f"format_version: this reader reads version {FORMAT_VERSION}, the file has {version}{newer}")
    name = attrs.get("skeleton")
    known = _known_skeletons()
    if name not in known:
        raise ValueError(f"skeleton: unknown skeleton {name!r} in {path}; known: {sorted(known)}")
    if skeleton is not None and name != skeleton.name:
        raise ValueError(f"skeleton: expected {skeleton.name!r}, the file has {name!r}")
    file_skeleton = known[name]
    joints = check_int(attrs.get("num_joints"), "num_joints", 1)
    if joints != file_skeleton.num_joints:
        raise ValueError(f"num_joints: {joints} in the file, but skeleton {name!r} has {file_skeleton.num_joints}")
    cameras = check_int(attrs.get("num_cameras"), "num_cameras", 2)
    components = check_int(attrs.get("num_components"), "num_components", 1)
    committed = check_int(attrs.get("frames_committed"), "frames_committed", 0)
    try:
        camera_names = tuple(json.loads(attrs.get("camera_names", "")))
    except (TypeError, ValueError):
        camera_names = ()
    if len(camera_names) != cameras or not all(isinstance(c, str) for c in camera_names):
        raise ValueError(f"camera_names: expected a JSON list of {cameras} names, got {attrs.get('camera_names')!r}")
    present = set(handle.keys())
    unknown = sorted(present - set(FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}; known: {list(FIELDS)}")
    missing = [f for f in REQUIRED_FIELDS if f not in present]
    if missing:
        raise ValueError(f"{path}: required field(s) {missing} missing")
    for field in present:
        dataset = handle[field]
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{field}: expected a dataset, got a {type(dataset).__name__}")
        shape = field_shape(field, cameras, joints, components)
        spec = FIELDS[field]
        if spec.dtype == "str":
            dtype_ok = h5py.check_string_dtype(dataset.dtype) is not None
        else:
            dtype_ok = dataset.dtype == np.dtype(spec.dtype)
        if not dtype_ok or dataset.shape[1:] != shape or dataset.ndim != len(shape) + 1:
            raise ValueError(
                f"{field}: expected {_describe(field, shape)}, the file has shape {dataset.shape} dtype {dataset.dtype}"
            )
        if dataset.shape[0] < committed:
            raise ValueError(f"{field}: {dataset.shape[0]} frames stored but {committed} committed")
    fields = tuple(f for f in FIELDS if f in present)
    return FileLayout(file_skeleton, cameras, components, fields, committed, camera_names)


def user_attrs(attrs) -> dict[str, Any]:
    """A file's attributes other than the format's (:data:`RESERVED_ATTRS`), as Python values."""

    def plain(value):
        return value.item() if isinstance(value, np.generic) else value

    return {key: plain(value) for key, value in attrs.items() if key not in RESERVED_ATTRS}
