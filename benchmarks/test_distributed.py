"""Benchmarks of solving a dataset file on a Dask cluster (``metapose_geom.distributed``) against
``solve_batch`` in this process, on the same frames, in one session.

The dataset: ``METAPOSE_BENCH_FRAMES`` frames (default 20,000; the README's run: 100,000) of
C = 4 cameras, made by repeating the 2,000 frames of one ``make_datasets`` build (seed 0) into a new
file with :class:`~metapose_geom.datasets.DatasetWriter` (keys made unique per repetition). A
solver's work does not depend on which frames it sees, only on their count, so the repetition
changes nothing but the build time. ``METAPOSE_BENCH_DIR`` keeps the file between sessions.

Group ``"solve-dataset ir C=4 N=<frames>"`` (IR, 100 Adam steps, default options):

* ``local 1 thread`` / ``local 2 threads``: read the evidence (heatmaps, monocular guesses,
  boxes) of every frame, build a ``Views`` per frame, ``solve_batch(..., threads=T)``;
* ``local solve_arrays 1 thread`` / ``2 threads``: the same evidence stacked, one
  ``solve_arrays(..., threads=T)`` call: what each cluster task runs, without the per-frame
  ``Views`` and ``Solution`` objects of ``solve_batch`` (the same bits);
* ``cluster 1 worker`` / ``cluster 2 workers``: ``solve_dataset(..., workers=W, chunk=2048)``
  into a new solution file: a LocalCluster of W processes of one thread started and closed
  inside the round, each task reading its chunk from the file, the client writing and committing
  the results in order.

Every workload runs one round (``benchmark.pedantic``, 1 round, no warm-up: a round of 100,000
frames is tens of seconds; a 256-frame solve runs before timing so the first round pays no import
or JIT). After timing, each cluster's solution file must equal the local run's results bit for bit.
The cluster's overhead is its time over the local time on the same cores (``report`` in the README).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from metapose_geom.datasets import REQUIRED_FIELDS, DatasetReader, DatasetWriter, make_datasets  # noqa: E402
from metapose_geom.datasets.solutions import SolutionReader  # noqa: E402
from metapose_geom.distributed import solve_dataset  # noqa: E402
from metapose_geom.solver import BatchSolution, solve_arrays, solve_batch  # noqa: E402
from metapose_geom.views import Views  # noqa: E402

FRAMES = int(os.environ.get("METAPOSE_BENCH_FRAMES", "20000"))
CAMERAS = 4
TILE = 2000
CHUNK = 2048
GROUP = f"solve-dataset ir C={CAMERAS} N={FRAMES}"
_LOCAL: dict[str, BatchSolution] = {}


def tiled_dataset(folder: Path, frames: int) -> Path:
    """A dataset of ``frames`` frames: one 2,000-frame synthetic build repeated (reused when present)."""
    path = folder / f"tiled_{frames}_{CAMERAS}cam.h5"
    if path.exists():
        with DatasetReader(path) as reader:
            if len(reader) == frames:
                return path
    (base,) = make_datasets(folder / "base", train_frames=TILE, test_frames=0, cameras=(CAMERAS,), seed=0,
                            progress=False)
    with DatasetReader(base) as reader:
        arrays = {name: reader.read(name) for name in REQUIRED_FIELDS}
    with DatasetWriter(path, num_cameras=CAMERAS, mode="w", frames_planned=frames, compression="lzf",
                       attrs={"tiled_from": str(base), "tile_frames": TILE}) as writer:
        for start in range(0, frames, TILE):
            count = min(TILE, frames - start)
            chunk = {name: array[:count] for name, array in arrays.items()}
            chunk["keys"] = np.char.add(arrays["keys"][:count].astype(str), f"/{start // TILE}")
            writer.append(chunk)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = Path(os.environ["METAPOSE_BENCH_DIR"]) if "METAPOSE_BENCH_DIR" in os.environ else \
        tmp_path_factory.mktemp("distributed-bench")
    folder.mkdir(parents=True, exist_ok=True)
    path = tiled_dataset(folder, FRAMES)
    with DatasetReader(path) as reader:  # warm-up, untimed: imports, the core's first call
        solve_batch([reader.views(i) for i in range(256)], progress=False)
    return path


def local_solve(path: Path, threads: int) -> BatchSolution:
    with DatasetReader(path) as reader:
        mixtures, mono3d, boxes = (reader.read(name) for name in ("heatmaps", "pose3d_epi_pred", "bboxes"))
        skeleton, names = reader.skeleton, reader.camera_names
    frames = [Views(mixtures[i], mono3d[i], boxes[i], names, skeleton) for i in range(mixtures.shape[0])]
    return BatchSolution.from_solutions(solve_batch(frames, progress=False, threads=threads))


@pytest.mark.parametrize("threads", [1, 2])
def test_local_solve_batch(benchmark, dataset, threads):
    benchmark.group = GROUP
    benchmark.extra_info.update(implementation=f"local solve_batch {threads} thread{'s' if threads > 1 else ''}",
                                frames=FRAMES, cores=threads, load_before=os.getloadavg())
    result = benchmark.pedantic(local_solve, args=(dataset, threads), rounds=1, iterations=1)
    benchmark.extra_info["load_after"] = os.getloadavg()
    assert len(result) == FRAMES
    _LOCAL["reference"] = result


def local_arrays(path: Path, threads: int) -> BatchSolution:
    with DatasetReader(path) as reader:
        mixtures, mono3d, boxes = (reader.read(name) for name in ("heatmaps", "pose3d_epi_pred", "bboxes"))
        skeleton = reader.skeleton
    return solve_arrays(mixtures, mono3d, boxes, skeleton=skeleton, progress=False, threads=threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_local_solve_arrays(benchmark, dataset, threads):
    benchmark.group = GROUP
    benchmark.extra_info.update(implementation=f"local solve_arrays {threads} thread{'s' if threads > 1 else ''}",
                                frames=FRAMES, cores=threads, load_before=os.getloadavg())
    result = benchmark.pedantic(local_arrays, args=(dataset, threads), rounds=1, iterations=1)
    benchmark.extra_info["load_after"] = os.getloadavg()
    reference = _LOCAL.get("reference")
    if reference is not None:
        assert np.array_equal(result.x, reference.x)


@pytest.mark.parametrize("workers", [1, 2])
def test_cluster_solve_dataset(benchmark, dataset, tmp_path, workers):
    out = tmp_path / "solutions.h5"

    def run():
        if out.exists():
            out.unlink()
        return solve_dataset(dataset, out, workers=workers, chunk=CHUNK, progress=False)

    benchmark.group = GROUP
    benchmark.extra_info.update(implementation=f"cluster {workers} worker{'s' if workers > 1 else ''}",
                                frames=FRAMES, cores=workers, chunk=CHUNK, load_before=os.getloadavg())
    report = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["load_after"] = os.getloadavg()
    assert report.solved == FRAMES
    reference = _LOCAL.get("reference")
    if reference is None:
        pytest.skip("no local run in this session to compare with")
    with SolutionReader(out) as reader:
        for suffix, expected in (("pose3d", reference.pose3d), ("x", reference.x), ("objective", reference.objective),
                                 ("cam_scale", reference.scale), ("cam_shift", reference.shift)):
            assert np.array_equal(reader.read(f"ir_{suffix}"), expected), suffix
    shutil.rmtree(tmp_path, ignore_errors=True)
