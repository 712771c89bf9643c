"""Capture: validation, the H36M-17 views of a frame, and solving every frame grouped by the cameras
that saw the person (a missing view left out, frames seen by fewer than two cameras skipped)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import synth
from metapose_geom.io import Capture, CaptureSolution

CAMERAS, FRAMES = 4, 6


@pytest.fixture(scope="module")
def scenes():
    return [synth.make_scene(seed, num_cameras=CAMERAS) for seed in range(FRAMES)]


def arrays_of(scenes, rng=None):
    """(C, F, 17, 2) px keypoints with 1 px noise, (C, F, 17) confidences, (C, F, 17, 3) guesses in mm
    (each camera's own frame, as a lifter would give them up to scale and origin)."""
    rng = rng or np.random.default_rng(0)
    keypoints = np.stack([scene.pose2d for scene in scenes], axis=1) + rng.normal(size=(CAMERAS, len(scenes), 17, 2))
    confidences = rng.uniform(0.5, 1.0, size=(CAMERAS, len(scenes), 17))
    mono3d = np.stack([scene.pose3d_cam for scene in scenes], axis=1)
    return keypoints, confidences, mono3d


def missing(keypoints, confidences, camera, frame):
    keypoints[camera, frame] = np.nan
    confidences[camera, frame] = 0.0


@pytest.fixture
def capture(scenes):
    keypoints, confidences, mono3d = arrays_of(scenes)
    missing(keypoints, confidences, 2, 1)  # frame 1: camera 2 saw nobody
    for camera in (1, 2, 3):
        missing(keypoints, confidences, camera, 2)  # frame 2: only camera 0 did
    missing(keypoints, confidences, 0, 3)  # frame 3: camera 0 saw nobody
    for camera in (0, 3):
        missing(keypoints, confidences, camera, 4)  # frame 4: cameras 1 and 2 only
    return Capture(keypoints, confidences, "h36m17", mono3d=mono3d, camera_names=("a", "b", "c", "d"), fps=50,
                   frame_numbers=np.arange(100, 100 + FRAMES))


class TestValidation:
    @pytest.fixture
    def parts(self, rng):
        return {"keypoints": rng.uniform(0, 500, (2, 3, 17, 2)), "confidences": np.full((2, 3, 17), 0.8),
                "skeleton": "coco17"}

    def test_valid(self, parts):
        capture = Capture(**parts)
        assert (capture.num_cameras, capture.num_frames, capture.num_landmarks) == (2, 3, 17)
        assert capture.camera_names == ("cam0", "cam1") and capture.skeleton.name == "coco17"
        assert len(capture) == 3 and not capture.keypoints.flags.writeable

    def test_copies_what_it_is_given(self, parts):
        capture = Capture(**parts)
        parts["keypoints"][:] = 0
        assert capture.keypoints.max() > 0

    @pytest.mark.parametrize("change, message", [
        ({"keypoints": np.zeros((2, 3, 17))}, r"^keypoints: expected shape \(C, F, N, 2\)"),
        ({"keypoints": np.zeros((1, 3, 17, 2)), "confidences": np.zeros((1, 3, 17))}, "^keypoints: at least two cameras"),
        ({"skeleton": "body25"}, "^keypoints: N = 17 landmarks, but skeleton 'body25' has 25"),
        ({"skeleton": "nope"}, "^skeleton: expected a known landmark set"),
        ({"skeleton": 17}, "^skeleton: expected a landmark set's name"),
        ({"confidences": np.zeros((2, 3, 16))}, r"^confidences: expected shape \(2, 3, 17\)"),
        ({"confidences": np.full((2, 3, 17), 1.5)}, r"^confidences: expected finite values in \[0, 1\]"),
        ({"confidences": np.full((2, 3, 17), np.nan)}, "^confidences: expected finite"),
        ({"mono3d": np.zeros((2, 3, 17, 2))}, r"^mono3d: expected shape \(2, 3, 17, 3\)"),
        ({"mono3d": np.full((2, 3, 17, 3), np.inf)}, "^mono3d: contains inf"),
        ({"camera_names": ("a", "a")}, "^camera_names: expected 2 distinct"),
        ({"camera_names": ("a",)}, "^camera_names: expected 2 distinct"),
        ({"image_size": [[1920, 1080]]}, r"^image_size: expected \(2, 2\)"),
        ({"image_size": [[1920, 0], [1920, 1080]]}, r"^image_size: expected \(2, 2\)"),
        ({"fps": 0}, "^fps: expected a finite number"),
        ({"frame_numbers": [0, 2, 1]}, r"^frame_numbers: expected \(3,\) increasing integers"),
        ({"frame_numbers": [0.0, 1.0, 2.0]}, r"^frame_numbers: expected \(3,\) increasing integers"),
    ])
    def test_rejects(self, parts, change, message):
        with pytest.raises(ValueError, match=message):
            Capture(**{**parts, **change})

    def test_inf_keypoint(self, parts):
        parts["keypoints"][0, 0, 0, 0] = np.inf
        with pytest.raises(ValueError, match="^keypoints: contains inf"):
            Capture(**parts)


class TestFrames:
    def test_detected(self, capture):
        expected = np.ones((CAMERAS, FRAMES), dtype=bool)
        expected[2, 1] = False
        expected[1:, 2] = False
        expected[0, 3] = False
        expected[[0, 3], 4] = False
        np.testing.assert_array_equal(capture.detected, expected)

    def test_a_view_with_too_few_joints_saw_nobody(self, scenes):
        keypoints, confidences, _ = arrays_of(scenes)
        confidences[1, 0, 3:] = 0.0  # three joints left
        capture = Capture(keypoints, confidences, "h36m17")
        assert not capture.detected[1, 0] and capture.detected[1, 1]

    def test_views_of_a_frame(self, capture, scenes):
        views = capture.views(1)
        assert views.camera_names == ("a", "b", "d") and views.num_joints == 17
        assert views.mono3d is not None and views.boxes.shape == (3, 4)
        chosen = capture.views(0, cameras=["d", 1])
        assert chosen.camera_names == ("d", "b")

    def test_views_equal_the_arrays_given_directly(self, capture):
        keypoints, confidences = capture.keypoints, capture.confidences
        direct = mg.Views.from_keypoints(keypoints[[0, 1, 3], 1], confidences[[0, 1, 3], 1],
                                         mono3d=capture.mono3d[[0, 1, 3], 1], camera_names=("a", "b", "d"))
        views = capture.views(1)
        np.testing.assert_array_equal(views.mixtures, direct.mixtures)
        np.testing.assert_array_equal(views.mono3d, direct.mono3d)
        np.testing.assert_array_equal(views.boxes, direct.boxes)

    def test_views_errors(self, capture):
        with pytest.raises(ValueError, match=r"frame 2: 1 camera\(s\) saw the person \(a\); at least two"):
            capture.views(2)
        with pytest.raises(ValueError, match="^frame: expected an integer"):
            capture.views(FRAMES)
        with pytest.raises(ValueError, match="^cameras: no camera named 'z'"):
            capture.views(0, cameras=["a", "z"])
        with pytest.raises(ValueError, match="^cameras: repeated camera"):
            capture.views(0, cameras=["a", 0])

    def test_missing_guess_joints_take_the_views_mean(self, scenes):
        keypoints, confidences, mono3d = arrays_of(scenes)
        mono3d[0, 0, 5] = np.nan
        capture = Capture(keypoints, confidences, "h36m17", mono3d=mono3d)
        views = capture.views(0)
        filled = mono3d[:, 0].copy()
        filled[0, 5] = np.delete(mono3d[0, 0], 5, axis=0).mean(axis=0)
        direct = mg.Views.from_keypoints(keypoints[:, 0], confidences[:, 0], mono3d=filled)
        np.testing.assert_array_equal(views.mono3d, direct.mono3d)


class TestSolve:
    def test_groups_and_skips(self, capture, monkeypatch):
        calls = []
        original = mg.solver.solve_batch

        def counting(frames, **kwargs):
            calls.append([views.camera_names for views in frames])
            return original(frames, **kwargs)

        monkeypatch.setattr(mg.solver, "solve_batch", counting)
        result = capture.solve(progress=False)
        assert isinstance(result, CaptureSolution) and len(result) == FRAMES
        # one call per set of cameras: all four (frames 0 and 5), a b d, b c d, b c
        assert sorted(len(call) for call in calls) == [1, 1, 1, 2]
        assert all(len(set(call)) == 1 for call in calls)
        np.testing.assert_array_equal(result.solved, [True, True, False, True, True, True])
        assert result.skipped == 1 and dict(result.skip_reasons) == {2: "seen by fewer than two cameras"}
        np.testing.assert_array_equal(result.reference, [0, 0, -1, 1, 1, 0])
        assert result.summary() == "5 of 6 frames solved (ir); skipped: 1 seen by fewer than two cameras"

    def test_a_missing_view_is_left_out(self, capture):
        """Frame 1 (camera c missing) and frame 3 (camera a missing) solve as their remaining views do."""
        result = capture.solve(progress=False)
        for frame, cameras in ((1, [0, 1, 3]), (3, [1, 2, 3]), (4, [1, 2])):
            alone = mg.solve(capture.views(frame, cameras=cameras), method="ir")
            got = result.solutions[frame]
            np.testing.assert_array_equal(got.pose3d, alone.pose3d)
            np.testing.assert_array_equal(got.cameras.rotation, alone.cameras.rotation)
            assert got.objective == alone.objective
            np.testing.assert_array_equal(result.used[frame], np.isin(np.arange(CAMERAS), cameras))
            np.testing.assert_array_equal(result.rotations[frame, cameras], alone.cameras.rotation)
            assert np.isnan(result.rotations[frame, ~result.used[frame]]).all()
            np.testing.assert_array_equal(result.reprojection_pixels[frame, cameras], alone.reprojection_pixels)
            np.testing.assert_array_equal(result.boxes[frame, cameras], capture.views(frame, cameras=cameras).boxes)

    def test_stacked_arrays(self, capture):
        result = capture.solve(method="s1", progress=False)
        assert result.method == "s1"
        assert result.poses.shape == (FRAMES, 17, 3) and np.isnan(result.poses[2]).all()
        assert np.isfinite(result.poses[[0, 1, 3, 4, 5]]).all() and not result.poses.flags.writeable
        assert result.scales.shape == (FRAMES, CAMERAS) and result.shifts.shape == (FRAMES, CAMERAS, 3)
        np.testing.assert_array_equal(result.scales[0], result.solutions[0].cameras.scale)
        assert np.isnan(result.objectives[2]) and result.objectives[0] == result.solutions[0].objective

    def test_close_to_the_truth(self, scenes):
        keypoints, confidences, mono3d = arrays_of(scenes)
        result = Capture(keypoints, confidences, "h36m17", mono3d=mono3d).solve(progress=False)
        errors = [float(mg.metrics.pmpjpe(result.poses[f], scene.pose3d)) for f, scene in enumerate(scenes)]
        assert np.median(errors) < 30.0, errors  # mm: 1 px noise, exact guesses

    def test_rejected_evidence_skips_the_frame(self, scenes):
        keypoints, confidences, mono3d = arrays_of(scenes)
        mono3d[1, 2, :, :2] *= -1  # a guess upside down: it fits its keypoints only with a negative scale
        result = Capture(keypoints, confidences, "h36m17", mono3d=mono3d).solve(progress=False)
        assert list(result.skip_reasons) == [2]
        assert result.skip_reasons[2].startswith("evidence rejected: mono3d: camera 1's guess fits its 2D evidence only "
                                            "mirrored")
        assert result.summary().endswith("skipped: 1 evidence rejected")

    def test_no_frame_solvable(self, scenes):
        keypoints, confidences, _ = arrays_of(scenes[:2])
        confidences[1:] = 0.0
        result = Capture(keypoints, confidences, "h36m17").solve(progress=False)
        assert not result.solved.any() and result.skipped == 2
        assert np.isnan(result.poses).all() and (result.reference == -1).all()


def test_reading_and_holding_captures_stays_light():
    code = ("import sys, metapose_geom.io\n"
            "print(sorted({'matplotlib', 'tqdm', 'h5py', 'torch', 'numba'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


class TestReviewFindings:
    def test_a_solution_pickles(self, capture):
        import pickle

        result = capture.solve("s1", progress=False)
        again = pickle.loads(pickle.dumps(result))
        np.testing.assert_array_equal(again.poses, result.poses)
        assert again.skip_reasons == result.skip_reasons and again.skipped == result.skipped

    def test_a_camera_in_box_units_is_named(self, scenes):
        keypoints, confidences, mono3d = arrays_of(scenes)
        keypoints[1] /= 1920.0
        with pytest.raises(ValueError, match=r"^keypoints: camera 1's keypoints spread over at most .* cannot be pixels"):
            Capture(keypoints, confidences, "h36m17")

    def test_bad_view_options_raise_once(self, capture):
        with pytest.raises(ValueError, match=r"^mirror_weight"):
            capture.solve("s1", progress=False, view_options={"mirror_weight": 5})
        with pytest.raises(ValueError, match=r"^view_options: unknown name\(s\) \['bogus'\]"):
            capture.solve("s1", progress=False, view_options={"bogus": 1})

    def test_methods_that_need_start_cameras_are_refused(self, capture):
        with pytest.raises(ValueError, match=r"^method: 'anipose' needs start cameras"):
            capture.solve("anipose", progress=False)

    def test_guesses_in_a_left_handed_frame_are_refused(self, scenes):
        keypoints, confidences, mono3d = arrays_of(scenes)
        flipped = Capture(keypoints, confidences, "h36m17", mono3d=mono3d * [1.0, 1.0, -1.0])
        with pytest.raises(ValueError, match=r"^mono3d: \d+% of the views' guesses are mirror images"):
            flipped.solve("s1", progress=False)
        Capture(keypoints, confidences, "h36m17", mono3d=mono3d).solve("s1", progress=False)  # right-handed: fine
