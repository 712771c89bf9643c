"""Solution files: one method's results for every frame of a dataset file, committed chunk by chunk.

What :func:`metapose_geom.distributed.solve_dataset` writes (and anyone may write with
:class:`SolutionWriter`). A dataset file keeps its inputs; its solutions go to a file of their own,
so that solving a dataset never rewrites (or copies) its evidence, and several methods' results
can sit beside one dataset. The layout (N frames of C cameras and J joints; P = 3 J + 10 C, the
solution vector's length; ``PREFIX`` is the method name unless the writer is given another):

=======================  ==============  =======  =====  ==================================================
field                    shape           dtype    units  contents (:class:`~metapose_geom.BatchSolution`)
=======================  ==============  =======  =====  ==================================================
keys                     (N, C)          str      -      the dataset's ``keys``, copied (which frame is which)
PREFIX_pose3d            (N, J, 3)       float64  box    ``pose3d``, camera 0's weak frame
PREFIX_x                 (N, P)          float64  -      ``x`` ``[pose | rot6d | scale_raw | shift]``
PREFIX_objective         (N,)            float64  -      ``objective`` at the solution
PREFIX_reprojection      (N, C, J, 2)    float64  box    ``reprojection``
PREFIX_cam_rot           (N, C, 3, 3)    float64  -      ``cameras.rotation`` (camera 0 is I)
PREFIX_cam_scale         (N, C)          float64  -      ``cameras.scale`` (camera 0 is 1)
PREFIX_cam_shift         (N, C, 3)       float64  box    ``cameras.shift``
PREFIX_diverged          (N,)            bool     -      ``diverged``: the refiner ended above its start
=======================  ==============  =======  =====  ==================================================

The names are the dataset format's ``ir_*`` fields (:mod:`.schema`) with the method's prefix, so
``ir_pose3d`` here and in a make-dataset file hold the same thing. Frame i of the solution file is
frame i of the dataset.

File attributes: ``format`` (``"metapose-geom-solutions"``), ``format_version``, ``method``,
``prefix``, ``options`` (the method's resolved options as canonical JSON), ``source`` (JSON: the
dataset's path, frame count, C, J, K, skeleton, its attributes and a digest of its first and last
frames' evidence), ``num_cameras``, ``num_joints``, ``frames_planned`` and ``frames_committed``.
``method``, ``prefix``, ``options`` and ``source`` are the file's *identity*: appending (resuming)
with another identity is refused (ValueError naming what differs).

Safety, as :class:`~metapose_geom.datasets.DatasetWriter`: the file is built under
``NAME.creating`` (locked, removed on failure) and renamed into place; each chunk is written,
flushed, then committed by raising ``frames_committed`` and flushing again; readers see committed
frames only, and reopening for appending truncates every field to them. A file held by another
writer is refused ("in use") and left as it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from .._checks import check_int
from ..layout import solution_size
from .files import ClaimedWriter, DatasetInUseError, claim_writer, creating, explain_open_failure, publish

__all__ = ["SOLUTIONS_FORMAT", "SOLUTIONS_VERSION", "SolutionReader", "SolutionWriter", "solution_fields"]

SOLUTIONS_FORMAT = "metapose-geom-solutions"
SOLUTIONS_VERSION = 1
#: the identity attributes (JSON strings but the first two)
IDENTITY = ("method", "prefix", "options", "source")
#: frames per HDF5 chunk
_STORAGE_CHUNK = 256
_SUFFIXES = {  # suffix: (per-frame shape symbols, dtype)
    "pose3d": ("J 3", "float64"), "x": ("P", "float64"), "objective": ("", "float64"),
    "reprojection": ("C J 2", "float64"), "cam_rot": ("C 3 3", "float64"), "cam_scale": ("C", "float64"),
    "cam_shift": ("C 3", "float64"), "diverged": ("", "bool"),
}


def solution_fields(prefix: str, num_cameras: int, num_joints: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Field name -> (per-frame shape, dtype) of a solution file: ``keys`` and ``PREFIX_*``."""
    dims = {"C": num_cameras, "J": num_joints, "P": solution_size(num_cameras, num_joints)}
    fields = {"keys": ((num_cameras,), "str")}
    for suffix, (symbols, dtype) in _SUFFIXES.items():
        fields[f"{prefix}_{suffix}"] = (tuple(dims[s] if s in dims else int(s) for s in symbols.split()), dtype)
    return fields


def _dtype(kind: str):
    return h5py.string_dtype("utf-8") if kind == "str" else np.dtype(kind)


class SolutionWriter(ClaimedWriter):
    """Create or resume a solution file and append committed chunks to it.

    Args:
        path: the ``.h5`` file.
        identity: ``{"method": str, "prefix": str, "options": str, "source": str}`` (the last two
            JSON); with ``resume`` and an existing file they must equal the stored ones.
        num_cameras, num_joints: C (>= 2) and J (>= 1).
        frames_planned: N, the dataset's frame count.
        resume: append to an existing file (truncated to its committed frames); False refuses
            an existing file (FileExistsError).

    Raises ValueError naming what differs when resuming a file of another identity or layout;
    :class:`~metapose_geom.datasets.DatasetInUseError` when another writer holds it.
    """

    def __init__(self, path: str | os.PathLike, identity: Mapping[str, str], num_cameras: int, num_joints: int,
                 frames_planned: int, *, resume: bool = True) -> None:
        self._file: h5py.File | None = None
        self._claim: str | None = None
        self.path = Path(path)
        missing = [key for key in IDENTITY if not isinstance(identity.get(key), str)]
        if missing:
            raise ValueError(f"identity: expected strings for {list(IDENTITY)}, missing or not a string: {missing}")
        self.identity = {key: identity[key] for key in IDENTITY}
        self.num_cameras = check_int(num_cameras, "num_cameras", 2)
        self.num_joints = check_int(num_joints, "num_joints", 1)
        self.frames_planned = check_int(frames_planned, "frames_planned", 0)
        self.fields = solution_fields(self.identity["prefix"], self.num_cameras, self.num_joints)
        self._claim = claim_writer(self.path)
        try:
            if self.path.exists():
                if not resume:
                    raise FileExistsError(f"{self.path} exists; resume it, or remove it to start over")
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with creating(self.path) as temporary:
                    self._build(temporary)
                    publish(temporary, self.path, replace=False)
            try:
                self._file = h5py.File(self.path, "r+")
            except OSError as error:
                raise explain_open_failure(self.path, error, writing=True) from error
            self._committed = self._reopen()
        except BaseException:
            self.close()
            raise

    def _build(self, temporary: Path) -> None:
        with h5py.File(temporary, "w", locking=False) as handle:  # creating() holds the lock
            handle.attrs.update({"format": SOLUTIONS_FORMAT, "format_version": SOLUTIONS_VERSION, **self.identity,
                                 "num_cameras": self.num_cameras, "num_joints": self.num_joints,
                                 "frames_planned": self.frames_planned, "frames_committed": 0})
            for name, (shape, kind) in self.fields.items():
                handle.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=_dtype(kind),
                                      chunks=(_STORAGE_CHUNK, *shape), compression="gzip", compression_opts=4,
                                      shuffle=True)

    def _reopen(self) -> int:
        attrs = self._file.attrs
        if attrs.get("format") != SOLUTIONS_FORMAT:
            raise ValueError(f"{self.path}: not a metapose-geom solution file (format = {attrs.get('format')!r}); "
                             "give another --out")
        differs = []
        for key in IDENTITY:
            stored = attrs.get(key)
            if stored != self.identity[key]:
                differs.append(f"{key}: the file has {stored}, this run {self.identity[key]}")
        for key, mine in (("num_cameras", self.num_cameras), ("num_joints", self.num_joints),
                          ("frames_planned", self.frames_planned)):
            if int(attrs.get(key, -1)) != mine:
                differs.append(f"{key}: the file has {attrs.get(key)}, this run {mine}")
        if sorted(self._file.keys()) != sorted(self.fields):
            differs.append(f"fields: the file has {sorted(self._file.keys())}, this run {sorted(self.fields)}")
        if differs:
            raise ValueError(f"{self.path}: written by another run (" + "; ".join(differs) + "); resume it with the "
                             "same method, options and input, or write to another file")
        committed = int(attrs["frames_committed"])
        return self._drop_uncommitted(committed)

    def append(self, chunk: Mapping[str, Any]) -> int:
        """Write n frames (every field, leading axis n) after the committed ones and commit them;
        returns the new committed count. ValueError naming the field for a missing field, a wrong
        shape or dtype, or a chunk that would pass ``frames_planned``; nothing is written then."""
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        arrays = {}
        for name, (shape, kind) in self.fields.items():
            if name not in chunk:
                raise ValueError(f"{name}: missing from the chunk; expected {list(self.fields)}")
            array = np.asarray(chunk[name])
            if array.shape[1:] != shape or (kind == "float64" and array.dtype != np.float64) or (
                    kind == "bool" and array.dtype != np.bool_) or (kind == "str" and array.dtype.kind not in "UO"):
                raise ValueError(f"{name}: expected (n, {', '.join(map(str, shape))}) {kind}, got {array.shape} "
                                 f"{array.dtype}")
            arrays[name] = array.astype(object) if kind == "str" else array
        counts = {array.shape[0] for array in arrays.values()}
        if len(counts) != 1:
            raise ValueError(f"chunk: fields have different frame counts {sorted(counts)}")
        count = counts.pop()
        start, stop = self._committed, self._committed + count
        if stop > self.frames_planned:
            raise ValueError(f"chunk: {count} frames after {start} pass the {self.frames_planned} planned")
        for name, array in arrays.items():
            dataset = self._file[name]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = array
        self._file.flush()  # the data are on disk before the commit says so
        self._file.attrs["frames_committed"] = stop
        self._file.flush()
        self._committed = stop
        return stop


class SolutionReader:
    """Read a solution file: ``len(reader)`` committed frames, :meth:`read` one field, and the
    identity (``method``, ``prefix``, ``options`` and ``source`` as Python values).

    ``locking=False`` reads a file another process is writing (its frames committed when opened)."""

    def __init__(self, path: str | os.PathLike, locking: bool | None = None) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r", locking=locking)
        except OSError as error:
            explained = explain_open_failure(self.path, error, writing=False, locking=locking is not False)
            if isinstance(explained, DatasetInUseError):
                explained = DatasetInUseError(f"{explained}; or pass locking=False to read the frames committed so far")
            raise explained from error
        attrs = self._file.attrs
        if attrs.get("format") != SOLUTIONS_FORMAT:
            self._file.close()
            raise ValueError(f"{self.path}: not a metapose-geom solution file (format = {attrs.get('format')!r})")
        self.method: str = str(attrs["method"])
        self.prefix: str = str(attrs["prefix"])
        self.options: dict[str, Any] = json.loads(attrs["options"])
        self.source: dict[str, Any] = json.loads(attrs["source"])
        self.num_cameras, self.num_joints = int(attrs["num_cameras"]), int(attrs["num_joints"])
        self.frames_planned: int = int(attrs["frames_planned"])
        self.fields: tuple[str, ...] = tuple(solution_fields(self.prefix, self.num_cameras, self.num_joints))
        self._len = int(attrs["frames_committed"])

    def __len__(self) -> int:
        return self._len

    @property
    def complete(self) -> bool:
        """Every planned frame is committed."""
        return self._len >= self.frames_planned

    def read(self, field: str, start: int = 0, stop: int | None = None) -> NDArray:
        """Frames ``start:stop`` (within the committed ones) of ``field``: (n, ...) float64, bool or str."""
        if field not in self.fields:
            raise ValueError(f"field: {field!r} is not in this file; it has {list(self.fields)}")
        start, stop, _ = slice(start, stop).indices(self._len)
        dataset = self._file[field]
        if field == "keys":
            values = dataset.asstr()[start:max(start, stop)]
            return np.asarray(values.tolist(), dtype=str).reshape(values.shape)
        return dataset[start:max(start, stop)]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SolutionReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
