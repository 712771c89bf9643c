"""A synthetic :class:`~metapose_geom.synth.Scene` and the dataset fields of one frame, both ways.

:func:`scene_fields` is what the synthetic build stores (the ``<-`` sources of the field table in
:mod:`metapose_geom.datasets.schema`); :func:`scene_from_fields` rebuilds the Scene a file's frame
was made from (or the Scene of a subset of its cameras), which the evaluation's oracles need for
:meth:`~metapose_geom.synth.Scene.ablated_views`. Stored arrays come back as they were; the
derived ones (translation ``-R centre``, the pose in each camera, the 2D in pixels) come back to
rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from ..geometry import PerspectiveCameras
from ..mixtures import mixture_mean
from ..skeletons import H36M_17, Skeleton
from ..synth import Scene
from ..views import box_to_pixels

__all__ = ["SCENE_FIELDS", "cameras_from_fields", "scene_fields", "scene_from_fields"]

#: The fields :func:`scene_fields` gives (all but ``keys`` and the solver results).
SCENE_FIELDS: tuple[str, ...] = (
    "heatmaps", "pose2d_pred", "pose3d_epi_pred", "bboxes", "pose3d", "cam_rot", "cam_pose3d", "cam_intr",
    "cam_kd", "cam_image_size", "pose2d_gt", "pose2d_repr", "occluded", "confused",
)


def scene_fields(scene: Scene) -> dict[str, NDArray]:
    """One frame's fields (no frame axis) from a scene: :data:`SCENE_FIELDS`.

    ``pose2d_pred`` is the mixture mean, ``cam_pose3d`` the camera centres ``-R^T t``, ``pose2d_gt``
    the exact 2D in box units and ``pose2d_repr`` the weak-perspective labels; the others are the
    scene's arrays as they are."""
    return {
        "heatmaps": scene.mixtures,
        "pose2d_pred": mixture_mean(scene.mixtures),
        "pose3d_epi_pred": scene.mono3d,
        "bboxes": scene.boxes,
        "pose3d": scene.pose3d,
        "cam_rot": scene.rotation,
        "cam_pose3d": -np.einsum("cji,cj->ci", scene.rotation, scene.translation),  # -R^T t
        "cam_intr": scene.intrinsics,
        "cam_kd": scene.distortion,
        "cam_image_size": scene.image_size,
        "pose2d_gt": scene.pose2d_box_units(),
        "pose2d_repr": scene.weak_labels(),
        "occluded": scene.occluded,
        "confused": scene.confused,
    }


def _cameras(fields: Mapping[str, NDArray], cameras: Sequence[int] | None) -> list[int]:
    return list(range(fields["cam_rot"].shape[0])) if cameras is None else list(cameras)


def cameras_from_fields(fields: Mapping[str, NDArray], cameras: Sequence[int] | None = None) -> PerspectiveCameras:
    """One frame's ground-truth cameras (those listed in ``cameras``, default all) in OpenCV form,
    ``t = -R centre``, from ``cam_rot``, ``cam_pose3d``, ``cam_intr``, ``cam_kd`` and
    ``cam_image_size`` (when absent, as in the original release, twice the principal point)."""
    index = _cameras(fields, cameras)
    rotation = fields["cam_rot"][index]
    translation = -np.einsum("cij,cj->ci", rotation, fields["cam_pose3d"][index])
    intrinsics = fields["cam_intr"][index]
    if "cam_image_size" in fields:
        image_size = fields["cam_image_size"][index]
    else:  # not in the original release: the principal point is near the centre
        image_size = 2 * intrinsics[:, 2:]
    return PerspectiveCameras(rotation, translation, intrinsics, fields["cam_kd"][index], image_size)


def scene_from_fields(fields: Mapping[str, NDArray], skeleton: Skeleton = H36M_17,
                      cameras: Sequence[int] | None = None) -> Scene:
    """The :class:`Scene` of one frame's fields (no frame axis), seen by ``cameras`` (default all).

    Needs ``pose3d``, the camera fields of :func:`cameras_from_fields`, ``pose2d_gt``, ``heatmaps``,
    ``pose3d_epi_pred`` and ``bboxes``; ``occluded`` and ``confused`` are all False when absent."""
    index = _cameras(fields, cameras)
    perspective = cameras_from_fields(fields, index)
    pose3d = fields["pose3d"]
    boxes = fields["bboxes"][index]
    flags = {name: fields[name][index] if name in fields else np.zeros((len(index), pose3d.shape[0]), dtype=bool)
             for name in ("occluded", "confused")}
    return Scene(
        pose3d=pose3d,
        rotation=perspective.rotation,
        translation=perspective.translation,
        intrinsics=perspective.intrinsics,
        distortion=perspective.distortion,
        image_size=perspective.image_size,
        pose3d_cam=np.einsum("cab,jb->cja", perspective.rotation, pose3d) + perspective.translation[:, None, :],
        pose2d=box_to_pixels(fields["pose2d_gt"][index], boxes),
        boxes=boxes,
        mixtures=fields["heatmaps"][index],
        mono3d=fields["pose3d_epi_pred"][index],
        occluded=flags["occluded"],
        confused=flags["confused"],
        skeleton=skeleton,
    )
