"""What the evaluation reads from a dataset file: the fields of its first N frames, the camera
subsets, each method's views of a frame and the ground-truth poses the errors are measured against."""

from __future__ import annotations

import itertools
import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from .._checks import check_choice, check_int
from ..datasets import DatasetReader
from ..datasets.scenes import cameras_from_fields, scene_from_fields
from ..geometry import PerspectiveCameras
from ..skeletons import Skeleton
from ..synth import Scene
from ..views import Views
from .methods import NEEDED_FIELDS, MethodSpec

F64 = NDArray[np.float64]

__all__ = ["EvaluationData", "camera_subsets", "load_data"]

#: Read when the file has them: image sizes for the cameras, noise flags for the rebuilt scenes.
_OPTIONAL_FIELDS = ("cam_image_size", "occluded", "confused")


@dataclass(frozen=True)
class EvaluationData:
    """The fields of the first N frames of a dataset file that the methods need, in memory."""

    path: str
    skeleton: Skeleton
    num_cameras: int
    arrays: dict[str, NDArray]

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
        arrays = {name: reader.read(name, 0, frames) for name in sorted(wanted)}
        return EvaluationData(str(path), reader.skeleton, reader.num_cameras, arrays)


def camera_subsets(num_cameras: int, count: int, mode: Literal["first", "all"] = "first") -> list[tuple[int, ...]]:
    """The camera subsets of size ``count`` out of ``num_cameras`` (the file's cameras):
    ``[(0, .., count-1)]`` for ``"first"``, every combination in lexicographic order for ``"all"``."""
    check_choice(mode, "subsets", ("first", "all"))
    check_int(count, "cameras", 2, num_cameras)
    if mode == "first":
        return [tuple(range(count))]
    return list(itertools.combinations(range(num_cameras), count))
