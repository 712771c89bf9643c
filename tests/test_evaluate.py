"""The evaluation tables: scenes rebuilt from a dataset file, camera subsets, an end-to-end run of
``evaluate`` on a tiny synthetic file (rows, consistency, determinism), the table,
the CLI's outputs, and the AniPose rows when aniposelib is installed."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import types

import h5py
import numpy as np
import pytest

from metapose_geom import cli, synth
from metapose_geom.datasets import DatasetReader, DatasetWriter, REQUIRED_FIELDS, build_synthetic_dataset, synthetic_frames
from metapose_geom.evaluation import (
    ABLATION_METHODS, ANIPOSE_CACHE_NAME, CSV_COLUMNS, DEFAULT_METHODS, METHODS, S2_IR_STEPS, AniPoseCache,
    AniPoseTask, Evaluation, Row, anipose_runs, camera_subsets, evaluate, format_markdown, load_data, score,
)

SEED, FRAMES, CAMERAS = 31, 8, 4
SOLVER_METHODS = ("s1", "ir", "ir-gt-init", "ir-gt-mixtures", "ir-weak-labels")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("evaluate") / "tiny_4cam.h5"
    return build_synthetic_dataset(path, FRAMES, CAMERAS, SEED, split="test", progress=False)


@pytest.fixture(scope="module")
def result(dataset) -> Evaluation:
    return evaluate(dataset, cameras=(2, 3, 4), methods=SOLVER_METHODS, progress=False)


class TestScenesFromTheFile:
    def test_rebuilt_scene_equals_the_generated_one(self, dataset):
        data = load_data(dataset, None, {"oracle"})
        for frame in (0, FRAMES - 1):
            rebuilt = data.scene(frame, tuple(range(CAMERAS)))
            original = synth.make_scene(np.random.default_rng([SEED, frame]), CAMERAS)
            for name in ("pose3d", "rotation", "translation", "intrinsics", "distortion", "image_size", "pose3d_cam",
                         "pose2d", "boxes", "mixtures", "mono3d", "occluded", "confused"):
                np.testing.assert_allclose(getattr(rebuilt, name), getattr(original, name), rtol=1e-12, atol=1e-9,
                                           err_msg=name)
            # the weak-perspective labels the oracles use are the file's pose2d_repr
            with DatasetReader(dataset) as reader:
                np.testing.assert_allclose(rebuilt.weak_labels(), reader.read("pose2d_repr", frame, frame + 1)[0],
                                           rtol=1e-12, atol=1e-12)

    def test_a_subset_scene_is_the_scene_of_those_cameras(self, dataset):
        data = load_data(dataset, 2, {"oracle"})
        full, subset = data.scene(1, (0, 1, 2, 3)), data.scene(1, (1, 3))
        np.testing.assert_allclose(subset.pose3d_cam, full.pose3d_cam[[1, 3]])
        np.testing.assert_allclose(subset.gt_mono3d(), full.gt_mono3d()[[1, 3]], rtol=1e-12, atol=1e-12)
        views = data.views(1, (1, 3), METHODS["ir-gt-init"])
        np.testing.assert_allclose(views.mono3d, full.gt_mono3d()[[1, 3]], rtol=1e-12, atol=1e-12)
        plain = data.views(1, (1, 3), METHODS["ir"])
        np.testing.assert_array_equal(plain.mixtures, full.mixtures[[1, 3]])


class TestCameraSubsets:
    def test_first_and_all(self):
        assert camera_subsets(4, 2) == [(0, 1)]
        assert camera_subsets(4, 3, "all") == [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)]
        assert len(camera_subsets(4, 2, "all")) == 6
        assert camera_subsets(4, 4, "all") == [(0, 1, 2, 3)]

    @pytest.mark.parametrize("count, mode", [(5, "first"), (1, "first"), (2, "some")])
    def test_bad(self, count, mode):
        with pytest.raises(ValueError, match="cameras|subsets"):
            camera_subsets(4, count, mode)


class TestEvaluate:
    def test_every_requested_row_is_present_in_order(self, result):
        assert [(row.cameras, row.method) for row in result.rows] == [
            (count, method) for count in (2, 3, 4) for method in SOLVER_METHODS
        ]
        for row in result.rows:
            assert row.frames == FRAMES and row.subsets == 1 and row.failures == 0
            assert row.pmpjpe.shape == row.nmpjpe.shape == row.pck.shape == (FRAMES,)
            assert row.per_joint.shape == (17,)
            assert np.isfinite(row.pmpjpe).all() and np.isfinite(row.nmpjpe).all() and np.isfinite(row.per_joint).all()
            assert ((row.pck >= 0) & (row.pck <= 1)).all() and row.ms_per_frame > 0
            np.testing.assert_allclose(row.per_joint.mean(), row.pmpjpe.mean(), rtol=1e-12)

    def test_the_table_is_consistent(self, result):
        for count in (2, 3, 4):
            pmpjpe = {method: result.row(method, count).pmpjpe.mean() for method in SOLVER_METHODS}
            assert pmpjpe["ir-gt-init"] < pmpjpe["s1"]
            assert pmpjpe["ir"] < pmpjpe["s1"]
            assert pmpjpe["ir-gt-mixtures"] < pmpjpe["ir"]
            # perfect weak-perspective evidence leaves only the refiner's own error
            assert pmpjpe["ir-weak-labels"] == min(pmpjpe.values())
        assert result.row("ir", 4).pmpjpe.mean() < result.row("ir", 2).pmpjpe.mean()

    def test_deterministic(self, dataset, result):
        again = evaluate(dataset, cameras=(2, 3, 4), methods=SOLVER_METHODS, progress=False)
        for first, second in zip(result.rows, again.rows):
            np.testing.assert_array_equal(first.pmpjpe, second.pmpjpe)
            np.testing.assert_array_equal(first.nmpjpe, second.nmpjpe)

    def test_all_subsets_average_every_subset(self, dataset):
        frames = 3
        everything = evaluate(dataset, cameras=(2,), frames=frames, methods=("s1",), subsets="all", progress=False)
        row = everything.row("s1", 2)
        assert row.subsets == 6 and row.pmpjpe.shape == (6 * frames,)
        first = evaluate(dataset, cameras=(2,), frames=frames, methods=("s1",), progress=False).row("s1", 2)
        np.testing.assert_array_equal(row.pmpjpe[:frames], first.pmpjpe)  # subset (0, 1) comes first

    def test_markdown_and_rows_agree(self, result):
        lines = format_markdown(result).splitlines()
        assert len(lines) == 2 + len(result.rows)
        cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
        assert cells[:3] == ["S1", "2", str(FRAMES)]
        assert float(cells[3]) == pytest.approx(result.rows[0].pmpjpe.mean(), abs=0.05)

    @pytest.mark.parametrize("kwargs, match", [
        (dict(methods=("s1", "magic")), "methods"),
        (dict(methods=("s1", "s1")), "methods"),
        (dict(methods=()), "methods"),
        (dict(cameras=(5,)), "cameras"),
        (dict(cameras=(2, 2)), "cameras"),
        (dict(frames=FRAMES + 1), "frames"),
        (dict(frames=0), "frames"),
        (dict(subsets="some"), "subsets"),
        (dict(workers=0), "workers"),
    ])
    def test_bad_arguments(self, dataset, kwargs, match):
        with pytest.raises(ValueError, match=match):
            evaluate(dataset, progress=False, **{"methods": ("s1",), **kwargs})

    def test_a_file_without_ground_truth_is_refused(self, tmp_path):
        path = tmp_path / "no_truth.h5"
        chunk = synthetic_frames(SEED, 0, 2, 2)
        with DatasetWriter(path, num_cameras=2) as writer:
            writer.append({name: chunk[name] for name in REQUIRED_FIELDS})
        with pytest.raises(ValueError, match="ground-truth field"):
            evaluate(path, cameras=(2,), methods=("s1",), progress=False)

    def test_missing_aniposelib_fails_before_any_work_and_says_how_to_install(self, monkeypatch, tmp_path):
        monkeypatch.setitem(sys.modules, "aniposelib", None)
        with pytest.raises(ImportError, match=r"pip install 'metapose-geom\[anipose\]'"):
            evaluate(tmp_path / "not_even_read.h5", methods=("s1", "anipose-gt"), progress=False)


def poke(source, path, field: str, index: tuple, value=np.nan):
    """A copy of the dataset ``source`` at ``path`` whose ``field[index]`` is ``value``."""
    shutil.copy(source, path)
    with h5py.File(path, "r+") as handle:
        frame = handle[field][index[0]]
        frame[index[1:]] = value
        handle[field][index[0]] = frame
    return path


def damage_block(path, field: str, first_frame: int) -> None:
    """Overwrite the stored (gzip-compressed) block of ``field`` that holds ``first_frame`` with 0xff
    bytes, as a bad sector or a torn copy would; HDF5 then fails to decompress it."""
    with h5py.File(path, "r") as handle:
        dataset = handle[field]
        info = dataset.id.get_chunk_info_by_coord((first_frame,) + (0,) * (dataset.ndim - 1))
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\xff" * info.size)


class TestBadFrames:
    """One frame with NaN, or a stored block that cannot be read, is named (file, frame, field);
    with skip_bad_frames=True such frames are left out of every row and counted in the report."""

    @pytest.mark.parametrize("field, index", [
        ("heatmaps", (3, 1, 5, 0, 1)), ("pose3d_epi_pred", (3, 0, 2, 2)), ("bboxes", (3, 1, 2)),
        ("pose3d", (3, 7, 0)), ("cam_rot", (3, 0, 1, 1)), ("cam_pose3d", (3, 1, 0)),
    ])
    def test_a_nan_frame_is_named(self, dataset, tmp_path, field, index):
        path = poke(dataset, tmp_path / "nan.h5", field, index)
        with pytest.raises(ValueError, match=rf"nan\.h5: frame 3: {field}: .*(NaN|not finite).*skip_bad_frames"):
            evaluate(path, cameras=(2,), methods=("s1",), progress=False)

    def test_other_bad_values_are_named(self, dataset, tmp_path):
        path = poke(dataset, tmp_path / "box.h5", "bboxes", (5, 1, 2), 0.0)
        with pytest.raises(ValueError, match=r"frame 5: bboxes: .*width and height must be > 0"):
            evaluate(path, cameras=(2,), methods=("s1",), progress=False)

    def test_a_camera_not_evaluated_does_not_count(self, dataset, tmp_path):
        path = poke(dataset, tmp_path / "cam3.h5", "heatmaps", (3, 3, 5, 0, 1))
        assert evaluate(path, cameras=(2, 3), methods=("s1",), progress=False).row("s1", 3).frames == FRAMES
        with pytest.raises(ValueError, match=r"frame 3: heatmaps: .*camera 3"):
            evaluate(path, cameras=(4,), methods=("s1",), progress=False)

    def test_skipped_frames_are_left_out_and_counted(self, dataset, tmp_path, result):
        path = poke(dataset, tmp_path / "nan.h5", "pose3d_epi_pred", (3, 0, 2, 2))
        path = poke(path, tmp_path / "nan2.h5", "pose3d", (6, 7, 0))
        skipped = evaluate(path, cameras=(2, 3, 4), methods=SOLVER_METHODS, progress=False, skip_bad_frames=True)
        assert skipped.settings["skipped_frames"] == 2
        assert list(skipped.skipped_frames) == [3, 6]
        assert skipped.skipped_frames[3].startswith("pose3d_epi_pred:") and skipped.skipped_frames[6].startswith("pose3d:")
        for row in skipped.rows:
            whole = result.row(row.method, row.cameras)
            assert row.frames == FRAMES - 2 and row.pmpjpe.shape == (FRAMES - 2,)
            # each frame is solved on its own: the other frames' errors are those of the full run
            np.testing.assert_allclose(row.pmpjpe, np.delete(whole.pmpjpe, [3, 6]), rtol=1e-12)
            np.testing.assert_allclose(row.pck, np.delete(whole.pck, [3, 6]), rtol=1e-12)

    def test_a_damaged_block_is_named_and_can_be_skipped(self, tmp_path):
        path = build_synthetic_dataset(tmp_path / "blocks.h5", 8, 2, SEED, chunk=2, progress=False)  # blocks of 2
        damage_block(path, "pose3d_epi_pred", 4)
        with pytest.raises((ValueError, OSError), match=r"blocks\.h5: frame 4: pose3d_epi_pred: .*frames 4-5"):
            evaluate(path, cameras=(2,), methods=("s1", "ir"), progress=False)
        result = evaluate(path, cameras=(2,), methods=("s1", "ir"), progress=False, skip_bad_frames=True)
        assert result.settings["skipped_frames"] == 2 and sorted(result.skipped_frames) == [4, 5]
        assert all(row.frames == 6 and np.isfinite(row.pmpjpe).all() for row in result.rows)

    def test_every_frame_bad(self, dataset, tmp_path):
        path = poke(dataset, tmp_path / "nan.h5", "pose3d", (slice(None), 0, 0))
        with pytest.raises(ValueError, match="frame 0: pose3d"):
            evaluate(path, cameras=(2,), methods=("s1",), progress=False, frames=1)
        with pytest.raises(ValueError, match="no frame left"):
            evaluate(path, cameras=(2,), methods=("s1",), progress=False, frames=1, skip_bad_frames=True)

    def test_the_command_skips_and_reports(self, dataset, tmp_path, capsys):
        path = poke(dataset, tmp_path / "nan.h5", "heatmaps", (2, 0, 5, 0, 1))
        argv = ["evaluate", str(path), "--cameras", "2", "--methods", "s1", "--out", str(tmp_path / "out"),
                "--no-progress"]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "frame 2: heatmaps" in err and "--skip-bad-frames" in err
        assert not (tmp_path / "out").exists()
        assert cli.main(argv + ["--skip-bad-frames"]) == 0
        out = capsys.readouterr().out
        report = (tmp_path / "out" / "evaluation.md").read_text()
        for text in (out, report):
            assert "skipped 1 bad frame" in text and "frame 2 (heatmaps:" in text
        assert "| S1 | 2 | 7 |" in report


class TestReport:
    def row(self, **changes) -> Row:
        values = dict(method="ir", label="S1+IR", cameras=3, frames=10, subsets=1, pmpjpe=np.array([20.0, 30.0]),
                      nmpjpe=np.array([40.0, 44.0]), pck=np.array([0.9, 1.0]), per_joint=np.full(17, 25.0),
                      ms_per_frame=0.1234)
        return Row(**(values | changes))

    def test_the_evaluation_table(self):
        rows = [self.row(), self.row(method="anipose-gt", label="AniPose, GT start", subsets=3, failures=2,
                                     ms_per_frame=1757.4)]
        table = format_markdown(Evaluation(rows, "x.h5", ("pelvis",) * 17))
        assert table.splitlines() == [
            "| method | cameras | frames | PMPJPE mm | PMPJPE median mm | NMPJPE mm | PCK@150 % | ms / frame |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            "| S1+IR | 3 | 10 | 25.0 | 25.0 | 42.0 | 95.0 | 0.123 |",
            "| AniPose, GT start | 3 | 10 x 3 (2 failed) | 25.0 | 25.0 | 42.0 | 95.0 | 1757 |",
        ]

    def test_a_row_without_frames(self):
        row = score("s1", "S1", 2, 1, 1, np.full((1, 17, 3), np.nan), np.zeros((1, 17, 3)), np.zeros((1, 17, 3)), 1.0)
        assert row.failures == 1 and row.pmpjpe.shape == (0,) and np.isnan(row.per_joint).all()
        assert np.isnan(row.summary()["pmpjpe_mm"]) and np.isnan(row.summary()["pmpjpe_median_mm"])

    def test_the_command_line_method_list_reads_no_file_format(self):
        code = ("import sys, metapose_geom.cli\n"
                "from metapose_geom.evaluation.methods import DEFAULT_METHODS\n"
                "print(*sorted(m for m in ('h5py', 'metapose_geom.datasets', 'metapose_geom.evaluation.runs') "
                "if m in sys.modules) or ['none'])\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["none"]


class TestCommand:
    def test_writes_table_csv_and_plots(self, dataset, tmp_path, capsys):
        out = tmp_path / "evaluation"
        argv = ["evaluate", str(dataset), "--cameras", "2", "4", "--frames", "5", "--methods", "s1", "ir",
                "ir-gt-init", "--out", str(out), "--no-progress"]
        assert cli.main(argv) == 0
        table = (out / "evaluation.md").read_text()
        assert "metapose-geom evaluate" in table and "| IR oracle: GT init | 4 | 5 |" in table
        with (out / "evaluation.csv").open() as handle:
            records = list(csv.DictReader(handle))
        assert tuple(records[0]) == CSV_COLUMNS
        assert [(r["method"], int(r["cameras"])) for r in records] == [
            (m, c) for c in (2, 4) for m in ("s1", "ir", "ir-gt-init")
        ]
        assert all(np.isfinite(float(r["pmpjpe_mm"])) for r in records)
        for name in ("error_vs_cameras.png", "per_joint_error.png"):
            assert (out / name).stat().st_size > 30_000
        assert "| S1+IR | 2 | 5 |" in capsys.readouterr().out

    def test_missing_aniposelib_exits_with_the_install_command(self, dataset, tmp_path, monkeypatch, capsys):
        monkeypatch.setitem(sys.modules, "aniposelib", None)
        assert cli.main(["evaluate", str(dataset), "--out", str(tmp_path), "--no-progress"]) == 2
        assert "pip install" in capsys.readouterr().err

    def test_bad_arguments(self, dataset, tmp_path, capsys):
        with pytest.raises(SystemExit):  # argparse: not one of the choices
            cli.main(["evaluate", str(dataset), "--methods", "nonsense"])
        capsys.readouterr()
        assert cli.main(["evaluate", str(dataset), "--frames", "0", "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == "metapose-geom evaluate: --frames: expected an integer >= 1, got 0\n"
        assert not (tmp_path / "out").exists()  # more: test_cli.py

    def test_default_methods_are_all_but_the_ablations(self):
        assert DEFAULT_METHODS == tuple(name for name in METHODS if name not in ABLATION_METHODS)
        assert {"anipose-gt", "anipose-random", "ir-gt-init", "ir-gt-mixtures", "ir-weak-labels", "s2",
                "s2-ir"} <= set(DEFAULT_METHODS)
        assert ABLATION_METHODS and all(name.startswith("s2-ablation-") for name in ABLATION_METHODS)

    def test_an_ablation_without_its_folder_is_an_error_before_any_work(self, dataset, tmp_path, capsys):
        with pytest.raises(ValueError, match="stage2_ablations"):
            evaluate(dataset, cameras=(2,), frames=2, methods=("s1", "s2-ablation-flat"), progress=False)
        argv = ["evaluate", str(dataset), "--methods", "s2-ablation-objective", "--out", str(tmp_path / "out"),
                "--no-progress"]
        assert cli.main(argv) == 2 and "--stage2-ablations" in capsys.readouterr().err

    def test_an_ablation_reads_its_weights_file_by_camera_count(self, dataset, tmp_path):
        spec = METHODS["s2-ablation-flat"]
        options = spec.solver_options(3, str(tmp_path))
        assert options == {"weights": str(tmp_path / "flat-3cam.safetensors")}
        assert METHODS["s2-ir"].solver_options(2, None) == {"ir_steps": S2_IR_STEPS}


class TestAniPoseRows:
    """Needs aniposelib (``pip install 'metapose-geom[anipose]'``)."""

    def test_both_starts_give_finite_rows(self, dataset):
        pytest.importorskip("aniposelib")
        result = evaluate(dataset, cameras=(3,), frames=2, methods=("s1", "anipose-gt", "anipose-random"),
                          anipose_adjust_intrinsics=False, progress=False)
        assert [row.method for row in result.rows] == ["s1", "anipose-gt", "anipose-random"]
        for row in result.rows:
            assert row.frames == 2 and row.failures == 0
            assert np.isfinite(row.pmpjpe).all() and np.isfinite(row.nmpjpe).all() and row.ms_per_frame > 0
        # calibrated cameras: triangulation from the true start is far better than monocular guesses
        assert result.row("anipose-gt", 3).pmpjpe.mean() < result.row("s1", 3).pmpjpe.mean()


class TestAniPoseCache:
    """The on-disk AniPose results: an interrupted run resumes with only the missing batches. A
    stand-in for aniposelib returns a pose made from the batch's inputs, so no aniposelib is needed."""

    METHODS = ("s1", "anipose-gt", "anipose-random")

    @pytest.fixture
    def fake_anipose(self, monkeypatch):
        """Replace the AniPose batch by a deterministic stand-in; returns its call log and switches."""
        from metapose_geom import anipose

        state = {"calls": [], "fail_after": None}

        def run(task):
            if state["fail_after"] is not None and len(state["calls"]) >= state["fail_after"]:
                raise RuntimeError("killed")
            state["calls"].append(task.first)
            n, joints = task.points.shape[0], task.points.shape[2]
            depth = np.full((n, joints, 1), 1000.0 + task.start.translation[0, 2] + task.seed % 97)
            return task.first, np.concatenate([task.points[:, 0], depth], axis=-1), 0.25

        monkeypatch.setattr(anipose, "require_aniposelib", lambda: None)
        monkeypatch.setattr(anipose_runs, "run_anipose_task", run)
        return state

    def _evaluate(self, dataset, cache, **kwargs):
        return evaluate(dataset, cameras=(2, 3), methods=self.METHODS, cache=cache, progress=False, **kwargs)

    def test_an_interrupted_run_resumes_with_only_the_missing_batches(self, dataset, tmp_path, fake_anipose):
        tasks = 2 * 2 * FRAMES  # two AniPose methods, two camera counts, one batch per frame
        whole = self._evaluate(dataset, tmp_path / "whole.bin")
        assert len(fake_anipose["calls"]) == tasks and whole.settings["anipose_batches_from_cache"] == 0

        fake_anipose["calls"].clear()
        fake_anipose["fail_after"] = 5
        with pytest.raises(RuntimeError, match="killed"):
            self._evaluate(dataset, tmp_path / "resumed.bin")
        with AniPoseCache(tmp_path / "resumed.bin") as cache:
            assert len(cache) == 5

        fake_anipose["calls"].clear()
        fake_anipose["fail_after"] = None
        resumed = self._evaluate(dataset, tmp_path / "resumed.bin")
        assert len(fake_anipose["calls"]) == tasks - 5
        assert resumed.settings["anipose_batches_from_cache"] == 5
        for a, b in zip(whole.rows, resumed.rows):
            assert (a.method, a.cameras) == (b.method, b.cameras)
            np.testing.assert_array_equal(a.pmpjpe, b.pmpjpe)
            np.testing.assert_array_equal(a.nmpjpe, b.nmpjpe)
        assert whole.row("anipose-gt", 3).ms_per_frame == resumed.row("anipose-gt", 3).ms_per_frame == 250.0

        fake_anipose["calls"].clear()
        again = self._evaluate(dataset, tmp_path / "resumed.bin")
        assert fake_anipose["calls"] == [] and again.settings["anipose_batches_from_cache"] == tasks

    def test_other_inputs_are_solved_afresh(self, dataset, tmp_path, fake_anipose):
        self._evaluate(dataset, tmp_path / "cache.bin")
        fake_anipose["calls"].clear()
        self._evaluate(dataset, tmp_path / "cache.bin", seed=1)  # other perturbed starts and aniposelib seeds
        assert len(fake_anipose["calls"]) == 2 * 2 * FRAMES
        fake_anipose["calls"].clear()
        self._evaluate(dataset, tmp_path / "cache.bin", anipose_adjust_intrinsics=False)
        assert len(fake_anipose["calls"]) == 2 * 2 * FRAMES

    def test_a_record_cut_short_is_dropped(self, dataset, tmp_path, fake_anipose):
        path = tmp_path / "cache.bin"
        self._evaluate(dataset, path)
        size = path.stat().st_size
        with path.open("ab") as handle:
            handle.write(b"\x01" * 60)  # a record header and part of a pose: a kill while writing
        with AniPoseCache(path) as cache:
            assert len(cache) == 2 * 2 * FRAMES
        assert path.stat().st_size == size
        fake_anipose["calls"].clear()
        self._evaluate(dataset, path)
        assert fake_anipose["calls"] == []

    def test_a_file_that_is_not_a_cache_is_refused(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("something else entirely")
        with pytest.raises(ValueError, match="not an AniPose cache"):
            AniPoseCache(path)
        assert path.read_text() == "something else entirely"

    def test_the_command_keeps_the_cache_in_the_output_folder(self, dataset, tmp_path, fake_anipose):
        argv = ["evaluate", str(dataset), "--cameras", "2", "--frames", "3", "--methods", "s1", "anipose-gt",
                "--no-progress"]
        assert cli.main(argv + ["--out", str(tmp_path / "a")]) == 0
        with AniPoseCache(tmp_path / "a" / ANIPOSE_CACHE_NAME) as cache:
            assert len(cache) == 3
        assert cli.main(argv + ["--out", str(tmp_path / "b"), "--no-cache"]) == 0
        assert not (tmp_path / "b" / ANIPOSE_CACHE_NAME).exists()
        assert "anipose_batches_from_cache" not in (tmp_path / "b" / "evaluation.md").read_text()


class TestAniPoseCacheSafety:
    def test_a_cache_in_use_by_another_run_is_refused(self, tmp_path):
        with AniPoseCache(tmp_path / "cache.bin"):
            with pytest.raises(ValueError, match="in use by another run"):
                AniPoseCache(tmp_path / "cache.bin")
        AniPoseCache(tmp_path / "cache.bin").close()  # free again once the first run closed it

    def test_the_key_covers_the_library_versions(self, tmp_path, monkeypatch):
        from metapose_geom.anipose import scene_cameras

        scene = synth.make_scene(0, num_cameras=2)
        task = AniPoseTask(0, scene.pose2d[None], scene_cameras(scene), True, 7)
        with AniPoseCache(tmp_path / "a.bin") as cache:
            before = cache.key(task)
            assert cache.key(task) == before
            assert cache.key(AniPoseTask(0, scene.pose2d[None] + 1e-9, task.start, True, 7)) != before
            assert cache.key(AniPoseTask(0, task.points, task.start, False, 7)) != before
        from metapose_geom import anipose

        monkeypatch.setattr(anipose, "ADAPTER_VERSION", anipose.ADAPTER_VERSION + 1)
        with AniPoseCache(tmp_path / "b.bin") as cache:
            assert cache.key(task) != before

    def test_the_command_refuses_conflicting_or_empty_cache_options(self, dataset, tmp_path, capsys):
        with pytest.raises(SystemExit):  # argparse: mutually exclusive
            cli.main(["evaluate", str(dataset), "--cache", str(tmp_path / "c.bin"), "--no-cache"])
        capsys.readouterr()
        assert cli.main(["evaluate", str(dataset), "--cache", "", "--out", str(tmp_path)]) == 2
        assert capsys.readouterr().err == "metapose-geom evaluate: --cache: expected a file path\n"

    def test_the_command_reports_a_file_that_is_not_a_cache(self, dataset, tmp_path, capsys, monkeypatch):
        from metapose_geom import anipose

        monkeypatch.setattr(anipose, "require_aniposelib", lambda: None)
        (tmp_path / "notes.txt").write_text("not a cache")
        argv = ["evaluate", str(dataset), "--frames", "2", "--cameras", "2", "--methods", "anipose-gt",
                "--cache", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out"), "--no-progress"]
        assert cli.main(argv) == 2
        assert "not an AniPose cache" in capsys.readouterr().err


def test_a_batch_aniposelib_fails_on_counts_as_a_failure_and_the_run_goes_on(dataset, monkeypatch):
    """aniposelib raises from inside its adjustment on some starts (ZeroDivisionError when an
    iteration keeps no point); the evaluation records that frame as failed and carries on."""
    from metapose_geom import anipose

    def solve(points, start, adjust_intrinsics=True, seed=0):
        if np.isclose(points[0, 0, 0, 0], failing):
            raise anipose.AniPoseError("aniposelib failed on these points: ZeroDivisionError", 0.5)
        n, joints = points.shape[0], points.shape[2]
        return types.SimpleNamespace(pose3d=np.ones((n, joints, 3)), seconds=0.25)

    monkeypatch.setattr(anipose, "require_aniposelib", lambda: None)
    monkeypatch.setattr(anipose, "anipose_solve", solve)
    with DatasetReader(dataset) as reader:
        failing = anipose.mixture_mean_pixels(reader.read("heatmaps", 2, 3), reader.read("bboxes", 2, 3))[0, 0, 0, 0]
    result = evaluate(dataset, cameras=(2,), frames=4, methods=("anipose-gt",), progress=False)
    row = result.row("anipose-gt", 2)
    assert row.failures == 1 and row.pmpjpe.shape == (3,) and np.isfinite(row.pmpjpe).all()
    assert row.ms_per_frame == pytest.approx(1e3 * (3 * 0.25 + 0.5) / 4)
    assert "(1 failed)" in format_markdown(result)
