"""Stage-2 training (metapose_geom.nn.train): gradients reach the trained stage only, one batch is
overfitted, the input standardisation is the inputs' mean and standard deviation, examples follow
(seed, epoch) only and see camera subsets within the range, the teacher loss vanishes at the
teacher, a killed run resumes to the same bits, selection never reads 3D, and the command's errors
are one line with exit code 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from metapose_geom import cli
from metapose_geom._core_loader import core
from metapose_geom.datasets import DatasetReader, DatasetWriter, make_datasets
from metapose_geom.nn.model import stage_inputs
from metapose_geom.nn.train import (
    CHECKPOINT_NAME, WEIGHTS_NAME, TrainConfig, Trainer, loss_terms, reprojection_mse, teacher_distance, train,
)
from metapose_geom.nn.train_data import epoch_plan, load_training_data, make_batch, standardisation_plan
from metapose_geom.solver.options import RefineOptions
from metapose_geom.stage2.weights import load_weights

FRAMES = 160
VAL = 20


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("stage2-data")
    paths = make_datasets(out, train_frames=FRAMES, test_frames=0, cameras=(2, 3), seed=3, progress=False)
    return [str(p) for p in paths]


def tiny(files, **changes) -> TrainConfig:
    values = dict(train_files=tuple(files), val_frames=VAL, camera_min=2, camera_max=3, batch_size=32,
                  examples_per_epoch=64, epochs=2, spec="16,ccat,16", pose_head=(16,), threads=1,
                  standardise_examples=96, seed=5)
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as training runs (TrainConfig.threads): shared cores stay unsubscribed
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- gradients and fitting


def test_gradients_reach_every_parameter_of_the_trained_stage_and_none_of_the_frozen(files):
    trainer = Trainer(tiny(files, max_stages=2, loss={"fwd": 1, "objective": 0.01, "teacher": 0.1, "bone": 0.01}))
    batch = make_batch(trainer.data, trainer.epoch_plan(0)[0])
    for index in (0, 1):
        trainer.standardise(index)
        parameters = trainer.freeze(index)
        optimizer = torch.optim.Adam(parameters, lr=1e-3)
        for _ in range(3):  # the zero-initialised outputs pass gradients on once they have moved
            optimizer.zero_grad(set_to_none=True)
            trainer.total_loss(trainer.batch_terms(index, batch)).backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trainer.model.zero_grad(set_to_none=True)
        trainer.total_loss(trainer.batch_terms(index, batch)).backward()
        for position, stage in enumerate(trainer.model.stages):
            for name, parameter in stage.named_parameters():
                if position == index:
                    assert parameter.grad is not None and parameter.grad.abs().max() > 0, (index, name)
                else:
                    assert parameter.grad is None, (index, position, name)


def test_overfits_one_batch(files):
    trainer = Trainer(tiny(files, spec="128,ccat,128", pose_head=(128,)))
    batch = make_batch(trainer.data, trainer.epoch_plan(0)[0])
    trainer.standardise(0)
    optimizer = torch.optim.Adam(trainer.freeze(0), lr=3e-3)
    first = None
    for _ in range(200):
        loss = trainer.total_loss(trainer.batch_terms(0, batch))
        first = loss.item() if first is None else first
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert trainer.total_loss(trainer.batch_terms(0, batch)).item() < 0.1 * first


# --------------------------------------------------------------------------- data


def test_standardisation_is_the_numpy_mean_and_std_of_the_inputs(files):
    config = tiny(files)
    trainer = Trainer(config)
    trainer.standardise(0)
    shared, camera = [], []
    for plan in standardisation_plan(trainer.data, examples=config.standardise_examples, seed=config.seed,
                                     batch_size=config.batch_size, camera_min=2, camera_max=3):
        batch = make_batch(trainer.data, plan)
        s, c = stage_inputs(trainer.model_config, torch.as_tensor(batch.mixtures), torch.as_tensor(batch.x0).float(), 0)
        shared.append(s.double().numpy())
        camera.append(c.double().numpy().reshape(-1, c.shape[-1]))
    stage = trainer.model.stages[0]
    for rows, mean, std in ((np.concatenate(shared), stage.shared_mean, stage.shared_std),
                            (np.concatenate(camera), stage.camera_mean, stage.camera_std)):
        np.testing.assert_allclose(mean.numpy(), rows.mean(axis=0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(std.numpy(), np.maximum(rows.std(axis=0), 1e-6), rtol=1e-6, atol=1e-7)
    assert stage.shared_std.min() == pytest.approx(1e-6)  # the step index is constant: floored


def test_an_epochs_examples_depend_on_the_seed_and_the_epoch_only(files):
    first, other_recipe = Trainer(tiny(files)), Trainer(tiny(files, lr=0.01, spec="8", loss={"objective": 1}))

    def key(trainer, epoch):
        return [(p.file.tolist(), p.frame.tolist(), p.cameras.tolist()) for p in trainer.epoch_plan(epoch)]

    assert key(first, 3) == key(first, 3) == key(other_recipe, 3)
    assert key(first, 3) != key(first, 4)
    assert key(first, 3) != key(Trainer(tiny(files, seed=6)), 3)


def test_held_out_poses_are_never_trained_on_in_any_file(tmp_path):
    """make-dataset files of several camera counts share their poses by frame index; files of other
    lengths hold out the same indices, so no held-out pose is trained on through a longer file."""
    short = make_datasets(tmp_path / "short", train_frames=50, test_frames=0, cameras=(2,), seed=3, progress=False)
    long = make_datasets(tmp_path / "long", train_frames=80, test_frames=0, cameras=(3,), seed=3, progress=False)
    data = load_training_data([str(short[0]), str(long[0])], val_frames=10, camera_min=2)
    assert [f.train_frames for f in data.files] == [40, 40]
    first, second = data.files
    assert np.array_equal(first.pose3d, second.pose3d[:50])  # the same poses, frame by frame
    held_out = first.pose3d[40:]
    trained = np.concatenate([f.pose3d[:f.train_frames] for f in data.files])
    assert not (held_out[:, None] == trained[None]).all(axis=(2, 3)).any()
    plan = epoch_plan(data, 0, seed=1, examples=400, batch_size=50, camera_min=2, camera_max=3)
    assert all((batch.frame < 40).all() for batch in plan)


def test_camera_subsets_are_within_the_range_in_random_order(files):
    trainer = Trainer(tiny(files, examples_per_epoch=2000, batch_size=50))
    counts = np.array([f.num_cameras for f in trainer.data.files])
    seen, unsorted = set(), False
    plans = trainer.epoch_plan(0)
    for plan in plans + [b.plan for b in trainer.validation_batches()]:
        k = plan.num_cameras
        seen.add(k)
        assert 2 <= k <= 3
        assert (plan.cameras < counts[plan.file][:, None]).all()
        assert all(len(set(row)) == k for row in plan.cameras.tolist())
        unsorted |= bool((np.diff(plan.cameras, axis=1) < 0).any())
    assert seen == {2, 3} and unsorted
    for plan in plans:  # training frames only, never the held-out ones
        assert (plan.frame < FRAMES - VAL).all()
    for batch in trainer.validation_batches():
        assert (batch.plan.frame >= FRAMES - VAL).all()


def test_the_teacher_loss_is_zero_at_the_teachers_solution(files):
    trainer = Trainer(tiny(files, loss={"teacher": 1}))
    batch = make_batch(trainer.data, trainer.epoch_plan(0)[0])
    solutions = trainer.teacher.solutions(trainer.data, batch)
    options = RefineOptions()
    bones, reference = trainer.data.bones()
    expected, *_ = core.refine(batch.mixtures.astype(np.float64), batch.x0, bones,
                               np.tile(reference, (len(batch.plan), 1)), 0.0, options.steps, options.learning_rate,
                               options.beta1, options.beta2, options.epsilon, 0)
    np.testing.assert_array_equal(solutions, expected)
    np.testing.assert_array_equal(trainer.teacher.solutions(trainer.data, batch), expected)  # from the cache
    teacher = torch.as_tensor(solutions)
    C, J = batch.plan.num_cameras, trainer.data.num_joints
    assert teacher_distance(teacher, teacher, C, J).abs().max() < 1e-12
    assert (teacher_distance(torch.as_tensor(batch.x0), teacher, C, J) > 1e-6).all()
    terms = loss_terms(teacher, torch.as_tensor(batch.mixtures).double(), torch.as_tensor(batch.labels).double(),
                       {"teacher": 1.0, "fwd": 1.0}, teacher=teacher)
    assert terms["teacher"].abs().max() < 1e-12
    np.testing.assert_allclose(terms["fwd"].numpy(), reprojection_mse(teacher, torch.as_tensor(batch.labels).double()))


# --------------------------------------------------------------------------- the loop


def test_train_writes_weights_log_and_curves(files, tmp_path):
    config = tiny(files, max_stages=2, loss={"fwd": 1, "bone": 0.01}, bone_input=True)
    path = train(config, tmp_path, progress=False)
    model_config, tensors = load_weights(path)
    assert path == tmp_path / WEIGHTS_NAME and 0 <= model_config.num_stages <= 2
    assert "bones" in model_config.inputs
    assert TrainConfig.from_dict(model_config.notes["training"]) == config
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("stage,epoch,loss_total,loss_fwd")
    assert 3 <= len(lines) <= 5  # two epochs per stage, a second stage only after the first was kept
    assert (tmp_path / "curves.png").stat().st_size > 10_000


CLI_ARGS = ["--val-frames", str(VAL), "--cameras", "2", "3", "--batch-size", "32", "--examples-per-epoch", "320",
            "--epochs", "3", "--stages", "2", "--spec", "32,ccat,32", "--pose-head", "32", "--threads", "1",
            "--seed", "2", "--no-progress"]


def cli_config(files) -> TrainConfig:
    """The TrainConfig the command builds from CLI_ARGS."""
    return TrainConfig(tuple(files), val_frames=VAL, camera_min=2, camera_max=3, batch_size=32,
                       examples_per_epoch=320, epochs=3, max_stages=2, spec="32,ccat,32", pose_head=(32,),
                       threads=1, seed=2)


def test_a_killed_run_resumes_to_the_same_bits(files, tmp_path):
    reference = train(cli_config(files), tmp_path / "whole", progress=False)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "metapose_geom.cli", "train", *files, "--out", str(out), *CLI_ARGS]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while not (out / CHECKPOINT_NAME).exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert process.poll() is None  # still training: the kill interrupts it
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows_at_kill = len((out / "log.csv").read_text().splitlines()) - 1 if (out / "log.csv").exists() else 0
    assert rows_at_kill < 6
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert (out / WEIGHTS_NAME).read_bytes() == reference.read_bytes()
    _, resumed = load_weights(out / WEIGHTS_NAME)
    _, whole = load_weights(reference)
    assert resumed.keys() == whole.keys() and all(np.array_equal(resumed[k], whole[k]) for k in whole)
    log = (out / "log.csv").read_text().splitlines()
    assert [line.split(",")[:8] for line in log] == [
        line.split(",")[:8] for line in (tmp_path / "whole" / "log.csv").read_text().splitlines()]


def test_resuming_with_another_config_is_an_error(files, tmp_path):
    train(tiny(files, epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different training config \(changed: lr\)"):
        train(tiny(files, epochs=1, lr=2e-3), tmp_path, progress=False)
    train(tiny(files, epochs=1, lr=2e-3), tmp_path, progress=False, resume=False)  # starting over is fine


# --------------------------------------------------------------------------- never 3D


def _copy_without_pose3d(source: str, target: Path) -> str:
    with DatasetReader(source) as reader:
        fields = ("heatmaps", "pose2d_pred", "pose3d_epi_pred", "bboxes", "keys", "pose2d_gt")
        chunk = {name: reader.read(name) for name in fields}
        with DatasetWriter(target, reader.num_cameras, fields=fields, num_components=reader.num_components) as writer:
            writer.append(chunk)
    return str(target)


def test_selection_never_reads_3d(files, tmp_path):
    config = tiny(files, epochs=3)
    original = train(config, tmp_path / "original", progress=False)
    corrupted = []
    for path in files:
        copy = tmp_path / Path(path).name
        copy.write_bytes(Path(path).read_bytes())
        with h5py.File(copy, "r+") as handle:
            handle["pose3d"][...] = np.random.default_rng(0).normal(size=handle["pose3d"].shape) * 1e4
        corrupted.append(str(copy))
    changed = train(replace(config, train_files=tuple(corrupted)), tmp_path / "corrupted", progress=False)
    _, a = load_weights(original)
    _, b = load_weights(changed)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    no_3d = [_copy_without_pose3d(path, tmp_path / f"no3d_{Path(path).name}") for path in files]
    plain = train(replace(config, train_files=tuple(no_3d)), tmp_path / "no3d", progress=False)
    _, c = load_weights(plain)
    assert a.keys() == c.keys() and all(np.array_equal(a[k], c[k]) for k in a)
    rows = (tmp_path / "no3d" / "log.csv").read_text().splitlines()[1:]
    assert all(row.split(",")[8] == "nan" for row in rows)  # val_pmpjpe_mm: nothing to compare with


# --------------------------------------------------------------------------- user errors


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("metapose-geom train: "), err
    return err[len("metapose-geom train: "):].strip()


@pytest.mark.parametrize("extra, expected", [
    (["--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
    (["--cameras", "1", "3"], "--cameras: expected an integer in [2, 8], got 1"),
    (["--cameras", "3", "2"], "--cameras: 3 is above camera_max 2"),
    (["--loss", "fwd"], "--loss: expected NAME=WEIGHT items such as fwd=1 objective=0.1, got 'fwd'"),
    (["--loss", "depth=1"], "--loss: expected one of ('fwd', 'objective', 'teacher', 'bone'), got 'depth'"),
    (["--loss", "fwd=0"], "--loss: at least one weight must be above 0"),
    (["--spec", "16,bad"], "--spec: expected widths (1..65536) and 'ccat' / 'cn' blocks, got 'bad'"),
    (["--kind", "flat", "--num-cameras", "4"], "--num-cameras: a flat model sees exactly 4 cameras"),
    (["--inputs", "pose", "bones"], "--inputs: 'bones' is switched by bone_input"),
    (["--lr", "0"], "--lr: expected a finite number in (0.0, 1.0], got 0.0"),
    (["--val-frames", str(FRAMES)], "160 frames, but 160 are held out for validation"),
])
def test_bad_arguments_are_one_line_and_exit_2(files, tmp_path, capsys, extra, expected):
    code = cli.main(["train", *files, "--out", str(tmp_path / "out"), "--no-progress", "--threads", "1", *extra])
    assert code == 2
    assert expected in one_line(capsys)


def test_missing_files_and_torch_are_one_line(files, tmp_path, capsys, monkeypatch):
    assert cli.main(["train", str(tmp_path / "absent.h5"), "--out", str(tmp_path / "out")]) == 2
    assert one_line(capsys) == f"{tmp_path / 'absent.h5'}: no such file"
    monkeypatch.setitem(sys.modules, "torch", None)
    assert cli.main(["train", *files, "--out", str(tmp_path / "out")]) == 2
    assert one_line(capsys) == 'training needs torch; pip install "metapose-geom[train]"'
    assert not (tmp_path / "out").exists()


def test_config_round_trips_through_json(files):
    config = tiny(files, loss={"fwd": 1, "teacher": 0.5}, bone_input=True)
    import json

    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match=r"config: unknown field\(s\) \['speed'\]"):
        TrainConfig.from_dict(dict(config.to_dict(), speed=1))
    assert os.fspath(config.train_files[0]) == files[0]
