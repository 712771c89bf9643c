"""Solving a dataset file on a Dask cluster, chunk by chunk, resumably (needs the ``dask`` extra).

:func:`solve_dataset` cuts a dataset file (:mod:`metapose_geom.datasets`) into chunks of frames and
hands each to a dask.distributed worker as a task: the worker opens the file itself (read-only,
without a lock: it is given the path, never the arrays), solves the chunk with
:func:`metapose_geom.solve_arrays` by any method of the registry that gives weak cameras
(``"s1"``, ``"ir"``, ``"metapose"``) and returns the results as arrays. The client writes them to a
solution file (:mod:`metapose_geom.datasets.solutions`: ``keys`` and ``PREFIX_pose3d``, ``_x``,
``_objective``, ``_reprojection``, ``_cam_rot``, ``_cam_scale``, ``_cam_shift``, ``_diverged``) in
frame order as chunks complete: a chunk that finishes before an earlier one waits in memory (at
most a window of chunks is in flight, so the wait is bounded).

- **Where it runs.** A :class:`distributed.LocalCluster` by default (``workers`` processes of one
  thread each; every task runs the solver on ``solver_threads`` core threads, one by default, so a
  worker is one core), or an existing cluster by its scheduler's address (``scheduler="tcp://..."``,
  workers started with ``dask worker ADDRESS --nthreads 1 --nworkers N``; the dataset and any
  weights file must be at the same path on every worker: a shared file system).
- **Identical results.** Every method treats each frame alone, so a frame's results are the same
  bits whichever chunk, worker or thread count solves it, and equal local ``solve_batch``'s.
- **Failures.** A task whose worker dies is run again on another worker by the scheduler; one that
  raises is retried ``retries`` times. Either way its results are the same bits.
- **Resuming.** The solution file commits whole chunks in order (``frames_committed``); a rerun
  after a kill (of the client, or of everything) solves only the frames after the committed ones.
  A rerun with another method, other options (a weights file's contents included) or another
  input is refused with a ValueError naming what differs.

``import metapose_geom`` does not import dask; this module imports it when :func:`solve_dataset` runs.

Example::

    from metapose_geom.distributed import solve_dataset
    report = solve_dataset("capture.h5", "capture-ir.h5", method="ir", workers=8, chunk=1024)
    report.frames, report.solved, report.seconds
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import check_int

__all__ = ["DASK_HINT", "DatasetSolveReport", "solve_chunk", "solve_dataset"]

#: what to install when dask is missing
DASK_HINT = 'pip install "metapose-geom[dask]"'
#: the dataset fields a task reads
_INPUT_FIELDS = ("heatmaps", "pose3d_epi_pred", "bboxes", "keys")


@dataclass(frozen=True)
class DatasetSolveReport:
    """What :func:`solve_dataset` did.

    Attributes:
        out: the solution file.
        frames: the dataset's frames (all committed in ``out`` now).
        solved: frames this run solved (the others were committed by an earlier run).
        seconds: wall time of this run, cluster start included.
        dashboard: the Dask dashboard's address, or None when there is none.
    """

    out: Path
    frames: int
    solved: int
    seconds: float
    dashboard: str | None


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(f"solving on a cluster needs dask.distributed; {DASK_HINT}") from None
    return distributed


# --------------------------------------------------------------------------- what a worker runs


def solve_chunk(path: str, start: int, stop: int, method: str, options: Mapping[str, Any], prefix: str,
                solver_threads: int = 1) -> dict[str, NDArray]:
    """Frames ``start:stop`` of the dataset file ``path`` solved by ``method``: what one task runs.

    Reads heatmaps (n, C, J, K, 4), pose3d_epi_pred (n, C, J, 3), bboxes (n, C, 4) and keys (n, C)
    (without a lock), solves with :func:`metapose_geom.solve_arrays` on ``solver_threads`` core
    threads and returns the solution file's fields (:func:`~metapose_geom.datasets.solutions.solution_fields`)
    as arrays with a leading axis of n frames. A frame the method cannot solve is a ValueError
    naming its index in the dataset.
    """
    from .datasets import DatasetReader
    from .geometry import set_num_threads
    from .solver import DivergenceWarning, solve_arrays

    set_num_threads(solver_threads)  # process-wide: every task of a worker sets the same count
    with DatasetReader(path, locking=False) as reader:
        mixtures, mono3d, boxes, keys = (reader.read(name, start, stop) for name in _INPUT_FIELDS)
        skeleton = reader.skeleton
    try:
        with warnings.catch_warnings():  # diverged frames are flagged in PREFIX_diverged
            warnings.simplefilter("ignore", DivergenceWarning)
            batch = solve_arrays(mixtures, mono3d, boxes, method, dict(options), skeleton=skeleton,
                                 progress=False, chunk_size=256)
    except ValueError as error:
        message = str(error)
        if message.startswith("frames["):
            index, _, rest = message[len("frames["):].partition("]")
            if index.isdigit():
                message = f"frames[{start + int(index)}]{rest}"
        raise ValueError(f"{path}: {message}") from None
    return {
        "keys": keys, f"{prefix}_pose3d": batch.pose3d, f"{prefix}_x": batch.x, f"{prefix}_objective": batch.objective,
        f"{prefix}_reprojection": batch.reprojection, f"{prefix}_cam_rot": batch.rotation,
        f"{prefix}_cam_scale": batch.scale, f"{prefix}_cam_shift": batch.shift, f"{prefix}_diverged": batch.diverged,
    }


# --------------------------------------------------------------------------- the identity of a run


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _options_json(method: str, options: Any) -> tuple[str, dict[str, Any]]:
    """The method's resolved options as canonical JSON (a weights file by its absolute path and the
    SHA-256 of its contents), and the mapping the tasks are given."""
    from .solver.methods import lookup
    from .solver.options import resolve_options

    entry = lookup(method)
    if not entry.stacked:
        raise ValueError(f"method: {method!r} does not give weak cameras; solve-dataset takes "
                         f"{[name for name in _weak_methods()]}")
    resolved = resolve_options(entry.options_type, options, method)
    values = dataclasses.asdict(resolved)
    if values.get("weights") is not None:
        weights = os.path.abspath(values["weights"])
        if not os.path.isfile(weights):
            raise ValueError(f"weights: {values['weights']}: no such file")
        values["weights"] = weights
    for name, value in values.items():
        if isinstance(value, tuple):
            values[name] = list(value)
    recorded = dict(values)
    if values.get("weights") is not None:
        recorded["weights_sha256"] = _file_digest(values["weights"])
    return json.dumps(recorded, sort_keys=True), values


def _weak_methods() -> list[str]:
    from .solver.methods import lookup, method_names

    return [name for name in method_names() if lookup(name).stacked]


def _source(reader, path: Path) -> str:
    """The input's identity as canonical JSON: path, frame count, C, J, K, skeleton, its attributes
    and a SHA-256 of the first and last frames' evidence and keys."""
    frames = len(reader)
    digest = hashlib.sha256()
    for index in sorted({0, frames - 1}):
        for name in _INPUT_FIELDS:
            value = reader.read(name, index, index + 1)
            digest.update(value.astype(str).tobytes() if name == "keys" else np.ascontiguousarray(value).tobytes())
    return json.dumps({
        "path": str(path), "frames": frames, "num_cameras": reader.num_cameras, "num_joints": reader.num_joints,
        "num_components": reader.num_components, "skeleton": reader.skeleton.name,
        "attrs": {key: (value.tolist() if isinstance(value, np.ndarray) else value)
                  for key, value in reader.attrs.items()},
        "sha256_first_last": digest.hexdigest(),
    }, sort_keys=True, default=str)


# --------------------------------------------------------------------------- the client


def _cluster(distributed, scheduler: str | None, workers: int | None):
    """(client, cluster or None, dashboard link or None)."""
    import importlib.util

    if scheduler is not None:
        client = distributed.Client(scheduler)
        cluster = None
    else:
        dashboard = importlib.util.find_spec("bokeh") is not None
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
            dashboard_address=":0" if dashboard else None,  # any free port: 8787 may be taken
        )
        client = distributed.Client(cluster)
    link = None
    try:
        if importlib.util.find_spec("bokeh") is not None or scheduler is not None:
            link = client.dashboard_link or None
    except Exception:  # no dashboard on the scheduler
        link = None
    return client, cluster, link


def solve_dataset(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str = "ir",
    options: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    chunk: int = 1024,
    solver_threads: int = 1,
    retries: int = 3,
    progress: bool = True,
    prefix: str | None = None,
) -> DatasetSolveReport:
    """Solve every frame of the dataset file ``path`` on a Dask cluster into the solution file ``out``.

    Args:
        path: a dataset file (:class:`~metapose_geom.datasets.DatasetReader`: heatmaps (N, C, J, K, 4),
            pose3d_epi_pred (N, C, J, 3), bboxes (N, C, 4) px, keys (N, C)); its committed frames.
        out: the solution file (:mod:`metapose_geom.datasets.solutions`); an existing one of the
            same run is resumed, one of another run refused (ValueError).
        method: ``"s1"``, ``"ir"`` or ``"metapose"`` (any registered method giving weak cameras).
        options: the method's options (its options type, a mapping of its fields, or None).
        scheduler: the address of a running scheduler (``"tcp://host:8786"``); None starts a
            LocalCluster on this machine.
        workers: the LocalCluster's worker processes (one thread each; None: one per core).
            Not with ``scheduler``.
        chunk: frames per task (and per commit).
        solver_threads: core threads each task solves on (1: a worker is one core).
        retries: times a task that raises is run again.
        progress: a progress bar (frames) and the dashboard's address on stderr.
        prefix: the solution fields' prefix (default: the method's name).

    Returns:
        A :class:`DatasetSolveReport`. The results equal ``solve_batch``'s on the same frames bit for bit.
    """
    import sys

    from tqdm.auto import tqdm

    from .datasets import DatasetReader
    from .datasets.solutions import SolutionWriter

    began = time.perf_counter()
    check_int(chunk, "chunk", 1)
    check_int(solver_threads, "solver_threads", 0)
    check_int(retries, "retries", 0)
    if workers is not None:
        check_int(workers, "workers", 1)
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ValueError(f"scheduler: expected an address such as tcp://host:8786, got {scheduler!r}")
        if workers is not None:
            raise ValueError("workers: a running cluster (scheduler) has its own workers; give one or the other")
    prefix = method if prefix is None else prefix
    if not isinstance(prefix, str) or not prefix.isidentifier():
        raise ValueError(f"prefix: expected a name such as 'ir', got {prefix!r}")
    options_json, task_options = _options_json(method, options)
    source = Path(path).resolve()
    with DatasetReader(source, locking=False) as reader:
        frames, cameras, joints = len(reader), reader.num_cameras, reader.num_joints
        source_json = _source(reader, source) if frames else "{}"
    if frames == 0:
        raise ValueError(f"{path}: no committed frames to solve")
    identity = {"method": method, "prefix": prefix, "options": options_json, "source": source_json}
    distributed = _import_distributed()
    writer = SolutionWriter(out, identity, cameras, joints, frames)
    try:
        committed = writer.frames_committed
        if committed == frames:
            return DatasetSolveReport(Path(out), frames, 0, time.perf_counter() - began, None)
        starts = list(range(committed, frames, chunk))
        token = hashlib.sha256("\n".join(identity.values()).encode()).hexdigest()[:16]
        client, cluster, link = _cluster(distributed, scheduler, workers)
        try:
            if progress and link:
                print(f"dask dashboard: {link}", file=sys.stderr)
            threads = sum(client.nthreads().values()) or 1
            window = max(4, 2 * threads)
            pending = iter(starts)
            results: dict[int, dict[str, NDArray]] = {}

            def submit(start: int):
                stop = min(start + chunk, frames)
                return client.submit(solve_chunk, str(source), start, stop, method, task_options, prefix,
                                     solver_threads, key=f"metapose-solve-{token}-{start}", retries=retries,
                                     pure=False)

            futures = distributed.as_completed([submit(start) for start in itertools.islice(pending, window)])
            with tqdm(total=frames, initial=committed, desc=f"solve-dataset {method}", unit="frame",
                      disable=not progress) as bar:
                for future in futures:
                    start = int(future.key.rsplit("-", 1)[1])
                    results[start] = future.result()
                    future.release()
                    following = next(pending, None)
                    if following is not None:
                        futures.add(submit(following))
                    while writer.frames_committed in results:
                        done = writer.frames_committed
                        writer.append(results.pop(done))
                        bar.update(writer.frames_committed - done)
            if writer.frames_committed != frames:  # pragma: no cover - a broken invariant, not a user error
                raise RuntimeError(f"{out}: {writer.frames_committed} of {frames} frames committed; chunks left "
                                   f"uncommitted: {sorted(results)}")
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return DatasetSolveReport(Path(out), frames, frames - committed, time.perf_counter() - began, link)
    finally:
        writer.close()
