"""What the evaluation reads from a dataset file: the fields of its first N frames, the camera
subsets, each method's views of a frame and the ground-truth poses the errors are measured against.

Bad frames. A frame is bad when a stored block holding it cannot be read (decompressed), when a
field the methods read is not finite in it (in the cameras evaluated, for the fields per camera),
or when its evidence or ground truth is otherwise unusable (a box of zero width, for example).
:func:`load_data` records the unreadable ones and :meth:`EvaluationData.find_bad_frames` the
others, each with its reason (the field, and the camera where there is one); the evaluation stops
at the first one, or leaves them all out and counts them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from .._checks import check_choice, check_int
from ..datasets import FIELDS, DamagedBlockError, DatasetReader
from ..datasets.scenes import cameras_from_fields, scene_from_fields
from ..geometry import PerspectiveCameras
from ..skeletons import Skeleton
from ..synth import Scene
from ..views import Views
from .methods import NEEDED_FIELDS, MethodSpec

F64 = NDArray[np.float64]

__all__ = ["EvaluationData", "camera_subsets", "describe_bad_frames", "load_data"]

#: Read when the file has them: image sizes for the cameras, noise flags for the rebuilt scenes.
_OPTIONAL_FIELDS = ("cam_image_size", "occluded", "confused")
#: What Views calls the file's evidence fields, in its error messages.
_VIEWS_NAMES = {"mixtures": "heatmaps", "mono3d": "pose3d_epi_pred", "boxes": "bboxes"}


@dataclass(frozen=True)
class EvaluationData:
    """The fields of the first N frames of a dataset file that the methods need, in memory.

    ``frame_numbers`` are the frames' indices in the file (``0..N-1`` unless bad frames were left
    out, :meth:`without`); ``unreadable`` maps a file frame index to the reason it could not be
    read (its arrays hold NaN or False there)."""

    path: str
    skeleton: Skeleton
    num_cameras: int
    arrays: dict[str, NDArray]
    frame_numbers: NDArray[np.int64] | None = None
    unreadable: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frame_numbers is None:
            object.__setattr__(self, "frame_numbers", np.arange(self.num_frames))

    def __getitem__(self, name: str) -> NDArray:
        return self.arrays[name]

    @property
    def num_frames(self) -> int:
        return int(self.arrays["heatmaps"].shape[0])

    def frame(self, index: int) -> dict[str, NDArray]:
        """Frame ``index``'s fields, without the frame axis (views of the arrays)."""
        return {name: array[index] for name, array in self.arrays.items()}

    def cameras(self, frame: int, subset: tuple[int, ...]) -> PerspectiveCameras:
        """Frame ``frame``'s ground-truth cameras of ``subset`` in OpenCV form."""
        return cameras_from_fields(self.frame(frame), subset)

    def scene(self, frame: int, subset: tuple[int, ...]) -> Scene:
        """Frame ``frame`` seen by ``subset`` as a :class:`Scene`, rebuilt from the file's fields."""
        return scene_from_fields(self.frame(frame), self.skeleton, subset)

    def views(self, frame: int, subset: tuple[int, ...], spec: MethodSpec) -> Views:
        """What method ``spec`` sees of frame ``frame`` through the cameras ``subset``: the file's
        evidence, or the rebuilt scene's :meth:`~Scene.ablated_views` for an oracle."""
        if spec.ablation:
            return self.scene(frame, subset).ablated_views(**dict(spec.ablation))
        index = list(subset)
        names = tuple(f"cam{c}" for c in subset)
        return Views(self["heatmaps"][frame, index], self["pose3d_epi_pred"][frame, index],
                     self["bboxes"][frame, index], names, self.skeleton)

    def find_bad_frames(self, cameras: Sequence[int], needs: Collection[str]) -> dict[int, str]:
        """The bad frames seen through ``cameras`` (the union of the evaluated subsets) by methods of
        the kinds ``needs``: file frame index -> reason ("field: what is wrong", naming the camera
        of a per-camera field), unreadable ones included, in frame order."""
        cameras = sorted(set(cameras))
        names = tuple(f"cam{c}" for c in cameras)
        not_finite = self._not_finite(cameras)
        bad: dict[int, str] = {}
        for index, number in enumerate(self.frame_numbers.tolist()):
            reason = self.unreadable.get(number) or not_finite.get(index)
            if reason is None:
                try:
                    Views(self["heatmaps"][index, cameras], self["pose3d_epi_pred"][index, cameras],
                          self["bboxes"][index, cameras], names, self.skeleton)
                    if "oracle" in needs:
                        self.scene(index, tuple(cameras))
                except ValueError as error:
                    reason = _field_named(str(error))
            if reason is not None:
                bad[number] = reason
        return bad

    def _not_finite(self, cameras: list[int]) -> dict[int, str]:
        """Frame index -> "field: not finite (NaN or inf)[ in camera c]" for the first float field
        (in name order) with a NaN or inf in the frame, in ``cameras`` for the fields per camera."""
        found: dict[int, str] = {}
        for name, array in self.arrays.items():
            if array.dtype.kind != "f":
                continue
            per_camera = FIELDS[name].shape[:1] == ("C",)
            values = array[:, cameras] if per_camera else array
            finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
            for index in np.flatnonzero(~finite).tolist():
                if index in found:
                    continue
                if per_camera:
                    camera_finite = np.isfinite(values[index]).reshape(len(cameras), -1).all(axis=1)
                    camera = cameras[int(np.flatnonzero(~camera_finite)[0])]
                    found[index] = f"{name}: not finite (NaN or inf) in camera {camera}"
                else:
                    found[index] = f"{name}: not finite (NaN or inf)"
        return found

    def without(self, frames: Collection[int]) -> EvaluationData:
        """These data without the file frames ``frames``."""
        keep = np.flatnonzero(~np.isin(self.frame_numbers, list(frames)))
        kept = set(self.frame_numbers[keep].tolist())
        return EvaluationData(self.path, self.skeleton, self.num_cameras,
                              {name: array[keep] for name, array in self.arrays.items()}, self.frame_numbers[keep],
                              {number: reason for number, reason in self.unreadable.items() if number in kept})

    def truth(self, frames: int, subset: tuple[int, ...]) -> tuple[F64, F64]:
        """World pose (n, J, 3) and the pose in the subset's first camera (n, J, 3), mm, of the first
        ``frames`` frames."""
        world = self["pose3d"][:frames]
        first = subset[0]
        rotation = self["cam_rot"][:frames, first]
        in_camera = np.einsum("nab,njb->nja", rotation, world - self["cam_pose3d"][:frames, first][:, None, :])
        return world, in_camera


def load_data(path: str | os.PathLike, frames: int | None, needs: Collection[str]) -> EvaluationData:
    """The first ``frames`` frames (all when None) of a dataset file, with the fields the kinds of
    method in ``needs`` (keys of :data:`~metapose_geom.evaluation.methods.NEEDED_FIELDS`) read.

    Raises ValueError when the file has fewer frames or lacks a needed ground-truth field."""
    with DatasetReader(path) as reader:
        available = len(reader)
        if frames is None:
            frames = available
        if frames > available:
            raise ValueError(f"frames: asked for {frames}, but {path} has {available} committed frames")
        if frames < 1:
            raise ValueError(f"frames: expected at least 1 frame, {path} has {available}")
        needed = sorted({name for kind in needs for name in NEEDED_FIELDS[kind]})
        missing = [name for name in needed if name not in reader.fields]
        if missing:
            raise ValueError(f"{path}: the requested methods need the ground-truth field(s) {missing}, which the "
                             f"file lacks (metapose-geom make-dataset writes them)")
        wanted = {"heatmaps", "pose3d_epi_pred", "bboxes", *needed}
        wanted |= {name for name in _OPTIONAL_FIELDS if name in reader.fields}
        arrays, unreadable = {}, {}
        for name in sorted(wanted):
            arrays[name] = _read_blocks(reader, name, frames, unreadable)
        unreadable = dict(sorted(unreadable.items()))
        return EvaluationData(str(path), reader.skeleton, reader.num_cameras, arrays, unreadable=unreadable)


def _read_blocks(reader: DatasetReader, name: str, frames: int, unreadable: dict[int, str]) -> NDArray:
    """Frames ``0:frames`` of field ``name``; the frames of a stored block that cannot be read are
    NaN (False for flags) and recorded in ``unreadable`` (frame -> reason), the first reason kept."""
    try:
        return reader.read(name, 0, frames)
    except DamagedBlockError:
        pass
    shape = reader.shape(name)[1:]
    out = np.zeros((frames, *shape), dtype=bool) if FIELDS[name].dtype == "bool" else np.full((frames, *shape), np.nan)
    rows = reader.block_frames(name)
    for begin in range(0, frames, rows):
        stop = min(begin + rows, frames)
        try:
            out[begin:stop] = reader.read(name, begin, stop)
        except DamagedBlockError as error:
            detail = str(error).split("(a damaged block: ", 1)[-1].rstrip(")")
            reason = f"{name}: a damaged block (frames {error.start}-{error.stop - 1}) cannot be read: {detail}"
            for frame in range(begin, stop):
                unreadable.setdefault(frame, reason)
    return out


def _field_named(message: str) -> str:
    """A Views or Scene error message with the file's field name in front of it."""
    head, _, rest = message.partition(": ")
    if head in _VIEWS_NAMES:
        return f"{_VIEWS_NAMES[head]}: {rest}"
    return f"ground truth: {message}"


def describe_bad_frames(path: str, bad: Mapping[int, str], listed: int = 3) -> str:
    """``path``'s bad frames in one line: the first ``listed`` with their reasons, then how many more."""
    items = list(bad.items())
    text = "; ".join(f"frame {number}: {reason}" for number, reason in items[:listed])
    if len(items) > listed:
        text += f"; and {len(items) - listed} more"
    return f"{path}: {text}"


def camera_subsets(num_cameras: int, count: int, mode: Literal["first", "all"] = "first") -> list[tuple[int, ...]]:
    """The camera subsets of size ``count`` out of ``num_cameras`` (the file's cameras):
    ``[(0, .., count-1)]`` for ``"first"``, every combination in lexicographic order for ``"all"``."""
    check_choice(mode, "subsets", ("first", "all"))
    check_int(count, "cameras", 2, num_cameras)
    if mode == "first":
        return [tuple(range(count))]
    return list(itertools.combinations(range(num_cameras), count))
