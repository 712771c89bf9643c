"""Captures as arrays in a numpy ``.npz`` file.

The fields :func:`read_npz` looks for by default (each name can be changed by the caller):

=================  ===============  =====================================================================
field              shape            what
=================  ===============  =====================================================================
``keypoints``      (C, F, N, 2)     2D landmarks, pixels, in the landmark set's order; NaN: missing
``confidences``    (C, F, N)        in [0, 1]; 0: missing
``mono3d``         (C, F, N, 3)     optional monocular 3D guesses, camera axes (x right, y down, z away),
                                    any unit and origin; NaN: missing
``skeleton``       ()               optional: the landmark set's name (``"coco17"``, ``"blazepose33"`` ...)
``camera_names``   (C,)             optional strings
``image_size``     (C, 2)           optional ``[width, height]`` pixels
``fps``            ()               optional frames per second
``frame_numbers``  (F,)             optional increasing integers
=================  ===============  =====================================================================
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .capture import Capture

__all__ = ["NPZ_FIELDS", "read_npz"]

#: The default field names, by what they hold.
NPZ_FIELDS = {
    "keypoints": "keypoints",
    "confidences": "confidences",
    "mono3d": "mono3d",
    "skeleton": "skeleton",
    "camera_names": "camera_names",
    "image_size": "image_size",
    "fps": "fps",
    "frame_numbers": "frame_numbers",
}


def read_npz(
    path: str | os.PathLike,
    skeleton: str | None = None,
    *,
    keypoints: str = "keypoints",
    confidences: str | None = "confidences",
    mono3d: str | None = "mono3d",
    camera_names: str | None = "camera_names",
    image_size: str | None = "image_size",
    fps: str | None = "fps",
    frame_numbers: str | None = "frame_numbers",
) -> Capture:
    """An ``.npz`` of keypoints (C, F, N, 2) px, confidences (C, F, N) and optional monocular 3D
    (C, F, N, 3) -> a :class:`Capture`.

    Args:
        path: the file.
        skeleton: the landmark set's name (``"blazepose33"``, ``"coco17"``, ``"body25"``,
            ``"halpe26"``, ``"h36m17"``, or an alias); None reads it from the file's
            ``skeleton`` field.
        keypoints, confidences, mono3d, camera_names, image_size, fps, frame_numbers: the names
            of the fields that hold them (the module's table gives the defaults and shapes). A
            field named other than by default must exist; an optional field under its default
            name is used when present. ``confidences=None``: every landmark that is not NaN has
            confidence 1. ``mono3d=None`` (or any optional field None): not read.

    Example, the shared Pose2Sim capture (BlazePose landmarks, its visibility as confidence, its
    world landmarks in metres as the monocular guesses)::

        capture = read_npz("pose2sim_single_person.npz", skeleton="blazepose33",
                           keypoints="blazepose_keypoints", confidences="blazepose_visibility",
                           mono3d="blazepose_world")

    Raises:
        ValueError: an unreadable file, a missing field (listing the file's fields), an unknown
            skeleton, or arrays the :class:`Capture` rules reject (naming the field).
    """
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{source}: not a readable .npz file ({error})") from None

    def field(role: str, name: str | None, required: bool = False):
        if name is None:
            return None
        if name in arrays:
            return arrays[name]
        if required or name != NPZ_FIELDS[role]:
            raise ValueError(f"{source}: no field {name!r} ({role}); the file has {', '.join(sorted(arrays))}")
        return None

    points = field("keypoints", keypoints, required=True)
    if confidences is None:
        conf = np.where(np.isnan(np.asarray(points, dtype=np.float64)).any(axis=-1), 0.0, 1.0)
    elif confidences in arrays:
        conf = arrays[confidences]
    else:
        raise ValueError(f"{source}: no field {confidences!r} (confidences); the file has {', '.join(sorted(arrays))}; "
                         "pass confidences=None to give every landmark that is not NaN confidence 1")
    if skeleton is None:
        named = field("skeleton", "skeleton")
        if named is None:
            raise ValueError(f"skeleton: {source} has no 'skeleton' field; name the landmark set, e.g. "
                             "skeleton='blazepose33'")
        skeleton = str(named)
    names = field("camera_names", camera_names)
    rate = field("fps", fps)
    numbers = field("frame_numbers", frame_numbers)
    return Capture(
        _numeric(points, "keypoints"), _numeric(conf, "confidences"), skeleton,
        mono3d=_numeric(field("mono3d", mono3d), "mono3d"),
        camera_names=() if names is None else tuple(str(name) for name in np.ravel(names)),
        image_size=_numeric(field("image_size", image_size), "image_size"),
        fps=None if rate is None else _scalar(rate, "fps"),
        frame_numbers=numbers,
    )


def _numeric(array, name: str):
    if array is None:
        return None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {array.dtype}")
    return array


def _scalar(array, name: str) -> float:
    if array.size != 1 or array.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected one number, got shape {array.shape}, dtype {array.dtype}")
    return float(array.reshape(()))
