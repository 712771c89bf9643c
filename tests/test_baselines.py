"""The AniPose baseline adapter: its inputs (mixture means in pixels, perturbed starts), the clear
error when aniposelib is absent, and, when aniposelib is installed, triangulation and bundle
adjustment on a synthetic frame."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from metapose_geom import baselines, geometry, synth
from metapose_geom.baselines import (
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
        (lambda m, b: (m[..., :3], b), "mixtures"),
        (lambda m, b: (m, b[:2]), "boxes"),
        (lambda m, b: (np.where(np.arange(4) == 0, 0.0, m), b), "weights"),
        (lambda m, b: (np.full_like(m, np.nan), b), "finite"),
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

        monkeypatch.delitem(sys.modules, "metapose_geom.baselines")  # put back after the test
        monkeypatch.setattr(metapose_geom, "baselines", baselines, raising=False)
        fresh = importlib.import_module("metapose_geom.baselines")
        assert fresh is not baselines and fresh.ANIPOSE_INSTALL_HINT == baselines.ANIPOSE_INSTALL_HINT


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
