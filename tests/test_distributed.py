"""Solving a dataset file on a Dask cluster (metapose_geom.distributed), on loopback: two local
workers give solve_batch's bits; a worker killed mid-run, or the client killed and rerun, still
give them, with nothing lost or duplicated; stage 2 with a weights file runs on the workers; a
rerun of another method, options or input is refused; the command's errors are one line, exit 2."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from metapose_geom import cli  # noqa: E402
from metapose_geom.datasets import DatasetReader, make_datasets  # noqa: E402
from metapose_geom.datasets.solutions import SolutionReader  # noqa: E402
from metapose_geom.distributed import solve_dataset  # noqa: E402
from metapose_geom.solver import BatchSolution, solve_batch  # noqa: E402

FRAMES = 400
#: slow IR (many steps) for the client-kill test, so the run is still going when it is killed
SLOW = {"steps": 3000}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distributed-data")
    (path,) = make_datasets(out, train_frames=FRAMES, test_frames=0, cameras=(3,), seed=11, progress=False)
    return Path(path)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread on loopback, shared by the tests that name its scheduler."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR, host="127.0.0.1") as local:
        yield local


def local_solution(dataset: Path, method: str = "ir", options=None) -> BatchSolution:
    with DatasetReader(dataset) as reader:
        frames = [reader.views(i) for i in range(len(reader))]
    return BatchSolution.from_solutions(solve_batch(frames, method, options, progress=False))


def assert_same(out: Path, reference: BatchSolution, dataset: Path, prefix: str = "ir") -> None:
    """Every field of the solution file equals the local solution bit for bit, keys in frame order."""
    with SolutionReader(out) as reader, DatasetReader(dataset) as source:
        assert len(reader) == reader.frames_planned == len(source)
        np.testing.assert_array_equal(reader.read("keys"), source.read("keys"))
        for suffix, expected in (("pose3d", reference.pose3d), ("x", reference.x),
                                 ("objective", reference.objective), ("reprojection", reference.reprojection),
                                 ("cam_rot", reference.rotation), ("cam_scale", reference.scale),
                                 ("cam_shift", reference.shift), ("diverged", reference.diverged)):
            stored = reader.read(f"{prefix}_{suffix}")
            assert stored.dtype == expected.dtype and np.array_equal(stored, expected), suffix


def test_two_local_workers_give_solve_batchs_bits(dataset, tmp_path):
    out = tmp_path / "ir.h5"
    report = solve_dataset(dataset, out, workers=2, chunk=48, progress=False)
    assert (report.frames, report.solved) == (FRAMES, FRAMES)
    assert_same(out, local_solution(dataset), dataset)
    with SolutionReader(out) as reader:
        assert reader.method == "ir" and reader.options["steps"] == 100
    again = solve_dataset(dataset, out, workers=2, chunk=48, progress=False)  # complete: nothing to do
    assert again.solved == 0


def test_a_worker_killed_mid_run_changes_nothing(dataset, tmp_path):
    import cloudpickle

    import distributed_helpers

    cloudpickle.register_pickle_by_value(distributed_helpers)  # the workers need not import the tests
    marker = tmp_path / "killed"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL, host="127.0.0.1") as local:
        with distributed.Client(local) as client:
            client.register_plugin(distributed_helpers.KillOnce(str(marker), after=96))
        out = tmp_path / "ir.h5"
        report = solve_dataset(dataset, out, scheduler=local.scheduler_address, chunk=32, progress=False)
    assert marker.exists()  # a worker did die
    assert report.solved == FRAMES
    assert_same(out, local_solution(dataset), dataset)


def committed(path: Path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as handle:
            return int(handle.attrs.get("frames_committed", 0))
    except OSError:  # not there yet, or caught mid-write
        return 0


def test_a_killed_client_resumes_with_nothing_lost_or_duplicated(dataset, cluster, tmp_path):
    out = tmp_path / "slow.h5"
    command = [sys.executable, "-m", "metapose_geom.cli", "solve-dataset", str(dataset), "--out", str(out),
               "--workers", "2", "--chunk", "16", "--options", f"steps={SLOW['steps']}", "--no-progress"]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:  # its own session: the kill takes its workers too, as a lost machine would
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + 60
    while committed(out) == 0:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = committed(out)
    assert 0 < at_kill < FRAMES
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert f"{FRAMES - at_kill} solved" in finished.stdout and f"{at_kill} committed before" in finished.stdout
    whole = tmp_path / "whole.h5"
    solve_dataset(dataset, whole, options=SLOW, scheduler=cluster.scheduler_address, chunk=50, progress=False)
    with SolutionReader(out) as resumed, SolutionReader(whole) as reference:
        assert len(resumed) == len(reference) == FRAMES
        for field in resumed.fields:
            assert np.array_equal(resumed.read(field), reference.read(field)), field


def test_metapose_with_a_weights_file_runs_on_the_cluster(dataset, cluster, tmp_path):
    from stage2_models import CONFIGS, random_tensors

    from metapose_geom.stage2.weights import save_weights

    config = CONFIGS["equivariant"]
    weights = save_weights(tmp_path / "tiny.safetensors", config, random_tensors(config))
    options = {"weights": str(weights), "ir_steps": 10}
    out = tmp_path / "metapose.h5"
    solve_dataset(dataset, out, method="metapose", options=options, scheduler=cluster.scheduler_address, chunk=64,
                  progress=False)
    assert_same(out, local_solution(dataset, "metapose", options), dataset, prefix="metapose")
    with SolutionReader(out) as reader:
        assert len(reader.options["weights_sha256"]) == 64


def test_a_rerun_of_another_method_options_or_input_is_refused(dataset, cluster, tmp_path):
    out = tmp_path / "s1.h5"
    address = cluster.scheduler_address
    solve_dataset(dataset, out, method="s1", scheduler=address, progress=False)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="written by another run.*method: the file has s1, this run ir"):
        solve_dataset(dataset, out, method="ir", prefix="s1", scheduler=address, progress=False)
    with pytest.raises(ValueError, match="written by another run.*options"):
        solve_dataset(dataset, out, method="s1", options={"init": "random"}, scheduler=address, progress=False)
    other = tmp_path / "other"
    (second,) = make_datasets(other, train_frames=FRAMES, test_frames=0, cameras=(3,), seed=12, progress=False)
    with pytest.raises(ValueError, match="written by another run.*source"):
        solve_dataset(second, out, method="s1", scheduler=address, progress=False)
    assert out.read_bytes() == before


@pytest.mark.parametrize(("extra", "expected"), [
    (["--workers", "0"], "--workers: expected an integer in [1, 1024], got 0"),
    (["--chunk", "0"], "--chunk: expected an integer"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "--workers: a running cluster (--scheduler)"),
    (["--options", "steps"], "--options: expected NAME=VALUE items"),
    (["--options", "{steps: 1}"], "--options: not a JSON object"),
    (["--options", "stepz=5"], "options: unknown name(s) ['stepz'] for RefineOptions"),
    (["--options", "steps=-1"], "steps"),
    (["--method", "metapose", "--options", "weights=missing.safetensors"], "weights: missing.safetensors: no such"),
])
def test_bad_arguments_are_one_line_and_exit_2(dataset, tmp_path, capsys, extra, expected):
    code = cli.main(["solve-dataset", str(dataset), "--out", str(tmp_path / "out.h5"), "--no-progress", *extra])
    error = capsys.readouterr().err
    assert code == 2 and expected in error and error.count("\n") == 1, error
    assert error.startswith("metapose-geom solve-dataset: ")
    assert not (tmp_path / "out.h5").exists()


def test_missing_input_output_and_dask_are_one_line(dataset, tmp_path, capsys, monkeypatch):
    assert cli.main(["solve-dataset", str(tmp_path / "none.h5"), "--out", str(tmp_path / "o.h5")]) == 2
    assert "none.h5: no such file" in capsys.readouterr().err
    assert cli.main(["solve-dataset", str(dataset), "--out", str(dataset)]) == 2
    assert "is the input" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert cli.main(["solve-dataset", str(dataset), "--out", str(tmp_path / "o.h5")]) == 2
    error = capsys.readouterr().err
    assert 'pip install "metapose-geom[dask]"' in error and error.count("\n") == 1


def test_importing_the_package_does_not_import_dask():
    code = ("import sys, metapose_geom, metapose_geom.distributed, metapose_geom.cli; "
            "assert not any(name.split('.')[0] in ('dask', 'distributed') for name in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
