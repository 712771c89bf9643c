"""Reading and writing dataset files (HDF5, h5py): a validating writer that commits chunk by chunk,
and a lazy reader. The format is :mod:`metapose_geom.datasets.schema`.

Commit protocol. :class:`DatasetWriter` appends a chunk of frames by growing every dataset,
writing the data and flushing the file; only then does it raise ``frames_committed`` and flush
again (the commit point). Readers see ``frames_committed`` frames and nothing beyond, so a chunk
interrupted before its commit (an exception, a kill) never looks complete; reopening for appending
(``mode="a"``) truncates every dataset back to the committed count. A new file is built under a
temporary name (``NAME.creating``, locked while it is built, removed if the build fails) and renamed
into place, so a file at the final name always has its structure.

Concurrent access (:mod:`.files`). One process has at most one writer per file: a second
:class:`DatasetWriter` of the same path is refused (:class:`DatasetInUseError`), as HDF5's file lock
refuses a writer in another process while any reader or writer holds the file. A file that is held
or cannot be written is never changed: the error says "in use" or "not writable"; one HDF5 cannot
open at all raises :class:`DamagedFileError`. A reader that must look at a file while another
process writes it passes ``locking=False`` and sees the frames committed when it opened.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from .._checks import check_choice, check_int
from ..skeletons import H36M_17, Skeleton
from ..views import Views
from .files import (
    ClaimedWriter, DamagedBlockError, DamagedFileError, DatasetInUseError, claim_writer, creating,
    explain_open_failure, publish,
)
from .schema import (
    FIELDS, FORMAT_NAME, FORMAT_VERSION, MAX_STORAGE_CHUNK, REQUIRED_FIELDS, RESERVED_ATTRS, check_chunk_field,
    check_file, field_shape, h5_dtype, known_field, user_attrs,
)

__all__ = ["DamagedBlockError", "DamagedFileError", "DatasetInUseError", "DatasetReader", "DatasetWriter",
           "committed_frames"]


class DatasetWriter(ClaimedWriter):
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
        attrs: extra file attributes (str, int within 64 bits, float or bool). With ``mode="a"`` on
            an existing file they must equal the stored ones (the file's identity, e.g. a build's
            parameters).
        frames_planned: the number of frames the file is meant to reach (stored, updated on
            reopening); None leaves it unset.
        camera_names: C names (default ``cam0``..); stored.
        chunk_frames: frames per HDF5 chunk.
        compression: ``"gzip"`` (level 4, with shuffle), ``"lzf"`` (with shuffle) or None.

    :meth:`append` takes a mapping field -> array with a leading axis of n frames and the shapes
    and dtypes of :data:`FIELDS`; it validates everything before writing anything.

    Raises :class:`DatasetInUseError` ("in use") when another writer in this process, or a reader
    or writer in another process, holds the file (or another run is creating it);
    PermissionError ("not writable") when the file or its folder cannot be written;
    :class:`DamagedFileError` (``mode="a"``) when HDF5 cannot open the existing file at all. In
    each case the file is left as it was.

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
        self._claim: str | None = None
        self.path = Path(path)
        check_int(num_cameras, "num_cameras", 2)
        check_int(num_components, "num_components", 1)
        check_int(chunk_frames, "chunk_frames", 1)
        if frames_planned is not None:
            check_int(frames_planned, "frames_planned", 0)
        if not isinstance(skeleton, Skeleton):
            raise ValueError(f"skeleton: expected a Skeleton, got {type(skeleton).__name__}")
        check_choice(mode, "mode", ("x", "w", "a"))
        if compression is not None:
            check_choice(compression, "compression", ("gzip", "lzf"))
        wanted = set(REQUIRED_FIELDS) | {known_field(f).name for f in (fields or ())}
        self.fields: tuple[str, ...] = tuple(f for f in FIELDS if f in wanted)
        self.num_cameras, self.num_components, self.skeleton = int(num_cameras), int(num_components), skeleton
        names = tuple(camera_names) if camera_names is not None else tuple(f"cam{c}" for c in range(num_cameras))
        if len(names) != num_cameras or len(set(names)) != num_cameras or not all(isinstance(n, str) for n in names):
            raise ValueError(f"camera_names: expected {num_cameras} distinct strings, got {names}")
        self.camera_names = names
        attrs = dict(attrs or {})
        for key, value in attrs.items():
            if key in RESERVED_ATTRS:
                raise ValueError(f"attrs: {key!r} is reserved by the format")
            if not isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
                raise ValueError(f"attrs: {key!r} must be a str, int, float or bool, got {type(value).__name__}")
            if isinstance(value, (int, np.integer)) and not -(2**63) <= value < 2**64:
                raise ValueError(f"attrs: {key!r} = {value} does not fit in 64 bits")
        self._shapes = {f: field_shape(f, num_cameras, skeleton.num_joints, num_components) for f in self.fields}

        self._claim = claim_writer(self.path)  # one writer per file in this process
        try:
            if mode == "a" and self.path.exists():
                self._file = self._open()
                self._committed = self._reopen(attrs, frames_planned)
            else:
                if mode == "x" and self.path.exists():
                    raise FileExistsError(f"{self.path} exists; use mode='w' to overwrite or 'a' to append")
                self._create(attrs, frames_planned, chunk_frames, compression, replace=mode == "w")
                self._file = self._open()
                self._committed = 0
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _open(self) -> h5py.File:
        """The file for reading and writing (HDF5's lock taken); the errors of :func:`explain_open_failure`."""
        try:
            return h5py.File(self.path, "r+")
        except OSError as error:
            raise explain_open_failure(self.path, error, writing=True) from error

    def _create(self, attrs: dict, frames_planned, chunk_frames: int, compression: str | None, replace: bool) -> None:
        """Build the empty file under a temporary name (locked, removed on failure), then rename it
        into place: over an existing file only when ``replace`` and nobody holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError as error:
            raise PermissionError(f"{self.path.parent}: not writable ({error.strerror or error})") from None
        except OSError as error:
            if error.errno == errno.EROFS:
                raise PermissionError(f"{self.path.parent}: not writable ({error.strerror})") from None
            raise
        with creating(self.path) as temporary:
            self._build(temporary, attrs, frames_planned, chunk_frames, compression)
            publish(temporary, self.path, replace)

    def _build(self, temporary: Path, attrs: dict, frames_planned, chunk_frames: int, compression: str | None) -> None:
        # the temporary file is locked by creating(); HDF5's own lock would conflict with it
        with h5py.File(temporary, "w", locking=False) as handle:
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
                    name, shape=(0, *shape), maxshape=(None, *shape), dtype=h5_dtype(spec),
                    chunks=(chunk_frames, *shape) if shape else (chunk_frames,), **options,
                )
                dataset.attrs["units"] = spec.units
                dataset.attrs["description"] = spec.description

    def _reopen(self, attrs: dict, frames_planned) -> int:
        layout = check_file(self._file, None, self.path)
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
        stored = user_attrs(self._file.attrs)
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
        return self._drop_uncommitted(committed)

    # ------------------------------------------------------------------ writing

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
        arrays = {name: check_chunk_field(name, chunk[name], self._shapes[name]) for name in self.fields}
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
    an unknown or unexpected skeleton, or a field of the wrong shape or dtype (naming the field);
    FileNotFoundError, :class:`DatasetInUseError` (a writer in another process holds it: pass
    ``locking=False``) or :class:`DamagedFileError` (HDF5 cannot open it) when it cannot be opened.
    A stored block that cannot be read (decompressed) raises :class:`DamagedBlockError` naming the
    field and its frames when it is read.

    ``len(reader)`` is the number of committed frames; :meth:`read` gives one field over a frame
    range, :meth:`frames` streams batches, :meth:`views` builds one frame's :class:`Views`.
    """

    def __init__(self, path: str | os.PathLike, skeleton: Skeleton | None = None, locking: bool | None = None,
                 cache_bytes: int = 32 << 20) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r", locking=locking, rdcc_nbytes=int(cache_bytes), rdcc_nslots=10007)
        except OSError as error:
            explained = explain_open_failure(self.path, error, writing=False, locking=locking is not False)
            if isinstance(explained, DatasetInUseError):
                explained = DatasetInUseError(f"{explained}; or pass locking=False to read the frames committed so far")
            raise explained from error
        try:
            layout = check_file(self._file, skeleton, self.path)
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
        self.attrs: dict[str, Any] = user_attrs(self._file.attrs)
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

    def block_frames(self, field: str) -> int:
        """Frames per stored block (HDF5 chunk) of ``field``: what one damaged block loses."""
        self._check_field(field)
        dataset = self._datasets[field]
        return int(dataset.chunks[0]) if dataset.chunks else max(1, int(dataset.shape[0]))

    def read(self, field: str, start: int | None = 0, stop: int | None = None) -> NDArray:
        """Frames ``start:stop`` (Python slice rules, within the committed frames) of ``field``:
        shape (stop - start, ...) and the field's dtype (strings as a numpy str array).

        Raises :class:`DamagedBlockError` naming the field and the frames of the first stored
        block in the range that cannot be read."""
        self._check_field(field)
        start, stop = self._range(start, stop)
        try:
            return self._read(field, start, stop)
        except OSError as error:
            raise self._damaged_block(field, start, stop, error) from error

    def _read(self, field: str, start: int, stop: int) -> NDArray:
        dataset = self._datasets[field]
        if FIELDS[field].dtype == "str":
            values = dataset.asstr()[start:stop]
            return np.asarray(values.tolist(), dtype=str).reshape(values.shape)
        return dataset[start:stop]

    def _damaged_block(self, field: str, start: int, stop: int, error: OSError) -> OSError:
        """The first block of frames ``start:stop`` of ``field`` that cannot be read, as an error."""
        rows = self.block_frames(field)
        for begin in range(start - start % rows, stop, rows):
            block_stop = min(begin + rows, self._len)
            try:
                self._read(field, begin, block_stop)
            except OSError as found:
                reason = " ".join(str(found).split())
                return DamagedBlockError(f"{self.path}: {field}: frames {begin}-{block_stop - 1} cannot be read "
                                         f"(a damaged block: {reason})", field, begin, block_stop)
        return OSError(f"{self.path}: {field}: frames {start}-{stop - 1} cannot be read ({error})")

    def frame(self, index: int, fields: Sequence[str] | None = None) -> dict[str, NDArray]:
        """One frame: field -> array without the frame axis."""
        index = self._index(index)
        return {name: self.read(name, index, index + 1)[0] for name in self._fields(fields)}

    def _index(self, index: int) -> int:
        try:
            return check_int(index, "index", -self._len, self._len - 1) % self._len
        except ValueError:
            raise IndexError(f"index: {index!r} is outside the {self._len} committed frames") from None

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
        check_int(batch_size, "batch_size", 1)
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
    try:
        handle = h5py.File(path, "r", locking=False)
    except OSError as error:
        raise explain_open_failure(Path(path), error, writing=False, locking=False) from error
    with handle:
        if handle.attrs.get("format") != FORMAT_NAME:
            raise ValueError(f"{path}: not a metapose-geom dataset")
        return int(handle.attrs["frames_committed"])
