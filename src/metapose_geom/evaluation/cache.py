"""AniPose's results on disk: an evaluation keeps each batch's result as it comes in, so that an
interrupted run, or a later run with more frames, solves only what is not there yet.

A result is found by a hash of everything it depends on (the points, the start cameras, the
switches, the seed and the versions of the adapter, aniposelib, OpenCV and scipy), so a changed
dataset or setting is solved afresh, and a record cut short by a kill is dropped. A frame taken
from the cache keeps the time it was measured with.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..geometry import PerspectiveCameras

F64 = NDArray[np.float64]

__all__ = ["ANIPOSE_CACHE_NAME", "AniPoseCache", "Batch", "anipose_versions"]

#: The file in the output folder of :func:`~metapose_geom.evaluation.run_evaluation` that keeps
#: AniPose's results.
ANIPOSE_CACHE_NAME = "anipose-cache.bin"


class Batch(Protocol):
    """What a cached result depends on: one AniPose batch's inputs
    (:class:`~metapose_geom.evaluation.anipose_runs.AniPoseTask`)."""

    points: F64  #: (n, k, J, 2) px
    start: PerspectiveCameras
    adjust_intrinsics: bool
    seed: int


def anipose_versions() -> str:
    """The versions an AniPose result depends on: the adapter's and those of its libraries."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import anipose

    found = [f"adapter {anipose.ADAPTER_VERSION}"]
    for package in ("aniposelib", "opencv-contrib-python", "opencv-python", "opencv-python-headless", "scipy"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


class AniPoseCache:
    """AniPose results on disk, appended one record per batch as they come in.

    A record is ``key (32 bytes) | n, J (int64) | seconds (float64) | pose (n, J, 3) float64``,
    little-endian; ``key`` is :meth:`key` of the batch. Opening reads every whole record and cuts
    off a partial one at the end (a run killed while writing), so appends stay aligned.
    """

    MAGIC = b"metapose-geom anipose cache 1\n"
    _HEAD = struct.Struct("<32sqqd")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.results: dict[bytes, tuple[F64, float]] = {}
        self.hits = 0  #: batches :meth:`get` found
        self._versions = anipose_versions()
        blob = self.path.read_bytes() if self.path.exists() else b""
        if len(blob) < len(self.MAGIC) and self.MAGIC.startswith(blob):  # new, or killed while starting it
            self.path.write_bytes(self.MAGIC)
            blob = self.MAGIC
        if not blob.startswith(self.MAGIC):
            raise ValueError(f"cache: {self.path} is not an AniPose cache of metapose-geom (delete it or pass another)")
        offset = len(self.MAGIC)
        while offset + self._HEAD.size <= len(blob):
            key, n, joints, seconds = self._HEAD.unpack_from(blob, offset)
            end = offset + self._HEAD.size + 8 * 3 * n * joints
            if n < 1 or joints < 1 or end > len(blob):
                break
            pose = np.frombuffer(blob, dtype="<f8", count=3 * n * joints, offset=offset + self._HEAD.size)
            self.results[key] = (pose.reshape(n, joints, 3).astype(np.float64), float(seconds))
            offset = end
        if offset < len(blob):  # a record cut short: drop it
            with self.path.open("r+b") as handle:
                handle.truncate(offset)
        self._handle = self.path.open("ab")
        try:
            import fcntl

            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            self._handle.close()
            raise ValueError(f"cache: {self.path} is in use by another run (give each run its own --cache)") from None

    def key(self, task: Batch) -> bytes:
        """SHA-256 of everything the batch's result depends on: the points, the start cameras, the
        switches, the seed, and the versions of this adapter, aniposelib, OpenCV and scipy."""
        digest = hashlib.sha256(f"{self._versions}; {task.adjust_intrinsics}; {task.seed}".encode())
        for array in (task.points, *task.start):
            array = np.ascontiguousarray(array, dtype="<f8")
            digest.update(repr(array.shape).encode())
            digest.update(array.tobytes())
        return digest.digest()

    def get(self, key: bytes, task: Batch) -> tuple[F64, float] | None:
        """(pose (n, J, 3), seconds) of the batch ``task`` whose :meth:`key` is ``key``, if solved before."""
        found = self.results.get(key)
        if found is None or found[0].shape[:2] != (task.points.shape[0], task.points.shape[2]):
            return None
        self.hits += 1
        return found

    def put(self, key: bytes, pose: F64, seconds: float) -> None:
        """Append the result of the batch whose :meth:`key` is ``key`` and flush it to disk."""
        pose = np.ascontiguousarray(pose, dtype="<f8")
        n, joints = pose.shape[:2]
        self._handle.write(self._HEAD.pack(key, n, joints, float(seconds)) + pose.tobytes())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.results[key] = (pose.astype(np.float64), float(seconds))

    def __len__(self) -> int:
        return len(self.results)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> AniPoseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
