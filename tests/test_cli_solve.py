"""``metapose-geom solve`` end to end: a synthetic person seen by a fixed four-camera rig, written as
OpenPose BODY_25 JSON folders (and as an npz), solved, and the written poses compared with the truth;
every bad input gets one line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from metapose_geom import cli, metrics, synth
from metapose_geom.geometry import project_perspective, rodrigues_to_matrix
from metapose_geom.skeletons import skeleton_map
from test_io_openpose import person, write_frame, write_openpose_folder

CAMERAS, FRAMES = 4, 6


def body25_from_h36m(pose: np.ndarray) -> np.ndarray:
    """BODY_25 landmarks (25, 3) mm around an H36M-17 pose (17, 3) mm, y up: the shared joints where they
    are, eyes and ears about the head, toes and heels about the ankles."""
    lateral = pose[4] - pose[1]  # towards the subject's left
    lateral /= np.linalg.norm(lateral)
    up = pose[8] - pose[0]
    up -= (up @ lateral) * lateral
    up /= np.linalg.norm(up)
    forward = np.cross(lateral, up)
    head = pose[10]
    landmarks = {
        "Nose": pose[9], "Neck": pose[8], "RShoulder": pose[14], "RElbow": pose[15], "RWrist": pose[16],
        "LShoulder": pose[11], "LElbow": pose[12], "LWrist": pose[13], "MidHip": pose[0], "RHip": pose[1],
        "RKnee": pose[2], "RAnkle": pose[3], "LHip": pose[4], "LKnee": pose[5], "LAnkle": pose[6],
        "REye": head - 35 * lateral + 70 * forward, "LEye": head + 35 * lateral + 70 * forward,
        "REar": head - 75 * lateral, "LEar": head + 75 * lateral,
        "LBigToe": pose[6] + 150 * forward - 60 * up + 20 * lateral,
        "LSmallToe": pose[6] + 130 * forward - 60 * up + 60 * lateral,
        "LHeel": pose[6] - 50 * forward - 70 * up,
        "RBigToe": pose[3] + 150 * forward - 60 * up - 20 * lateral,
        "RSmallToe": pose[3] + 130 * forward - 60 * up - 60 * lateral,
        "RHeel": pose[3] - 50 * forward - 70 * up,
    }
    names = skeleton_map("body25").source.names
    return np.stack([landmarks[name] for name in names])


@pytest.fixture(scope="module")
def recording():
    """A person turning and stepping in front of a fixed rig: BODY_25 landmarks (F, 25, 3) mm, their
    pixels (C, F, 25, 2) with 1 px noise, the landmarks in each camera's frame (C, F, 25, 3) mm, and
    the H36M-17 truth (F, 17, 3) mm that the BODY_25 map makes of the landmarks."""
    rng = np.random.default_rng(7)
    base = synth.sample_pose(rng)
    rig = synth.sample_cameras(rng, base, CAMERAS)
    landmarks, truth = [], []
    for f in range(FRAMES):
        turn = rodrigues_to_matrix(np.array([0.0, 0.04 * f, 0.0]))
        pose = (base - base[0]) @ turn.T + base[0] + [15.0 * f, 0.0, 0.0]
        points = body25_from_h36m(pose)
        landmarks.append(points)
        truth.append(skeleton_map("body25").apply(points, np.ones(25))[0])
    landmarks = np.stack(landmarks)
    pixels = np.stack([project_perspective(np.repeat(frame[None], CAMERAS, axis=0), *rig[:4]) for frame in landmarks],
                      axis=1) + rng.normal(size=(CAMERAS, FRAMES, 25, 2))
    in_camera = np.einsum("cab,fnb->cfna", rig.rotation, landmarks) + rig.translation[:, None, None, :]
    return landmarks, pixels, in_camera, np.stack(truth)


@pytest.fixture
def json_folder(tmp_path, recording):
    """The recording as JSON folders: camera 3 saw nobody in frame 2, only camera 0 saw frame 4, and
    camera 1 also saw a second, less confident person far off in frame 1."""
    _, pixels, _, _ = recording
    confidences = np.full(pixels.shape[:3], 0.9)
    root = write_openpose_folder(tmp_path / "pose", pixels, confidences, missing={(3, 2), (1, 4), (2, 4), (3, 4)})
    ghost = person(np.random.default_rng(1), 25, centre=(3000.0, 3000.0), spread=100.0, confidence=0.5)
    write_frame(root, "cam02_json", 1, [np.column_stack([pixels[1, 1], confidences[1, 1]]), ghost])
    return root


def one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("metapose-geom solve: ")
    return err[0]


def read_csv_poses(path) -> tuple[list[dict], np.ndarray]:
    with path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    columns = list(records[0])[3:]
    values = np.array([[float(r[c]) if r[c] else np.nan for c in columns] for r in records]).reshape(len(records), 17, 3)
    return records, values


class TestEndToEnd:
    def test_json_folders(self, tmp_path, json_folder, recording, capsys):
        _, _, _, truth = recording
        out = tmp_path / "out"
        code = cli.main(["solve", str(json_folder), "--out", str(out), "--subject-height", "1.8", "--fps", "30",
                         "--no-progress", "--threads", "1"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "4 cameras (cam01_json, cam02_json, cam03_json, cam04_json), 6 frames, body25" in captured.out
        assert "5 of 6 frames solved (ir); skipped: 1 seen by fewer than two cameras" in captured.out
        assert "skipped frame 4: seen by fewer than two cameras" in captured.out
        assert "warning: read_openpose: several people in some frames (cam02_json: 1)" in captured.err
        for name in cli.SOLVE_OUTPUTS:
            assert (out / name).stat().st_size > 0, name
        assert (out / "solve.png").stat().st_size > 30_000
        records, poses = read_csv_poses(out / "poses.csv")
        assert [r["reference_camera"] for r in records] == ["cam01_json"] * 4 + [""] + ["cam01_json"]
        assert np.isnan(poses[4]).all()
        errors = [float(metrics.pmpjpe(poses[f], truth[f])) for f in (0, 1, 2, 3, 5)]
        # PMPJPE rescales the metres onto the truth's mm; weak perspective at 3-6 m costs some mm
        assert np.median(errors) < 30.0, errors
        lengths = np.median(synth.H36M_17.bone_lengths(poses[[0, 1, 2, 3, 5]]), axis=0)
        rest = synth.H36M_17.bone_lengths(synth.H36M_17.rest_pose())
        assert np.median(lengths / rest) * 1700 == pytest.approx(1.8, rel=0.05)  # metres: the subject's height
        trc = (out / "poses.trc").read_text().splitlines()
        assert trc[2].split("\t") == ["30", "30", "6", "17", "m", "30", "0", "6"]

    def test_npz_with_guesses(self, tmp_path, recording, capsys):
        _, pixels, in_camera, truth = recording
        path = tmp_path / "capture.npz"
        np.savez(path, points=pixels, scores=np.full(pixels.shape[:3], 0.8), lifted=in_camera / 1000.0,
                 skeleton="body25", fps=np.float64(25))
        out = tmp_path / "out"
        code = cli.main(["solve", str(path), "--out", str(out), "--keypoints", "points", "--confidences", "scores",
                         "--mono3d", "lifted", "--method", "s1", "--no-progress"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "6 frames, body25, monocular 3D" in captured.out and "6 of 6 frames solved (s1)" in captured.out
        assert "warning: subject_height not given: poses are scaled to a 1.75 m subject" in captured.err
        _, poses = read_csv_poses(out / "poses.csv")
        errors = [float(metrics.pmpjpe(poses[f], truth[f])) for f in range(FRAMES)]
        assert np.median(errors) < 40.0, errors
        with np.load(out / "cameras.npz") as cameras:
            assert cameras["rotation"].shape == (FRAMES, CAMERAS, 3, 3) and str(cameras["method"]) == "s1"

    def test_metapose_with_a_weights_file(self, tmp_path, recording, capsys):
        from metapose_geom.stage2.config import ModelConfig
        from metapose_geom.stage2.weights import save_weights
        from stage2_models import random_tensors

        _, pixels, in_camera, truth = recording
        path = tmp_path / "capture.npz"
        np.savez(path, keypoints=pixels, confidences=np.full(pixels.shape[:3], 0.8), mono3d=in_camera / 1000.0,
                 skeleton="body25")
        config = ModelConfig(num_stages=1, spec="16,ccat,16", num_components=2)  # keypoints make K = 2 mixtures
        weights = save_weights(tmp_path / "model.safetensors", config, random_tensors(config))
        out = tmp_path / "out"
        code = cli.main(["solve", str(path), "--out", str(out), "--method", "metapose", "--weights", str(weights),
                         "--subject-height", "1.75", "--no-progress"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "6 of 6 frames solved (metapose)" in captured.out
        with np.load(out / "cameras.npz") as cameras:
            assert str(cameras["method"]) == "metapose"


class TestBadInput:
    def run(self, argv, out, capsys) -> str:
        assert cli.main(["solve", *argv, "--out", str(out), "--no-progress"]) == 2
        assert not out.exists()
        return one_line(capsys)

    def test_weights_belong_to_metapose(self, tmp_path, recording, capsys):
        _, pixels, _, _ = recording
        path = tmp_path / "capture.npz"
        np.savez(path, keypoints=pixels, confidences=np.full(pixels.shape[:3], 0.8), skeleton="body25")
        weights = str(tmp_path / "m.safetensors")
        line = self.run([str(path), "--weights", weights, "--subject-height", "1.7"], tmp_path / "out", capsys)
        assert line.endswith("--weights: only --method metapose takes weights, got --method ir")
        line = self.run([str(path), "--method", "metapose", "--weights", weights, "--subject-height", "1.7"],
                        tmp_path / "out", capsys)
        assert line.endswith(f"weights: no weights file at {weights!r}")

    def test_missing_input(self, tmp_path, capsys):
        line = self.run([str(tmp_path / "nothing")], tmp_path / "out", capsys)
        assert line.endswith("nothing: no such file or folder")

    def test_neither_folder_nor_npz(self, tmp_path, capsys):
        (tmp_path / "poses.txt").write_text("")
        line = self.run([str(tmp_path / "poses.txt")], tmp_path / "out", capsys)
        assert "expected a folder of per-camera JSON folders or an .npz file" in line

    def test_folder_without_detections(self, tmp_path, capsys):
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path / "pose", camera, 0, [])
        line = self.run([str(tmp_path / "pose")], tmp_path / "out", capsys)
        assert line.endswith("no detections (every JSON file has an empty 'people' list)")

    def test_folder_without_json(self, tmp_path, capsys):
        (tmp_path / "pose" / "cam01").mkdir(parents=True)
        line = self.run([str(tmp_path / "pose")], tmp_path / "out", capsys)
        assert "no camera folders with JSON files" in line

    def test_frame_counts_differ(self, tmp_path, recording, capsys):
        _, pixels, _, _ = recording
        root = write_openpose_folder(tmp_path / "pose", pixels, np.full(pixels.shape[:3], 0.9))
        (root / "cam03_json" / "cam03_json_000000000005_keypoints.json").unlink()
        line = self.run([str(root)], tmp_path / "out", capsys)
        assert "different frame counts (cam01_json: 6, cam02_json: 6, cam03_json: 5, cam04_json: 6)" in line

    def test_unknown_skeleton(self, tmp_path, json_folder, capsys):
        line = self.run([str(json_folder), "--skeleton", "body18"], tmp_path / "out", capsys)
        assert "skeleton: expected a known landmark set" in line and "got 'body18'" in line

    def test_skeleton_of_another_width(self, tmp_path, json_folder, capsys):
        line = self.run([str(json_folder), "--skeleton", "coco17"], tmp_path / "out", capsys)
        assert "25 landmarks per person, but skeleton 'coco17' has 17; pass skeleton='body25'" in line

    def test_malformed_json(self, tmp_path, json_folder, capsys):
        (json_folder / "cam02_json" / "cam02_json_000000000003_keypoints.json").write_text('{"people": [')
        line = self.run([str(json_folder)], tmp_path / "out", capsys)
        assert "cam02_json_000000000003_keypoints.json: malformed JSON" in line

    def test_out_under_a_file(self, tmp_path, json_folder, capsys):
        (tmp_path / "file").write_text("")
        line = self.run([str(json_folder)], tmp_path / "file" / "out", capsys)
        assert "--out" in line and "cannot create it" in line

    def test_out_is_a_file(self, tmp_path, json_folder, capsys):
        (tmp_path / "out").write_text("")
        assert cli.main(["solve", str(json_folder), "--out", str(tmp_path / "out")]) == 2
        assert "exists and is not a folder" in one_line(capsys)
        assert (tmp_path / "out").read_text() == ""

    def test_a_file_that_cannot_be_written(self, tmp_path, json_folder, capsys):
        out = tmp_path / "out"
        (out / "poses.csv").mkdir(parents=True)  # a folder where the CSV goes
        assert cli.main(["solve", str(json_folder), "--out", str(out), "--no-progress", "--subject-height", "1.7"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == f"metapose-geom solve: writing {out / 'poses.csv'}: Is a directory"
        assert sorted(path.name for path in out.iterdir()) == ["poses.csv"]  # the TRC written first is removed

    def test_npz_options_on_a_folder(self, tmp_path, json_folder, capsys):
        line = self.run([str(json_folder), "--keypoints", "points"], tmp_path / "out", capsys)
        assert "--keypoints: for .npz input only" in line

    def test_npz_field_missing(self, tmp_path, recording, capsys):
        _, pixels, _, _ = recording
        np.savez(tmp_path / "a.npz", keypoints=pixels, skeleton="body25")
        line = self.run([str(tmp_path / "a.npz")], tmp_path / "out", capsys)
        assert "no field 'confidences'" in line

    @pytest.mark.parametrize("option, value, message", [("--subject-height", "1750", "subject_height: expected"),
                                                        ("--fps", "0", "--fps: expected")])
    def test_bad_numbers(self, tmp_path, json_folder, capsys, option, value, message):
        line = self.run([str(json_folder), option, value], tmp_path / "out", capsys)
        assert message in line

    def test_bad_method_and_person_are_usage_errors(self, tmp_path, json_folder):
        for extra in (["--method", "nope"], ["--person", "first"]):
            with pytest.raises(SystemExit) as stop:
                cli.main(["solve", str(json_folder), "--out", str(tmp_path / "out"), *extra])
            assert stop.value.code == 2
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("threads", ["-1", "100000"])
    def test_absurd_threads_are_one_line(self, tmp_path, json_folder, capsys, threads):
        line = self.run([str(json_folder), "--threads", threads], tmp_path / "out", capsys)
        assert line.startswith("metapose-geom solve: --threads: expected")


def test_pick_frames_spreads_over_the_solved_frames():
    from types import SimpleNamespace

    from metapose_geom.figures import pick_frames

    solved = np.ones(100, dtype=bool)
    solved[:10] = False
    assert pick_frames(SimpleNamespace(solved=solved)) == [32, 54, 77]
    assert pick_frames(SimpleNamespace(solved=np.array([False, True, True]))) == [1, 2]
    assert pick_frames(SimpleNamespace(solved=np.zeros(4, dtype=bool))) == []


def test_nothing_solved_is_an_error_and_leaves_nothing(tmp_path, capsys):
    from metapose_geom.cli import main

    rng = np.random.default_rng(3)
    keypoints = rng.uniform(100, 900, (3, 4, 17, 2))
    confidences = np.zeros((3, 4, 17))
    confidences[0] = 1.0  # one camera alone sees anybody
    path = tmp_path / "one.npz"
    np.savez(path, keypoints=keypoints, confidences=confidences, skeleton="h36m17")
    out = tmp_path / "out"
    assert main(["solve", str(path), "--out", str(out), "--no-progress", "--subject-height", "1.8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no frame could be solved" in err[0] and "fewer than two cameras" in err[0]
    assert not out.exists()
