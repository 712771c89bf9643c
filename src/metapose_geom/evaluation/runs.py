"""An evaluation run: every method on every camera subset of a dataset file, scored into rows;
:func:`run_evaluation` also writes the report folder.

ms / frame is single-core time per frame: the solver runs on ``threads`` threads (1 by default),
AniPose one frame batch per process (its time is the batch's time over its frames); warm-up (JIT
compilation) excluded. The error columns are deterministic for a given seed (the seed drives
AniPose's perturbed start and aniposelib's point resampling; S1, IR and the oracles draw nothing);
the time column is not.

Bad frames (:mod:`.data`: a block that cannot be read, a field that is not finite, evidence the
solver refuses) stop the run with an error naming the file, the frame and the field, before any
solving; ``skip_bad_frames=True`` leaves them out of every row instead and the report counts
them (:attr:`Evaluation.skipped_frames`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .._checks import check_bool, check_choice, check_int
from ..geometry import get_num_threads, set_num_threads
from .anipose_runs import anipose_pool, anipose_tasks, run_anipose_tasks
from .cache import ANIPOSE_CACHE_NAME, AniPoseCache
from .data import EvaluationData, camera_subsets, describe_bad_frames, load_data
from .methods import DEFAULT_METHODS, METHODS, MethodSpec
from .report import skipped_frames_line, write_report
from .scoring import Evaluation, score, solve_timed

F64 = NDArray[np.float64]

__all__ = ["evaluate", "run_evaluation"]


def _check_methods(methods: Sequence[str]) -> list[MethodSpec]:
    methods = list(methods)
    if not methods:
        raise ValueError("methods: expected at least one method")
    for name in methods:
        check_choice(name, "methods", tuple(METHODS))
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods: expected distinct names, got {methods}")
    return [METHODS[name] for name in methods]


def _check_cameras(cameras: Sequence[int]) -> list[int]:
    counts = [check_int(count, "cameras", 2) for count in cameras]
    if not counts or len(set(counts)) != len(counts):
        raise ValueError(f"cameras: expected distinct camera counts, got {counts}")
    return counts


def _solver_poses(data: EvaluationData, spec: MethodSpec, frames: int, subset: tuple[int, ...],
                  ablations: str | None) -> tuple[F64, float]:
    """Method ``spec`` on the first ``frames`` frames seen by ``subset``: poses (n, J, 3), seconds."""
    solutions, seconds = solve_timed([data.views(i, subset, spec) for i in range(frames)], spec.solver,
                                     options=spec.solver_options(len(subset), ablations))
    return np.stack([solution.pose3d for solution in solutions]), seconds


def evaluate(
    dataset: str | os.PathLike,
    cameras: Sequence[int] = (2, 3, 4),
    frames: int | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    seed: int = 0,
    subsets: Literal["first", "all"] = "first",
    anipose_frames: int | None = None,
    anipose_batch: int = 100,
    anipose_adjust_intrinsics: bool = True,
    workers: int = 1,
    threads: int = 1,
    progress: bool = True,
    cache: str | os.PathLike | None = None,
    skip_bad_frames: bool = False,
    stage2_ablations: str | os.PathLike | None = None,
) -> Evaluation:
    """Evaluate ``methods`` on the first ``frames`` frames (all when None) of a dataset file.

    Args:
        dataset: an HDF5 file of :mod:`metapose_geom.datasets` with ground truth.
        cameras: camera counts; each is evaluated on :func:`camera_subsets` of the file's cameras.
        methods: names in :data:`METHODS`, in the order the rows should have.
        seed: seeds AniPose's perturbed start and aniposelib's resampling.
        subsets: ``"first"`` (the first k cameras) or ``"all"`` (every k-subset, averaged).
        anipose_frames: evaluate the AniPose methods on the first this many frames only (None: all).
        anipose_batch: most frames (consecutive, sharing their cameras) adjusted together.
        anipose_adjust_intrinsics: let aniposelib refine focal length and k1 (its default and the
            original study's); False refines the extrinsics only.
        workers: processes for AniPose (each single-threaded); 1 runs in this process.
        threads: the compiled solver's threads while timing (1: per-core figures; 0: all cores).
        progress: show a progress bar.
        cache: a file for AniPose's results (:class:`AniPoseCache`): batches found there are not
            solved again, new ones are added as they finish. None keeps nothing.
        stage2_ablations: the folder of the stage-2 ablation weights (``python/train_ablations.py``),
            needed by the ``s2-ablation-*`` methods only.
        skip_bad_frames: leave out the frames that cannot be read or hold values that are not
            finite or not usable, and count them; False (the default) raises ValueError naming
            the first such frame and its field.

    Returns:
        An :class:`Evaluation` with one :class:`Row` per camera count and method; its
        ``skipped_frames`` maps each frame left out (its index in the file) to the reason.
    """
    start_time = time.perf_counter()
    specs = _check_methods(methods)
    cameras = _check_cameras(cameras)
    seed = check_int(seed, "seed", 0)
    if frames is not None:
        check_int(frames, "frames", 1)
    if anipose_frames is not None:
        check_int(anipose_frames, "anipose_frames", 1)
    anipose_batch = check_int(anipose_batch, "anipose_batch", 1)
    workers = check_int(workers, "workers", 1)
    threads = check_int(threads, "threads", 0)
    check_choice(subsets, "subsets", ("first", "all"))
    skip_bad_frames = check_bool(skip_bad_frames, "skip_bad_frames")
    if stage2_ablations is not None:
        stage2_ablations = os.fspath(stage2_ablations)
        if not os.path.isdir(stage2_ablations):
            raise ValueError(f"stage2_ablations: {stage2_ablations!r} is not a folder")
    for spec in specs:
        spec.solver_options(2, stage2_ablations)  # an ablation without its folder fails before any work
    needs = {spec.needs for spec in specs}
    with_anipose = "anipose" in needs
    if with_anipose:
        from ..anipose import require_aniposelib

        require_aniposelib()  # fail before any work, with the install command
    data = load_data(dataset, frames, needs)
    if "oracle" in needs and data.skeleton.num_joints != 17:
        raise ValueError(f"the IR oracles need the H36M-17 skeleton, the file has {data.skeleton.name!r}")
    plan = {count: camera_subsets(data.num_cameras, count, subsets) for count in cameras}
    used = {camera for subset_list in plan.values() for subset in subset_list for camera in subset}
    bad = data.find_bad_frames(sorted(used), needs)
    if bad and not skip_bad_frames:
        number, reason = next(iter(bad.items()))
        raise ValueError(f"{dataset}: frame {number}: {reason} ({len(bad)} bad frame(s) of {data.num_frames}; "
                         "pass skip_bad_frames=True, or --skip-bad-frames, to leave such frames out and count them)")
    if bad:
        if len(bad) == data.num_frames:
            raise ValueError(f"no frame left: every one of the {data.num_frames} frames is bad "
                             f"({describe_bad_frames(str(dataset), bad)})")
        data = data.without(bad)
    count_frames = {spec.name: min(data.num_frames, anipose_frames or data.num_frames) if spec.kind == "anipose"
                    else data.num_frames for spec in specs}
    total = sum(len(subset_list) * count_frames[spec.name] for subset_list in plan.values() for spec in specs)

    from tqdm.auto import tqdm

    threads_before = get_num_threads()
    set_num_threads(threads)
    rows = []
    try:
        with tqdm(total=total, desc="evaluate", unit="frame", disable=not progress, dynamic_ncols=True) as bar, \
                (AniPoseCache(cache) if cache is not None and with_anipose else nullcontext()) as store, \
                anipose_pool(workers if with_anipose else 1) as pool:
            for count, subset_list in plan.items():
                for spec in specs:
                    n = count_frames[spec.name]
                    bar.set_postfix_str(f"{spec.name}, {count} cameras")
                    predictions, worlds, in_cameras, seconds = [], [], [], 0.0
                    for subset in subset_list:
                        if spec.kind == "anipose":
                            tasks = anipose_tasks(data, spec, n, subset, seed, anipose_batch, anipose_adjust_intrinsics)
                            pose, per_frame = run_anipose_tasks(tasks, n, data.skeleton.num_joints, pool, bar, store)
                            seconds += float(per_frame.sum())
                        else:
                            pose, elapsed = _solver_poses(data, spec, n, subset, stage2_ablations)
                            seconds += elapsed
                            bar.update(n)
                        world, in_camera = data.truth(n, subset)
                        predictions.append(pose)
                        worlds.append(world)
                        in_cameras.append(in_camera)
                    rows.append(score(
                        spec.name, spec.label, count, n, len(subset_list), np.concatenate(predictions),
                        np.concatenate(worlds), np.concatenate(in_cameras), 1e3 * seconds / (n * len(subset_list)),
                    ))
    finally:
        set_num_threads(threads_before)
    settings: dict[str, Any] = {
        "frames": data.num_frames, "cameras": cameras, "methods": [spec.name for spec in specs], "seed": seed,
        "subsets": subsets, "anipose_frames": anipose_frames, "anipose_batch": anipose_batch,
        "anipose_adjust_intrinsics": anipose_adjust_intrinsics, "workers": workers, "threads": threads,
    }
    if stage2_ablations is not None:
        settings["stage2_ablations"] = stage2_ablations
    if skip_bad_frames:
        settings["skipped_frames"] = len(bad)
    if cache is not None and with_anipose:
        settings["anipose_batches_from_cache"] = store.hits
    return Evaluation(rows, str(dataset), data.skeleton.joints, settings, time.perf_counter() - start_time, bad)


def run_evaluation(dataset: str | os.PathLike, out: str | os.PathLike = "metapose-evaluation",
                   command: str | None = None, **kwargs) -> Evaluation:
    """:func:`evaluate`, then write the report folder ``out`` (:func:`~metapose_geom.evaluation.report.write_report`:
    ``evaluation.md``, ``evaluation.csv``, ``error_vs_cameras.png``, ``per_joint_error.png``); prints the
    table. AniPose's results are kept in ``out/anipose-cache.bin`` unless ``cache`` says otherwise
    (None: nowhere). ``out`` must be, or be creatable as, a writable folder: checked before the
    evaluation starts (NotADirectoryError, PermissionError)."""
    from ..datasets.files import check_output_folder

    out = check_output_folder(out, "out")
    kwargs.setdefault("cache", out / ANIPOSE_CACHE_NAME)
    result = evaluate(dataset, **kwargs)
    table = write_report(result, out, command)
    print(table)
    skipped = skipped_frames_line(result)
    if skipped:
        print(f"evaluate: {skipped[0].lower()}{skipped[1:]}")
    print(f"evaluate: {len(result.rows)} rows in {result.seconds:.1f} s; wrote {out}/evaluation.md, evaluation.csv, "
          "error_vs_cameras.png, per_joint_error.png")
    return result
