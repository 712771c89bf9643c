"""Stage-2 training under torchrun (DistributedDataParallel, gloo on loopback): two processes give
one process's weights to float rounding with the same global batch; a two-process run killed after
its first checkpoint resumes to the bits of one that never stopped; batches too small to split are
refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from metapose_geom import cli  # noqa: E402
from metapose_geom.nn.train import CHECKPOINT_NAME, WEIGHTS_NAME, TrainConfig, train  # noqa: E402
from metapose_geom.stage2.weights import load_weights  # noqa: E402

ARGS = ["--epochs", "2", "--examples-per-epoch", "512", "--batch-size", "64", "--stages", "2",
        "--spec", "16,ccat,16", "--pose-head", "16", "--val-frames", "50", "--cameras", "2", "3",
        "--threads", "1", "--seed", "3", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("ddp-data")
    assert cli.main(["make-dataset", "--out", str(out), "--train-frames", "300", "--test-frames", "0",
                     "--cameras", "3", "--no-progress"]) == 0
    return str(out / "synthetic_train_3cam.h5")


def torchrun(data: str, out: Path, processes: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "metapose_geom.cli", "train", data, "--out", str(out), *ARGS]


@pytest.fixture(scope="module")
def two_processes(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp-two")
    finished = subprocess.run(torchrun(data, out), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.count("wrote") == 1  # rank 0 speaks for both
    return out


def test_two_processes_give_one_process_weights(data, two_processes, tmp_path, capsys):
    assert cli.main(["train", data, "--out", str(tmp_path), *ARGS]) == 0
    config_one, one = load_weights(tmp_path / WEIGHTS_NAME)
    config_two, two = load_weights(two_processes / WEIGHTS_NAME)
    assert config_one.num_stages == config_two.num_stages >= 1
    assert one.keys() == two.keys()
    # float32 sums in another order (per-rank means, the all-reduce) grow through 32 Adam steps and a
    # second stage standardised on the first one's outputs: 6e-6 of the norm here
    for name in one:
        assert np.linalg.norm(two[name] - one[name]) <= 1e-4 * np.linalg.norm(one[name]), name
    rows_one = [line.split(",") for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    rows_two = [line.split(",") for line in (two_processes / "log.csv").read_text().splitlines()[1:]]
    assert [row[:2] for row in rows_one] == [row[:2] for row in rows_two]
    for row_one, row_two in zip(rows_one, rows_two):  # loss and validation: the global batch's, on rank 0
        for column in (2, 3, 7):
            assert float(row_two[column]) == pytest.approx(float(row_one[column]), rel=1e-4)


def test_a_killed_two_process_run_resumes_to_the_same_bits(data, two_processes, tmp_path):
    out = tmp_path / "killed"
    command = torchrun(data, out)
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:  # its own session, so the kill takes torchrun and both ranks
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / CHECKPOINT_NAME).exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    rows_at_kill = len((out / "log.csv").read_text().splitlines()) - 1 if (out / "log.csv").exists() else 0
    assert rows_at_kill < 6
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert (out / WEIGHTS_NAME).read_bytes() == (two_processes / WEIGHTS_NAME).read_bytes()


def test_a_batch_smaller_than_the_processes_is_refused(data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    config = TrainConfig((data,), val_frames=50, batch_size=2, examples_per_epoch=8, camera_min=2, camera_max=3)
    with pytest.raises(ValueError, match="batch_size: 2 examples cannot be split among 4 processes"):
        train(config, tmp_path, progress=False)
    config = TrainConfig((data,), val_frames=50, batch_size=16, examples_per_epoch=33, camera_min=2, camera_max=3)
    with pytest.raises(ValueError, match="examples_per_epoch: 33 leaves a last batch of 1 examples"):
        train(config, tmp_path, progress=False)
