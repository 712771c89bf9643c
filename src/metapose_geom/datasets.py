"""On-disk datasets (HDF5, h5py): the format, a validating writer and reader, and the synthetic build.

Format (version :data:`FORMAT_VERSION`). One HDF5 file holds N frames of C cameras, J joints (the
skeleton's) and K mixture components. Every field is one dataset at the root with a leading frame
axis, chunked along it and compressed (gzip + shuffle by default); each dataset carries ``units``
and ``description`` attributes. The fields (per-frame shapes; P = 3 J + 10 C, the solution vector):

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

Commit protocol. :class:`DatasetWriter` appends a chunk of frames by growing every dataset,
writing the data and flushing the file; only then does it raise ``frames_committed`` and flush
again (the commit point). Readers see ``frames_committed`` frames and nothing beyond, so a chunk
interrupted before its commit (an exception, a kill) never looks complete; reopening for appending
(``mode="a"``) truncates every dataset back to the committed count. A new file is built under a
temporary name and renamed into place, so a file at the final name always has its structure.

Synthetic build (:func:`make_datasets`, ``metapose-geom make-dataset``): one file per split and
camera count, ``{out}/synthetic_{split}_{C}cam.h5``. Frame i of a file with seed s is
``synth.make_scene(np.random.default_rng([s, i]), C)`` (that is ``synth.make_scenes(n, C, seed=s)[i]``)
with s = ``split_seed(seed, split)`` (train and test never share one), followed by stage 1 and IR
with default options. A restarted build recomputes only the frames not yet committed; as every
frame depends on its index alone, the result equals a build made in one go, bit for bit.

Example::

    from metapose_geom.datasets import DatasetReader, make_datasets
    paths = make_datasets("data", train_frames=100, test_frames=20, cameras=(4,))
    with DatasetReader("data/synthetic_test_4cam.h5") as reader:
        for batch in reader.frames(batch_size=64, fields=("heatmaps", "ir_pose3d")):
            batch["heatmaps"].shape                 # (B, 4, 17, 4, 4)
        views = reader.views(0)                     # a Views for metapose_geom.solve
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from . import skeletons as _skeletons
from . import synth
from .skeletons import H36M_17, Skeleton
from .solver import RefineOptions, solve_batch
from .views import Views

__all__ = [
    "FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "REQUIRED_FIELDS",
    "SPLIT_SEED_OFFSETS",
    "SYNTHETIC_FIELDS",
    "DatasetReader",
    "DatasetWriter",
    "FieldSpec",
    "build_synthetic_dataset",
    "committed_frames",
    "dataset_path",
    "field_shape",
    "make_datasets",
    "split_seed",
    "synthetic_frames",
]

FORMAT_NAME = "metapose-geom-dataset"
FORMAT_VERSION = 1
#: Added to ``--seed`` to give each split its own scenes (and keep clear of small seeds used elsewhere).
SPLIT_SEED_OFFSETS = {"train": 1_000_000, "test": 2_000_000}
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
_RESERVED_ATTRS = frozenset({
    "format", "format_version", "skeleton", "joint_names", "camera_names", "num_cameras", "num_joints",
    "num_components", "frames_committed", "frames_planned",
})


def field_shape(name: str, num_cameras: int, num_joints: int, num_components: int) -> tuple[int, ...]:
    """The per-frame shape of field ``name`` (without the frame axis) for C, J and K."""
    spec = _field(name)
    dims = {"C": num_cameras, "J": num_joints, "K": num_components, "P": 3 * num_joints + 10 * num_cameras}
    return tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)


def _field(name: str) -> FieldSpec:
    if name not in FIELDS:
        raise ValueError(f"field: unknown field {name!r}; known: {list(FIELDS)}")
    return FIELDS[name]


def _describe(name: str, shape: tuple[int, ...]) -> str:
    spec = FIELDS[name]
    symbols = ", ".join(["N", *map(str, spec.shape)])
    numbers = ", ".join(["N", *map(str, shape)])
    return f"shape ({symbols}) = ({numbers}) and dtype {spec.dtype}"


def _h5_dtype(spec: FieldSpec):
    return h5py.string_dtype("utf-8") if spec.dtype == "str" else np.dtype(spec.dtype)


def _coerce(name: str, value: Any, shape: tuple[int, ...]) -> NDArray:
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


def _int_attr(attrs, name: str, low: int) -> int:
    value = attrs.get(name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an integer attribute >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _Layout:
    """What a file's attributes and datasets say, validated."""

    skeleton: Skeleton
    num_cameras: int
    num_components: int
    fields: tuple[str, ...]
    committed: int
    camera_names: tuple[str, ...]


def _check_file(handle: h5py.File, skeleton: Skeleton | None, path: Path) -> _Layout:
    """Validate format, version, skeleton, dimensions and every field's shape and dtype."""
    attrs = handle.attrs
    if attrs.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a metapose-geom dataset (attribute format = {attrs.get('format')!r})")
    version = _int_attr(attrs, "format_version", 1)
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
    joints = _int_attr(attrs, "num_joints", 1)
    if joints != file_skeleton.num_joints:
        raise ValueError(f"num_joints: {joints} in the file, but skeleton {name!r} has {file_skeleton.num_joints}")
    cameras = _int_attr(attrs, "num_cameras", 2)
    components = _int_attr(attrs, "num_components", 1)
    committed = _int_attr(attrs, "frames_committed", 0)
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
    return _Layout(file_skeleton, cameras, components, fields, committed, camera_names)


def _user_attrs(attrs) -> dict[str, Any]:
    def plain(value):
        return value.item() if isinstance(value, np.generic) else value

    return {key: plain(value) for key, value in attrs.items() if key not in _RESERVED_ATTRS}


# --------------------------------------------------------------------------- writer


class DatasetWriter:
    """Append frames to an HDF5 dataset file, chunk by chunk, each chunk committed atomically.

    Args:
        path: the ``.h5`` file.
        num_cameras: C (>= 2).
        fields: the fields the file holds (the :data:`REQUIRED_FIELDS` are always included);
            None gives the required fields only.
        num_components: K, mixture components per joint.
        skeleton: J = ``skeleton.num_joints``; its name is stored.
        mode: ``"x"`` create (error if the file exists), ``"w"`` create or overwrite, ``"a"`` append
            to an existing file (created if missing): its layout must equal the one given, and
            every dataset is truncated to the committed frames.
        attrs: extra file attributes (str, int, float or bool). With ``mode="a"`` on an existing
            file they must equal the stored ones (the file's identity, e.g. a build's parameters).
        frames_planned: the number of frames the file is meant to reach (stored, updated on
            reopening); None leaves it unset.
        camera_names: C names (default ``cam0``..); stored.
        chunk_frames: frames per HDF5 chunk.
        compression: ``"gzip"`` (level 4, with shuffle), ``"lzf"`` (with shuffle) or None.

    :meth:`append` takes a mapping field -> array with a leading axis of n frames and the shapes
    and dtypes of :data:`FIELDS`; it validates everything before writing anything.

    Example::

        with DatasetWriter("out.h5", num_cameras=2, fields=["pose3d"]) as writer:
            writer.append({"heatmaps": h, "pose2d_pred": p, "pose3d_epi_pred": m, "bboxes": b,
                           "keys": k, "pose3d": x})        # h (n, 2, 17, 4, 4), ...
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_cameras: int,
        fields: Sequence[str] | None = None,
        num_components: int = 4,
        skeleton: Skeleton = H36M_17,
        *,
        mode: str = "x",
        attrs: Mapping[str, Any] | None = None,
        frames_planned: int | None = None,
        camera_names: Sequence[str] | None = None,
        chunk_frames: int = MAX_STORAGE_CHUNK,
        compression: str | None = "gzip",
    ) -> None:
        self._file: h5py.File | None = None
        self.path = Path(path)
        _check_count(num_cameras, "num_cameras", 2)
        _check_count(num_components, "num_components", 1)
        _check_count(chunk_frames, "chunk_frames", 1)
        if frames_planned is not None:
            _check_count(frames_planned, "frames_planned", 0)
        if not isinstance(skeleton, Skeleton):
            raise ValueError(f"skeleton: expected a Skeleton, got {type(skeleton).__name__}")
        if mode not in ("x", "w", "a"):
            raise ValueError(f"mode: expected 'x', 'w' or 'a', got {mode!r}")
        if compression not in ("gzip", "lzf", None):
            raise ValueError(f"compression: expected 'gzip', 'lzf' or None, got {compression!r}")
        wanted = set(REQUIRED_FIELDS) | {_field(f).name for f in (fields or ())}
        self.fields: tuple[str, ...] = tuple(f for f in FIELDS if f in wanted)
        self.num_cameras, self.num_components, self.skeleton = int(num_cameras), int(num_components), skeleton
        names = tuple(camera_names) if camera_names is not None else tuple(f"cam{c}" for c in range(num_cameras))
        if len(names) != num_cameras or len(set(names)) != num_cameras or not all(isinstance(n, str) for n in names):
            raise ValueError(f"camera_names: expected {num_cameras} distinct strings, got {names}")
        self.camera_names = names
        attrs = dict(attrs or {})
        for key, value in attrs.items():
            if key in _RESERVED_ATTRS:
                raise ValueError(f"attrs: {key!r} is reserved by the format")
            if not isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
                raise ValueError(f"attrs: {key!r} must be a str, int, float or bool, got {type(value).__name__}")
        self._shapes = {f: field_shape(f, num_cameras, skeleton.num_joints, num_components) for f in self.fields}

        if mode == "a" and self.path.exists():
            self._file = h5py.File(self.path, "r+")
            try:
                self._committed = self._reopen(attrs, frames_planned)
            except BaseException:
                self._file.close()
                raise
        else:
            if mode == "x" and self.path.exists():
                raise FileExistsError(f"{self.path} exists; use mode='w' to overwrite or 'a' to append")
            self._create(attrs, frames_planned, chunk_frames, compression)
            self._file = h5py.File(self.path, "r+")
            self._committed = 0

    # ------------------------------------------------------------------ opening

    def _create(self, attrs: dict, frames_planned, chunk_frames: int, compression: str | None) -> None:
        """Build the empty file under a temporary name, then rename it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".creating")
        with h5py.File(temporary, "w") as handle:
            handle.attrs.update({
                "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "skeleton": self.skeleton.name,
                "joint_names": json.dumps(list(self.skeleton.joints)),
                "camera_names": json.dumps(list(self.camera_names)),
                "num_cameras": self.num_cameras, "num_joints": self.skeleton.num_joints,
                "num_components": self.num_components, "frames_committed": 0,
            })
            if frames_planned is not None:
                handle.attrs["frames_planned"] = int(frames_planned)
            handle.attrs.update(attrs)
            for name in self.fields:
                spec, shape = FIELDS[name], self._shapes[name]
                options = {} if compression is None else {"compression": compression, "shuffle": True}
                if compression == "gzip":
                    options["compression_opts"] = 4
                dataset = handle.create_dataset(
                    name, shape=(0, *shape), maxshape=(None, *shape), dtype=_h5_dtype(spec),
                    chunks=(chunk_frames, *shape) if shape else (chunk_frames,), **options,
                )
                dataset.attrs["units"] = spec.units
                dataset.attrs["description"] = spec.description
        os.replace(temporary, self.path)

    def _reopen(self, attrs: dict, frames_planned) -> int:
        layout = _check_file(self._file, None, self.path)
        mismatches = []
        for what, mine, theirs in (
            ("skeleton", self.skeleton.name, layout.skeleton.name),
            ("num_cameras", self.num_cameras, layout.num_cameras),
            ("num_components", self.num_components, layout.num_components),
            ("fields", list(self.fields), list(layout.fields)),
            ("camera_names", list(self.camera_names), list(layout.camera_names)),
        ):
            if mine != theirs:
                mismatches.append(f"{what}: file has {theirs!r}, asked for {mine!r}")
        stored = _user_attrs(self._file.attrs)
        for key, value in attrs.items():
            if key not in stored or stored[key] != value or type(stored[key]) is not type(value):
                mismatches.append(f"attribute {key}: file has {stored.get(key)!r}, asked for {value!r}")
        if mismatches:
            raise ValueError(f"{self.path}: cannot append, the file differs: " + "; ".join(mismatches))
        committed = layout.committed
        if frames_planned is not None:
            if frames_planned < committed:
                raise ValueError(f"frames_planned: {frames_planned} is below the {committed} frames already committed")
            self._file.attrs["frames_planned"] = int(frames_planned)
        for name in self.fields:  # drop whatever an interrupted append left beyond the commit point
            if self._file[name].shape[0] != committed:
                self._file[name].resize(committed, axis=0)
        self._file.flush()
        return committed

    # ------------------------------------------------------------------ writing

    @property
    def frames_committed(self) -> int:
        """Frames written and committed so far."""
        return self._committed

    def __len__(self) -> int:
        return self._committed

    def append(self, chunk: Mapping[str, Any]) -> int:
        """Write n frames (every field of the file, leading axis n) and commit them; returns the new count.

        Raises ValueError, before writing anything, on a missing or unknown field, a wrong shape or
        dtype (naming the field and the expected shape and dtype) or fields of different lengths.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        if not isinstance(chunk, Mapping):
            raise ValueError(f"chunk: expected a mapping field -> array, got {type(chunk).__name__}")
        missing = [f for f in self.fields if f not in chunk]
        extra = sorted(set(chunk) - set(self.fields))
        if missing or extra:
            raise ValueError(
                f"chunk: missing field(s) {missing}, unexpected field(s) {extra}; the file has {list(self.fields)}"
            )
        arrays = {name: _coerce(name, chunk[name], self._shapes[name]) for name in self.fields}
        lengths = {name: array.shape[0] for name, array in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"chunk: fields have different numbers of frames: {lengths}")
        count = next(iter(lengths.values()))
        if count == 0:
            return self._committed
        start, stop = self._committed, self._committed + count
        for name, array in arrays.items():
            dataset = self._file[name]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = array
        self._file.flush()  # the data are on disk before the commit says so
        self._commit(stop)
        return self._committed

    def _commit(self, count: int) -> None:
        """The commit point: record ``count`` committed frames and flush."""
        self._file.attrs["frames_committed"] = int(count)
        self._file.flush()
        self._committed = int(count)

    def close(self) -> None:
        """Flush and close; uncommitted data stay invisible and are dropped by the next append."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- reader


class DatasetReader:
    """Read a dataset file lazily: only the frames asked for are read (and decompressed).

    Args:
        path: the ``.h5`` file.
        skeleton: when given, the file's skeleton must be this one.
        locking: HDF5 file locking; False lets a reader look at a file another process is writing
            (it then sees the frames committed when it opened).
        cache_bytes: HDF5 chunk cache per dataset, so that frame-by-frame reads decompress each
            chunk once.

    Raises ValueError when the file is not a metapose-geom dataset, has another format version,
    an unknown or unexpected skeleton, or a field of the wrong shape or dtype (naming the field).

    ``len(reader)`` is the number of committed frames; :meth:`read` gives one field over a frame
    range, :meth:`frames` streams batches, :meth:`views` builds one frame's :class:`Views`.
    """

    def __init__(self, path: str | os.PathLike, skeleton: Skeleton | None = None, locking: bool | None = None,
                 cache_bytes: int = 32 << 20) -> None:
        self.path = Path(path)
        self._file = h5py.File(self.path, "r", locking=locking, rdcc_nbytes=int(cache_bytes), rdcc_nslots=10007)
        try:
            layout = _check_file(self._file, skeleton, self.path)
        except BaseException:
            self._file.close()
            raise
        self.skeleton: Skeleton = layout.skeleton
        self.num_cameras: int = layout.num_cameras
        self.num_joints: int = layout.skeleton.num_joints
        self.num_components: int = layout.num_components
        self.fields: tuple[str, ...] = layout.fields
        self.camera_names: tuple[str, ...] = layout.camera_names
        self.format_version: int = int(self._file.attrs["format_version"])
        planned = self._file.attrs.get("frames_planned")
        self.frames_planned: int | None = None if planned is None else int(planned)
        #: the file's other attributes (a synthetic build's parameters, for example)
        self.attrs: dict[str, Any] = _user_attrs(self._file.attrs)
        self._len = layout.committed
        # open each dataset once: HDF5's chunk cache lives with the open dataset
        self._datasets = {name: self._file[name] for name in self.fields}

    def __len__(self) -> int:
        return self._len

    @property
    def complete(self) -> bool:
        """True when ``frames_planned`` is set and reached (or not set)."""
        return self.frames_planned is None or self._len >= self.frames_planned

    def shape(self, field: str) -> tuple[int, ...]:
        """(N, ...) the field's full shape over the committed frames."""
        self._check_field(field)
        return (self._len, *self._datasets[field].shape[1:])

    def _check_field(self, field: str) -> None:
        if field not in self.fields:
            raise ValueError(f"field: {field!r} is not in this file; it has {list(self.fields)}")

    def _range(self, start: int | None, stop: int | None) -> tuple[int, int]:
        start, stop, _ = slice(start, stop).indices(self._len)
        return start, max(start, stop)

    def read(self, field: str, start: int | None = 0, stop: int | None = None) -> NDArray:
        """Frames ``start:stop`` (Python slice rules, within the committed frames) of ``field``:
        shape (stop - start, ...) and the field's dtype (strings as a numpy str array)."""
        self._check_field(field)
        start, stop = self._range(start, stop)
        dataset = self._datasets[field]
        if FIELDS[field].dtype == "str":
            values = dataset.asstr()[start:stop]
            return np.asarray(values.tolist(), dtype=str).reshape(values.shape)
        return dataset[start:stop]

    def frame(self, index: int, fields: Sequence[str] | None = None) -> dict[str, NDArray]:
        """One frame: field -> array without the frame axis."""
        index = self._index(index)
        return {name: self.read(name, index, index + 1)[0] for name in self._fields(fields)}

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -self._len <= index < self._len:
            raise IndexError(f"index: {index!r} is outside the {self._len} committed frames")
        return int(index) % self._len

    def _fields(self, fields: Sequence[str] | None) -> tuple[str, ...]:
        if fields is None:
            return self.fields
        if isinstance(fields, str):
            fields = (fields,)
        for name in fields:
            self._check_field(name)
        return tuple(fields)

    def frames(self, batch_size: int = 256, fields: Sequence[str] | None = None, start: int | None = 0,
               stop: int | None = None) -> Iterator[dict[str, NDArray]]:
        """Stream frames ``start:stop`` in batches: dicts field -> (B, ...) array, B <= ``batch_size``.

        Only one batch is in memory at a time."""
        _check_count(batch_size, "batch_size", 1)
        names = self._fields(fields)
        first, last = self._range(start, stop)
        for begin in range(first, last, batch_size):
            end = min(begin + batch_size, last)
            yield {name: self.read(name, begin, end) for name in names}

    def views(self, index: int) -> Views:
        """Frame ``index`` as a :class:`Views`: heatmaps (C, J, K, 4), pose3d_epi_pred (C, J, 3), bboxes (C, 4)."""
        frame = self.frame(index, ("heatmaps", "pose3d_epi_pred", "bboxes"))
        return Views(frame["heatmaps"], frame["pose3d_epi_pred"], frame["bboxes"], self.camera_names, self.skeleton)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DatasetReader({str(self.path)!r}: {self._len} frames, C={self.num_cameras}, J={self.num_joints}, "
                f"K={self.num_components}, skeleton {self.skeleton.name!r}, fields {list(self.fields)})")


def committed_frames(path: str | os.PathLike) -> int:
    """The committed frame count of a dataset file, readable while another process writes it."""
    with h5py.File(path, "r", locking=False) as handle:
        if handle.attrs.get("format") != FORMAT_NAME:
            raise ValueError(f"{path}: not a metapose-geom dataset")
        return int(handle.attrs["frames_committed"])


# --------------------------------------------------------------------------- synthetic build

#: every field the synthetic build writes
SYNTHETIC_FIELDS: tuple[str, ...] = tuple(FIELDS)


def split_seed(seed: int, split: str) -> int:
    """The scene seed of a split: ``SPLIT_SEED_OFFSETS[split] + seed``."""
    _check_count(seed, "seed", 0)
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"split: expected one of {list(SPLIT_SEED_OFFSETS)}, got {split!r}")
    return SPLIT_SEED_OFFSETS[split] + int(seed)


def dataset_path(out: str | os.PathLike, split: str, num_cameras: int) -> Path:
    """``{out}/synthetic_{split}_{C}cam.h5``."""
    return Path(out) / f"synthetic_{split}_{num_cameras}cam.h5"


def _make_frame(seed: int, index: int, num_cameras: int, num_components: int) -> synth.Scene:
    """Frame ``index`` of a file with scene seed ``seed``: depends on these numbers alone."""
    return synth.make_scene(np.random.default_rng([seed, index]), num_cameras, num_components)


def _scene_fields(scene: synth.Scene, seed: int, index: int) -> dict[str, NDArray]:
    mixtures = scene.mixtures
    weights = mixtures[..., 0:1]
    centre = -np.einsum("cji,cj->ci", scene.rotation, scene.translation)  # -R^T t
    return {
        "heatmaps": mixtures,
        "pose2d_pred": (weights * mixtures[..., 1:3]).sum(axis=2) / weights.sum(axis=2),
        "pose3d_epi_pred": scene.mono3d,
        "bboxes": scene.boxes,
        "keys": np.array([f"synthetic/seed{seed}/frame{index:07d}/{camera}" for camera in scene.camera_names],
                         dtype=object),
        "pose3d": scene.pose3d,
        "cam_rot": scene.rotation,
        "cam_pose3d": centre,
        "cam_intr": scene.intrinsics,
        "cam_kd": scene.distortion,
        "cam_image_size": scene.image_size,
        "pose2d_gt": scene.pose2d_box_units(),
        "pose2d_repr": scene.weak_labels(),
        "occluded": scene.occluded,
        "confused": scene.confused,
    }


def synthetic_frames(seed: int, start: int, stop: int, num_cameras: int, num_components: int = 4,
                     options: RefineOptions | None = None) -> dict[str, NDArray]:
    """Frames ``start:stop`` of a synthetic file with scene seed ``seed``: every field of
    :data:`FIELDS`, leading axis ``stop - start``, including stage 1 and IR (``options``, default
    :class:`RefineOptions`) solved with :func:`~metapose_geom.solve_batch` over all cores."""
    _check_count(start, "start", 0)
    _check_count(stop, "stop", start + 1)
    options = options or RefineOptions()
    per_frame = []
    views = []
    for index in range(start, stop):
        scene = _make_frame(seed, index, num_cameras, num_components)
        per_frame.append(_scene_fields(scene, seed, index))
        views.append(scene.views())
    out = {name: np.stack([frame[name] for frame in per_frame]) for name in per_frame[0]}
    for method in ("s1", "ir"):
        solutions = solve_batch(views, method=method, options=options, progress=False)
        out[f"{method}_pose3d"] = np.stack([s.pose3d for s in solutions])
        out[f"{method}_x"] = np.stack([s.x for s in solutions])
        out[f"{method}_objective"] = np.array([s.objective for s in solutions])
        if method == "ir":
            out["ir_reprojection"] = np.stack([s.reprojection for s in solutions])
            out["ir_cam_rot"] = np.stack([s.cameras.rotation for s in solutions])
            out["ir_cam_scale"] = np.stack([s.cameras.scale for s in solutions])
            out["ir_cam_shift"] = np.stack([s.cameras.shift for s in solutions])
    return out


def _build_attrs(seed: int, num_components: int, options: RefineOptions, split: str | None) -> dict[str, Any]:
    from . import __version__

    attrs = {
        "generator": "metapose_geom.synth.make_scene(np.random.default_rng([seed, frame]), "
                     "num_cameras, num_components)",
        "seed": int(seed),
        "scene_options": json.dumps({"num_components": int(num_components)}, sort_keys=True),
        "solver_options": json.dumps(dataclasses.asdict(options), sort_keys=True),
        "metapose_geom_version": __version__,
    }
    if split is not None:
        attrs["split"] = split
    return attrs


def build_synthetic_dataset(
    path: str | os.PathLike,
    num_frames: int,
    num_cameras: int,
    seed: int,
    *,
    split: str | None = None,
    num_components: int = 4,
    chunk: int = 256,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build (or finish) one synthetic file of ``num_frames`` frames with scene seed ``seed``.

    Frames are computed and committed ``chunk`` at a time (:func:`synthetic_frames`). An existing
    file from the same parameters is resumed: its committed frames are kept, the rest computed;
    a file from other parameters raises ValueError (``overwrite=True`` starts afresh). A file
    that HDF5 cannot open at all (a kill during a flush can leave one) is moved aside to
    ``*.corrupt`` with a warning and rebuilt. Returns the path.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    _check_count(num_frames, "num_frames", 0)
    _check_count(num_cameras, "num_cameras", 2)
    _check_count(seed, "seed", 0)
    _check_count(chunk, "chunk", 1)
    options = RefineOptions()
    common = dict(
        num_cameras=num_cameras, fields=SYNTHETIC_FIELDS, num_components=num_components,
        attrs=_build_attrs(seed, num_components, options, split), frames_planned=num_frames,
        chunk_frames=_storage_chunk(chunk),
    )
    mode = "w" if overwrite else "a"
    try:
        writer = DatasetWriter(path, mode=mode, **common)
    except OSError as error:
        if not path.exists() or isinstance(error, FileExistsError):
            raise
        aside = path.with_name(path.name + ".corrupt")
        warnings.warn(f"{path} could not be opened ({error}); moved to {aside}, rebuilding", RuntimeWarning,
                      stacklevel=2)
        os.replace(path, aside)
        writer = DatasetWriter(path, mode="x", **common)
    with writer, tqdm(total=num_frames, initial=writer.frames_committed, desc=path.name, unit="frame",
                      disable=not progress, dynamic_ncols=True) as bar:
        while writer.frames_committed < num_frames:
            start = writer.frames_committed
            stop = min(start + chunk, num_frames)
            writer.append(synthetic_frames(seed, start, stop, num_cameras, num_components, options))
            bar.update(stop - start)
    return path


def _storage_chunk(chunk: int) -> int:
    """HDF5 chunk rows for appends of ``chunk`` frames: a divisor of it, at most MAX_STORAGE_CHUNK,
    so that appends fill whole chunks (falls back to MAX_STORAGE_CHUNK when only small divisors exist)."""
    if chunk <= MAX_STORAGE_CHUNK:
        return chunk
    best = max(d for d in range(1, MAX_STORAGE_CHUNK + 1) if chunk % d == 0)
    return best if best >= 16 else MAX_STORAGE_CHUNK


def make_datasets(
    out: str | os.PathLike,
    train_frames: int = 4000,
    test_frames: int = 1000,
    cameras: Sequence[int] = (2, 3, 4),
    seed: int = 0,
    *,
    num_components: int = 4,
    chunk: int = 256,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Synthetic train and test sets for each camera count: ``{out}/synthetic_{split}_{C}cam.h5``.

    Train frames come from scene seed ``split_seed(seed, "train")``, test frames from
    ``split_seed(seed, "test")``; a split with 0 frames is skipped. Interrupted builds resume
    (:func:`build_synthetic_dataset`). Returns the paths written, train files first.
    """
    _check_count(train_frames, "train_frames", 0)
    _check_count(test_frames, "test_frames", 0)
    cameras = list(cameras)
    if not cameras:
        raise ValueError("cameras: expected at least one camera count")
    for count in cameras:
        _check_count(count, "cameras", 2)
        if count > 8:
            raise ValueError(f"cameras: expected camera counts in [2, 8], got {count}")
    paths = []
    for split, frames in (("train", train_frames), ("test", test_frames)):
        if frames == 0:
            continue
        for count in cameras:
            paths.append(build_synthetic_dataset(
                dataset_path(out, split, count), frames, count, split_seed(seed, split), split=split,
                num_components=num_components, chunk=chunk, overwrite=overwrite, progress=progress,
            ))
    return paths


def _check_count(value, name: str, low: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
