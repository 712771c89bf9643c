"""The synthetic build: seeded scenes, solved with stage 1 and IR, written to dataset files.

:func:`make_datasets` (``metapose-geom make-dataset``) writes one file per split and camera count,
``{out}/synthetic_{split}_{C}cam.h5``. Frame i of a file with seed s is :func:`synthetic_scene`,
``synth.make_scene(np.random.default_rng([s, i]), C)`` (that is ``synth.make_scenes(n, C, seed=s)[i]``)
with s = ``split_seed(seed, split)`` (train and test never share one), stored through
:func:`~metapose_geom.datasets.scenes.scene_fields` and followed by stage 1 and IR with default
options. A restarted build recomputes only the frames not yet committed; as every frame depends on
its index alone, the result equals a build made in one go, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import synth
from .._checks import check_choice, check_int
from ..solver import RefineOptions, solve_batch
from .files import DamagedFileError, check_output_folder, move_aside
from .hdf5 import DatasetWriter
from .scenes import scene_fields
from .schema import FIELDS, MAX_STORAGE_CHUNK

__all__ = [
    "MAX_SEED",
    "SPLIT_SEED_OFFSETS",
    "SYNTHETIC_FIELDS",
    "build_synthetic_dataset",
    "dataset_path",
    "make_datasets",
    "split_seed",
    "synthetic_frames",
    "synthetic_scene",
]

#: Added to ``--seed`` to give each split its own scenes (and keep clear of small seeds used elsewhere).
SPLIT_SEED_OFFSETS = {"train": 1_000_000, "test": 2_000_000}
#: every field the synthetic build writes
SYNTHETIC_FIELDS: tuple[str, ...] = tuple(FIELDS)
#: The largest ``seed`` of :func:`make_datasets` (a signed 64-bit integer); a file stores its
#: scene seed, ``SPLIT_SEED_OFFSETS[split] + seed``, as an unsigned one.
MAX_SEED = 2**63 - 1
#: The largest scene seed of :func:`build_synthetic_dataset`: what a file attribute holds.
_MAX_SCENE_SEED = 2**64 - 1


def split_seed(seed: int, split: str) -> int:
    """The scene seed of a split: ``SPLIT_SEED_OFFSETS[split] + seed``, ``0 <= seed <=`` :data:`MAX_SEED`."""
    check_int(seed, "seed", 0, MAX_SEED)
    check_choice(split, "split", tuple(SPLIT_SEED_OFFSETS))
    return SPLIT_SEED_OFFSETS[split] + int(seed)


def dataset_path(out: str | os.PathLike, split: str, num_cameras: int) -> Path:
    """``{out}/synthetic_{split}_{C}cam.h5``."""
    return Path(out) / f"synthetic_{split}_{num_cameras}cam.h5"


def synthetic_scene(seed: int, index: int, num_cameras: int, num_components: int = 4) -> synth.Scene:
    """Frame ``index`` of a file with scene seed ``seed``: depends on these numbers alone."""
    return synth.make_scene(np.random.default_rng([seed, index]), num_cameras, num_components)


def synthetic_frames(seed: int, start: int, stop: int, num_cameras: int, num_components: int = 4,
                     options: RefineOptions | None = None) -> dict[str, NDArray]:
    """Frames ``start:stop`` of a synthetic file with scene seed ``seed``: every field of
    :data:`SYNTHETIC_FIELDS`, leading axis ``stop - start``, including stage 1 and IR (``options``,
    default :class:`RefineOptions`) solved with :func:`~metapose_geom.solve_batch` over all cores."""
    check_int(start, "start", 0)
    check_int(stop, "stop", start + 1)
    options = options or RefineOptions()
    per_frame = []
    views = []
    for index in range(start, stop):
        scene = synthetic_scene(seed, index, num_cameras, num_components)
        fields = scene_fields(scene)
        fields["keys"] = np.array([f"synthetic/seed{seed}/frame{index:07d}/{camera}" for camera in scene.camera_names],
                                  dtype=object)
        per_frame.append(fields)
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
    from .. import __version__

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
    that HDF5 cannot open at all, not even read-only (a kill during a flush can leave one), is
    moved aside with a warning, to ``NAME.corrupt`` or the first free ``NAME.corrupt.1``,
    ``.2``, ..., and rebuilt. A file that is in use (another process reads or writes it, another
    run creates it, a reader in this process has it open) raises
    :class:`~metapose_geom.datasets.DatasetInUseError`, one that cannot be written PermissionError;
    such a file is left as it is. Returns the path.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    check_int(num_frames, "num_frames", 0)
    check_int(num_cameras, "num_cameras", 2)
    check_int(seed, "seed", 0, _MAX_SCENE_SEED)
    check_int(chunk, "chunk", 1)
    options = RefineOptions()
    common = dict(
        num_cameras=num_cameras, fields=SYNTHETIC_FIELDS, num_components=num_components,
        attrs=_build_attrs(seed, num_components, options, split), frames_planned=num_frames,
        chunk_frames=_storage_chunk(chunk),
    )
    mode = "w" if overwrite else "a"
    try:
        writer = DatasetWriter(path, mode=mode, **common)
    except DamagedFileError as error:  # only structural damage; a file in use or not writable is left alone
        aside = move_aside(path)
        warnings.warn(f"{error}; moved to {aside}, rebuilding", RuntimeWarning, stacklevel=2)
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
    (:func:`build_synthetic_dataset`). ``out`` must be, or be creatable as, a writable folder
    (NotADirectoryError, PermissionError before anything is built). Returns the paths written,
    train files first.
    """
    check_int(train_frames, "train_frames", 0)
    check_int(test_frames, "test_frames", 0)
    check_int(seed, "seed", 0, MAX_SEED)
    check_int(chunk, "chunk", 1)
    cameras = list(cameras)
    if not cameras:
        raise ValueError("cameras: expected at least one camera count")
    for count in cameras:
        check_int(count, "cameras", 2, 8)
    check_output_folder(out, "out")
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
