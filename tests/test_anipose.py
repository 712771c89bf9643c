"""The AniPose adapter (:mod:`metapose_geom.anipose`): its inputs (mixture means in pixels, perturbed starts), the clear
error when aniposelib is absent, and, when aniposelib is installed, triangulation and bundle
adjustment on a synthetic frame."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import anipose, geometry, synth
from metapose_geom.anipose import (
    AniPoseResult, anipose_solve, mixture_mean_pixels, perturb_cameras, require_aniposelib, scene_cameras,
)


@pytest.fixture(scope="module")
def scene() -> synth.Scene:
    return synth.make_scene(np.random.default_rng([11, 3]), num_cameras=4)


@pytest.fixture
def no_aniposelib(monkeypatch):
    """Make ``import aniposelib`` fail as it does when the package is not installed."""
    for name in list(sys.modules):
        if name == "aniposelib" or name.startswith("aniposelib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aniposelib", None)  # None in sys.modules makes the import raise


class TestMixtureMeanPixels:
    def test_equals_a_naive_weighted_mean_through_the_box(self, scene):
        got = mixture_mean_pixels(scene.mixtures, scene.boxes)
        want = np.empty((scene.num_cameras, scene.num_joints, 2))
        for c in range(scene.num_cameras):
            size = max(scene.boxes[c, 2], scene.boxes[c, 3])
            for j in range(scene.num_joints):
                weights = scene.mixtures[c, j, :, 0]
                mean = (weights[:, None] * scene.mixtures[c, j, :, 1:3]).sum(axis=0) / weights.sum()
                want[c, j] = scene.boxes[c, :2] + size * mean
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)

    def test_ground_truth_mixtures_give_the_ground_truth_pixels(self, scene):
        mixtures = synth.gt_mixtures(scene.pose2d_box_units())
        np.testing.assert_allclose(mixture_mean_pixels(mixtures, scene.boxes), scene.pose2d, rtol=0, atol=1e-9)

    def test_leading_frame_axes(self, scene):
        stacked = mixture_mean_pixels(np.stack([scene.mixtures] * 3), np.stack([scene.boxes] * 3))
        assert stacked.shape == (3, scene.num_cameras, scene.num_joints, 2)
        np.testing.assert_array_equal(stacked[1], mixture_mean_pixels(scene.mixtures, scene.boxes))

    @pytest.mark.parametrize("change, match", [
        (lambda m, b: (m[..., :3], b), r"mixtures: expected shape \(\.\.\., C, J, K, 4\)"),
        (lambda m, b: (m[0], b[0]), r"mixtures: expected shape \(\.\.\., C, J, K, 4\)"),
        (lambda m, b: (m, b[:2]), "boxes: expected shape"),
        # mixtures.check_mixtures, the one rule for mixtures
        (lambda m, b: (np.where(np.arange(4) == 0, 0.0, m), b), "mixtures: zero total weight at camera 0, joint 0"),
        (lambda m, b: (m * np.array([-1, 1, 1, 1]), b), "mixtures: weights must be >= 0"),
        (lambda m, b: (m * np.array([1, 1, 1, 0]), b), "mixtures: variances must be > 0"),
        (lambda m, b: (np.full_like(m, np.nan), b), "mixtures: contains NaN or inf"),
        # the boxes' rule (views.check_box_values)
        (lambda m, b: (m, np.full_like(b, np.inf)), "boxes: contains NaN or inf"),
        (lambda m, b: (m, b * np.array([1, 1, 0, 0])), "boxes: width and height must be > 0"),
    ])
    def test_bad_input(self, scene, change, match):
        with pytest.raises(ValueError, match=match):
            mixture_mean_pixels(*change(scene.mixtures, scene.boxes))


class TestPerturbCameras:
    def test_turns_each_camera_by_the_angle_and_moves_its_centre_by_the_fraction(self, scene):
        cameras = scene_cameras(scene)
        subject = scene.pose3d.mean(axis=0)
        moved = perturb_cameras(cameras, subject, np.random.default_rng(0), 15.0, 0.25)
        turn = moved.rotation @ np.transpose(cameras.rotation, (0, 2, 1))
        angles = np.degrees(np.linalg.norm(geometry.matrix_to_rodrigues(turn), axis=1))
        np.testing.assert_allclose(angles, 15.0, rtol=0, atol=1e-9)
        centre = -np.einsum("cji,cj->ci", cameras.rotation, cameras.translation)
        new_centre = -np.einsum("cji,cj->ci", moved.rotation, moved.translation)
        distance = np.linalg.norm(centre - subject, axis=1)
        np.testing.assert_allclose(np.linalg.norm(new_centre - centre, axis=1), 0.25 * distance, rtol=1e-12)
        for name in ("intrinsics", "distortion", "image_size"):
            np.testing.assert_array_equal(getattr(moved, name), getattr(cameras, name))

    def test_seeded_and_zero_perturbation_is_identity(self, scene):
        cameras, subject = scene_cameras(scene), scene.pose3d.mean(axis=0)
        a = perturb_cameras(cameras, subject, np.random.default_rng(5))
        b = perturb_cameras(cameras, subject, np.random.default_rng(5))
        np.testing.assert_array_equal(a.rotation, b.rotation)
        np.testing.assert_array_equal(a.translation, b.translation)
        same = perturb_cameras(cameras, subject, np.random.default_rng(5), 0.0, 0.0)
        np.testing.assert_allclose(same.rotation, cameras.rotation, rtol=0, atol=1e-15)
        np.testing.assert_allclose(same.translation, cameras.translation, rtol=0, atol=1e-9)

    def test_bad_input(self, scene):
        cameras, subject = scene_cameras(scene), scene.pose3d.mean(axis=0)
        with pytest.raises(ValueError, match="subject"):
            perturb_cameras(cameras, subject[:2], np.random.default_rng(0))
        with pytest.raises(ValueError, match="rng"):
            perturb_cameras(cameras, subject, 0)
        with pytest.raises(ValueError, match="rotation_degrees"):
            perturb_cameras(cameras, subject, np.random.default_rng(0), -1.0)
        with pytest.raises(ValueError, match="cameras"):
            perturb_cameras(scene.rotation, subject, np.random.default_rng(0))
        with pytest.raises(ValueError, match="cameras.intrinsics"):
            perturb_cameras(cameras._replace(intrinsics=cameras.intrinsics[:2]), subject, np.random.default_rng(0))


class TestMissingAniposelib:
    def test_require_names_the_install_command(self, no_aniposelib):
        with pytest.raises(ImportError, match=r"pip install 'metapose-geom\[anipose\]'"):
            require_aniposelib()

    def test_solve_raises_the_same_clear_error(self, no_aniposelib, scene):
        with pytest.raises(ImportError, match="aniposelib"):
            anipose_solve(scene.pose2d, scene_cameras(scene))

    def test_module_imports_without_aniposelib(self, no_aniposelib, monkeypatch):
        import importlib

        import metapose_geom

        monkeypatch.delitem(sys.modules, "metapose_geom.anipose")  # put back after the test
        monkeypatch.setattr(metapose_geom, "anipose", anipose, raising=False)
        fresh = importlib.import_module("metapose_geom.anipose")
        assert fresh is not anipose and fresh.ANIPOSE_INSTALL_HINT == anipose.ANIPOSE_INSTALL_HINT


class TestAniPose:
    """Needs aniposelib (``pip install 'metapose-geom[anipose]'``)."""

    @pytest.fixture(autouse=True)
    def _needs_aniposelib(self):
        pytest.importorskip("aniposelib")

    def test_triangulation_with_the_true_cameras_recovers_the_pose(self, scene):
        result = anipose_solve(scene.pose2d, scene_cameras(scene), adjust_cameras=False)
        assert isinstance(result, AniPoseResult)
        assert result.pose3d.shape == (1, scene.num_joints, 3)
        # exact projections, the cameras' own distortion: only OpenCV's iterative undistortion errs
        np.testing.assert_allclose(result.pose3d[0], scene.pose3d_cam[0], rtol=0, atol=0.5)
        np.testing.assert_allclose(result.pose3d_world[0], scene.pose3d, rtol=0, atol=0.5)
        assert result.reprojection_error[0] < 0.1

    def test_adjustment_of_noisy_points_is_seeded_and_leaves_numpy_state_alone(self, scene):
        points = mixture_mean_pixels(scene.mixtures, scene.boxes)
        start = perturb_cameras(scene_cameras(scene), scene.pose3d.mean(axis=0), np.random.default_rng(1))
        np.random.seed(123)
        before = np.random.get_state()[1].copy()
        first = anipose_solve(points, start, adjust_intrinsics=False, seed=4)
        np.testing.assert_array_equal(np.random.get_state()[1], before)
        second = anipose_solve(points[None], start, adjust_intrinsics=False, seed=4)
        np.testing.assert_array_equal(first.pose3d, second.pose3d)
        assert np.isfinite(first.pose3d).all() and first.seconds > 0
        # the adjusted cameras explain the points better than the perturbed start does
        unadjusted = anipose_solve(points, start, adjust_cameras=False)
        assert first.reprojection_error[0] < 0.5 * unadjusted.reprojection_error[0]
        # extrinsics only: the start's intrinsics and distortion are kept
        np.testing.assert_allclose(first.cameras.intrinsics, start.intrinsics, rtol=1e-12)
        np.testing.assert_allclose(first.cameras.distortion, start.distortion, rtol=1e-12)

    def test_a_failure_inside_aniposelib_is_an_anipose_error(self, scene, monkeypatch):
        from aniposelib.cameras import CameraGroup

        def diverged(self, *args, **kwargs):
            raise ZeroDivisionError("integer division or modulo by zero")

        monkeypatch.setattr(CameraGroup, "bundle_adjust_iter", diverged)
        np.random.seed(5)
        before = np.random.get_state()[1].copy()
        with pytest.raises(anipose.AniPoseError, match="aniposelib failed on these points: ZeroDivisionError"):
            anipose_solve(scene.pose2d, scene_cameras(scene))
        np.testing.assert_array_equal(np.random.get_state()[1], before)
        with pytest.raises(anipose.AniPoseError, match=r"frames\[0\]: aniposelib failed.*closer to the truth"):
            mg.solve(scene.views(), method="anipose", cameras=scene_cameras(scene))

    def test_bad_input(self, scene):
        cameras = scene_cameras(scene)
        with pytest.raises(ValueError, match="points"):
            anipose_solve(scene.pose2d[:2], cameras)
        with pytest.raises(ValueError, match="points"):
            anipose_solve(np.full_like(scene.pose2d, np.nan), cameras)
        with pytest.raises(ValueError, match="seed"):
            anipose_solve(scene.pose2d, cameras, seed=-1)
        with pytest.raises(ValueError, match="start"):
            anipose_solve(scene.pose2d, scene.rotation)


class TestSolveAniPose:
    """``solve`` / ``solve_batch`` with ``method="anipose"``: the same adapter behind the public API."""

    @pytest.fixture(autouse=True)
    def _needs_aniposelib(self):
        pytest.importorskip("aniposelib")

    @pytest.fixture(scope="class")
    @classmethod
    def exact(cls) -> tuple[synth.Scene, mg.Views]:
        """A frame whose evidence sits exactly at the true 2D joints (box units through its boxes)."""
        scene = synth.make_scene(np.random.default_rng([11, 4]), num_cameras=3)
        views = mg.Views(synth.gt_mixtures(scene.pose2d_box_units()), None, scene.boxes, skeleton=scene.skeleton)
        return scene, views

    def test_true_cameras_without_adjustment_triangulate_the_true_pose(self, exact):
        scene, views = exact
        solution = mg.solve(views, method="anipose", cameras=scene_cameras(scene), options={"adjust_cameras": False})
        assert solution.method == "anipose" and isinstance(solution.cameras, mg.PerspectiveCameras)
        np.testing.assert_allclose(solution.pose3d, scene.pose3d_cam[0], rtol=0, atol=0.5)
        np.testing.assert_allclose(solution.reprojection_pixels, scene.pose2d, rtol=0, atol=0.05)
        assert solution.x.shape == (0,) and solution.history is None

    def test_reprojection_is_the_pose_seen_by_the_adjusted_cameras(self, scene):
        start = perturb_cameras(scene_cameras(scene), scene.pose3d.mean(axis=0), np.random.default_rng(2), 5.0, 0.1)
        views = scene.views()
        solution = mg.solve(views, method="anipose", cameras=start, options=mg.AniPoseOptions(seed=3))
        cameras = solution.cameras
        # back to the adjusted world frame, then through the compiled core's own projection
        world = (solution.pose3d - cameras.translation[0]) @ cameras.rotation[0]
        for c in range(scene.num_cameras):
            pixels = geometry.project_perspective(world, cameras.rotation[c], cameras.translation[c],
                                                  cameras.intrinsics[c], cameras.distortion[c])
            np.testing.assert_allclose(solution.reprojection_pixels[c], pixels, rtol=0, atol=1e-6)
        np.testing.assert_allclose(views.to_pixels(solution.reprojection), solution.reprojection_pixels,
                                   rtol=0, atol=1e-9)
        loglik = geometry.mixture_log_likelihood(solution.reprojection, views.mixtures)
        assert solution.objective == pytest.approx(-loglik.mean(), rel=1e-12)
        # aniposelib's default refines one focal length per camera: fx == fy afterwards
        np.testing.assert_allclose(cameras.intrinsics[:, 0], cameras.intrinsics[:, 1], rtol=1e-12)

    def test_views_without_boxes_are_in_pixels(self, exact):
        scene, views = exact
        pixel_views = mg.Views.from_keypoints(scene.pose2d, np.ones(scene.pose2d.shape[:2]), skeleton=scene.skeleton,
                                             mirror_weight=0.0)  # AniPose triangulates mixture means
        options = {"adjust_cameras": False}
        with_boxes = mg.solve(views, method="anipose", cameras=scene_cameras(scene), options=options)
        in_pixels = mg.solve(pixel_views, method="anipose", cameras=scene_cameras(scene), options=options)
        np.testing.assert_allclose(in_pixels.pose3d, with_boxes.pose3d, rtol=0, atol=1e-6)
        np.testing.assert_allclose(in_pixels.reprojection_pixels, with_boxes.reprojection_pixels, rtol=0, atol=1e-6)

    def test_batch_with_one_start_per_frame_equals_solve(self):
        scenes = synth.make_scenes(2, num_cameras=3, seed=5)
        starts = [perturb_cameras(scene_cameras(s), s.pose3d.mean(axis=0), np.random.default_rng(i), 5.0, 0.1)
                  for i, s in enumerate(scenes)]
        options = {"adjust_intrinsics": False, "seed": 1}
        batch = mg.solve_batch([s.views() for s in scenes], method="anipose", cameras=starts, options=options,
                               progress=False)
        for scene, start, solution in zip(scenes, starts, batch):
            alone = mg.solve(scene.views(), method="anipose", cameras=start, options=options)
            np.testing.assert_array_equal(solution.pose3d, alone.pose3d)
            np.testing.assert_array_equal(solution.cameras.rotation, alone.cameras.rotation)

    def test_batch_with_one_rig_adjusts_it_once_on_all_frames(self):
        """A fixed rig seen in several frames: one bundle adjustment over all their points."""
        rng = np.random.default_rng(8)
        poses = [synth.sample_pose(rng) for _ in range(4)]
        rig = synth.sample_cameras(rng, poses[0], 3)
        frames = []
        for pose in poses:
            pixels = np.stack([geometry.project_perspective(pose, rig.rotation[c], rig.translation[c],
                                                            rig.intrinsics[c], rig.distortion[c]) for c in range(3)])
            frames.append(mg.Views.from_keypoints(pixels, np.ones((3, pose.shape[0])), mirror_weight=0.0))
        start = perturb_cameras(rig, poses[0].mean(axis=0), np.random.default_rng(0), 3.0, 0.05)
        solutions = mg.solve_batch(frames, method="anipose", cameras=start, options={"adjust_intrinsics": False},
                                   progress=False)
        assert len(solutions) == 4
        for solution, pose in zip(solutions, poses):
            assert solution.cameras is solutions[0].cameras  # one rig for all frames
            assert mg.metrics.pmpjpe(solution.pose3d, pose) < 1.0  # exact points: mm-level recovery
        # the scale is free in a bundle adjustment, but it stays near the start's: the pose in
        # camera 0, unaligned, is the truth's size and distance to within 5%
        truth = np.einsum("ab,jb->ja", rig.rotation[0], poses[0]) + rig.translation[0]
        pose = solutions[0].pose3d
        size = np.linalg.norm(pose - pose.mean(axis=0)) / np.linalg.norm(truth - truth.mean(axis=0))
        assert 0.95 < size < 1.05
        assert np.linalg.norm(pose.mean(axis=0)) / np.linalg.norm(truth.mean(axis=0)) == pytest.approx(1.0, abs=0.05)

    def test_a_missing_keypoint_is_left_out_not_put_at_the_box_centre(self, exact):
        scene, _ = exact
        keypoints, confidence = scene.pose2d.copy(), np.ones(scene.pose2d.shape[:2])
        keypoints[0, 3] = np.nan  # camera 0 does not see the right foot
        confidence[1, 5] = 0.0  # camera 1 does not see the left knee
        views = mg.Views.from_keypoints(keypoints, confidence, boxes=scene.boxes, mirror_weight=0.0)
        solution = mg.solve(views, method="anipose", cameras=scene_cameras(scene), options={"adjust_cameras": False})
        np.testing.assert_allclose(solution.pose3d, scene.pose3d_cam[0], rtol=0, atol=0.5)
        keypoints[1, 3] = np.nan  # now camera 2 alone sees the right foot: it cannot be triangulated
        with pytest.raises(ValueError, match=r"frames\[0\]: joint 3 \(\w+\) has evidence in 1 view"):
            mg.solve(mg.Views.from_keypoints(keypoints, confidence, boxes=scene.boxes, mirror_weight=0.0), method="anipose",
                     cameras=scene_cameras(scene))

    def test_bad_input(self, scene):
        views, cameras = scene.views(), scene_cameras(scene)
        with pytest.raises(ValueError, match="cameras: method='anipose' needs"):
            mg.solve(views, method="anipose")
        with pytest.raises(ValueError, match="cameras: expected 3 cameras, one per view, got 4"):
            mg.solve(views.subset([0, 1, 2]), method="anipose", cameras=cameras)
        with pytest.raises(ValueError, match=r"cameras.intrinsics: contains NaN"):
            mg.solve(views, method="anipose", cameras=cameras._replace(intrinsics=np.full((4, 4), np.nan)))
        with pytest.raises(ValueError, match=r"cameras.rotation: expected rotation matrices"):
            mg.solve(views, method="anipose", cameras=cameras._replace(rotation=2 * cameras.rotation))
        with pytest.raises(ValueError, match=r"cameras.intrinsics: expected focal lengths"):
            mg.solve(views, method="anipose", cameras=cameras._replace(intrinsics=-cameras.intrinsics))
        with pytest.raises(ValueError, match=r"cameras.image_size: expected width and height > 0"):
            mg.solve(views, method="anipose", cameras=cameras._replace(image_size=0 * cameras.image_size))
        with pytest.raises(ValueError, match="takes AniPoseOptions"):
            mg.solve(views, method="anipose", cameras=cameras, options=mg.RefineOptions())
        with pytest.raises(ValueError, match=r"unknown name\(s\) \['steps'\]"):
            mg.solve(views, method="anipose", cameras=cameras, options={"steps": 3})
        with pytest.raises(ValueError, match="only method='anipose' takes start cameras"):
            mg.solve(views, method="ir", cameras=cameras)
        with pytest.raises(ValueError, match="only method='anipose' takes start cameras"):
            mg.solve_batch([views], method="s1", cameras=cameras, progress=False)
        with pytest.raises(ValueError, match=r"one per frame \(2\), got a sequence of 1"):
            mg.solve_batch([views, views], method="anipose", cameras=[cameras], progress=False)
        with pytest.raises(ValueError, match=r"cameras\[1\]: expected a PerspectiveCameras"):
            mg.solve_batch([views, views], method="anipose", cameras=[cameras, "x"], progress=False)


def test_irs_objective_is_the_likelihood_term_anipose_reports(scene):
    """IR's objective (bone term off) is the mixture likelihood term that ``method="anipose"``
    reports at its reprojection, so the two objectives compare."""
    views = scene.views()
    ir = mg.solve(views, method="ir")
    loglik = geometry.mixture_log_likelihood(ir.reprojection, views.mixtures)
    assert ir.objective == pytest.approx(-loglik.mean(), rel=1e-9)


class TestAniPoseOptions:
    def test_defaults_are_aniposelibs(self):
        assert mg.AniPoseOptions() == mg.AniPoseOptions.from_mapping({})
        options = mg.AniPoseOptions()
        assert options.adjust_cameras and options.adjust_intrinsics and options.seed == 0

    @pytest.mark.parametrize("values, match", [
        ({"adjust_cameras": 1}, "adjust_cameras"),
        ({"adjust_intrinsics": "yes"}, "adjust_intrinsics"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"threshold": 3}, "unknown"),
    ])
    def test_bad_values(self, values, match):
        with pytest.raises(ValueError, match=match):
            mg.AniPoseOptions.from_mapping(values)

    def test_missing_aniposelib_gives_the_install_command(self, no_aniposelib, scene):
        with pytest.raises(ImportError, match=r"metapose-geom\[anipose\]"):
            mg.solve(scene.views(), method="anipose", cameras=scene_cameras(scene))
